#include "dccnn/dual_cd.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

namespace dccnn {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The one-dimensional part of the objective for one loss.
struct CoordinateLoss {
  LossKind kind;
  double C, lower, upper, quad;  // h(a) = lin a + quad a^2 / 2 (+ entropy for logistic)

  explicit CoordinateLoss(const CdOptions& o) : kind(o.loss), C(o.C) {
    lower = (kind == LossKind::squared) ? -kInf : 0.0;
    upper = (kind == LossKind::hinge || kind == LossKind::logistic) ? C : kInf;
    quad = (kind == LossKind::squared_hinge || kind == LossKind::squared) ? 0.5 / C : 0.0;
  }

  // Keeps logistic variables strictly inside (0, C) where the entropy is finite.
  double interior(double a) const {
    if (kind != LossKind::logistic) return std::min(std::max(a, lower), upper);
    const double margin = 1e-12 * C;
    return std::min(std::max(a, margin), C - margin);
  }

  // Derivative of the objective along coordinate u: g = (Qm a)_u.
  double gradient(double g, double a, double lin) const {
    double d = g + lin + quad * a;
    if (kind == LossKind::logistic) d += std::log(a / (C - a));
    return d;
  }

  // Projected gradient (zero where the bound blocks the descent direction).
  double projected(double grad, double a) const {
    if (a <= lower && grad > 0) return 0.0;
    if (a >= upper && grad < 0) return 0.0;
    return grad;
  }

  // argmin_z 1/2 q (z - a)^2 + g (z - a) + h(z), q = Qm_uu > 0 or 0.
  double solve(double q, double g, double a, double lin) const {
    if (kind != LossKind::logistic) {
      const double curv = q + quad;
      if (curv <= 0) return a;  // flat direction: nothing to gain
      return std::min(std::max(a - gradient(g, a, lin) / curv, lower), upper);
    }
    // logistic: the derivative phi(z) = q (z - a) + g + lin + log(z / (C - z)) increases on
    // (0, C); safeguarded Newton inside the bracket [lo, hi].
    double lo = 0.0, hi = C, z = a;
    for (int it = 0; it < 60; ++it) {
      const double phi = q * (z - a) + g + lin + std::log(z / (C - z));
      if (phi > 0) hi = z; else lo = z;
      const double dphi = q + C / (z * (C - z));
      double next = z - phi / dphi;
      if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
      if (std::abs(next - z) <= 1e-15 * C) {
        z = next;
        break;
      }
      z = next;
    }
    return interior(z);
  }
};

// LIBLINEAR's coordinate descent with random permutations and shrinking, over any operator
// that provides diag(u), margin(u) = (Qm a)_u and update(u, delta).
template <class Op>
CdResult coordinate_descent(Op& op, index_t N, const double* lin, double* alpha,
                            const CdOptions& opt, const InterruptCheck& check) {
  const CoordinateLoss loss(opt);
  for (index_t u = 0; u < N; ++u) {
    const double a = loss.interior(alpha[u]);
    if (a != alpha[u]) {
      op.update(u, a - alpha[u]);
      alpha[u] = a;
    }
  }
  std::vector<index_t> active(static_cast<size_t>(N));
  std::iota(active.begin(), active.end(), index_t(0));
  std::mt19937_64 rng(opt.seed);
  CdResult res;
  double pg_max_old = kInf, pg_min_old = -kInf;
  index_t n_active = N;
  CancelToken cancel(check);
  for (res.epochs = 0; res.epochs < opt.max_epochs;) {
    if (cancel.stop_requested()) throw Interrupted();
    std::shuffle(active.begin(), active.begin() + n_active, rng);
    double pg_max = -kInf, pg_min = kInf;
    for (index_t s = 0; s < n_active; ++s) {
      const index_t u = active[static_cast<size_t>(s)];
      const double g = op.margin(u);
      const double grad = loss.gradient(g, alpha[u], lin[u]);
      // Shrink coordinates stuck at a bound with a gradient pushing them further out.
      if (opt.shrinking && loss.kind != LossKind::logistic) {
        const bool at_lower = alpha[u] <= loss.lower && grad > pg_max_old;
        const bool at_upper = alpha[u] >= loss.upper && grad < pg_min_old;
        if (at_lower || at_upper) {
          std::swap(active[static_cast<size_t>(s)], active[static_cast<size_t>(n_active - 1)]);
          --n_active;
          --s;
          continue;
        }
      }
      const double pg = loss.projected(grad, alpha[u]);
      pg_max = std::max(pg_max, pg);
      pg_min = std::min(pg_min, pg);
      if (pg == 0.0 && loss.kind != LossKind::logistic) continue;
      const double a_new = loss.solve(op.diag(u), g, alpha[u], lin[u]);
      const double delta = a_new - alpha[u];
      if (delta != 0.0) {
        op.update(u, delta);
        alpha[u] = a_new;
      }
    }
    ++res.epochs;
    if (n_active == 0) pg_max = pg_min = 0.0;
    res.pg_spread = pg_max - pg_min;
    if (res.pg_spread <= opt.tol) {
      if (n_active == N) {
        res.converged = true;
        break;
      }
      // Converged on the active set: check everything once more before stopping.
      n_active = N;
      pg_max_old = kInf;
      pg_min_old = -kInf;
      continue;
    }
    pg_max_old = pg_max <= 0 ? kInf : pg_max;
    pg_min_old = pg_min >= 0 ? -kInf : pg_min;
  }
  return res;
}

struct DenseGramOp {
  const double* gram;
  index_t N;
  std::vector<double> grad;  // Qm alpha
  DenseGramOp(const double* g, index_t n, const double* alpha) : gram(g), N(n), grad(n, 0.0) {
    for (index_t i = 0; i < N; ++i) {
      double s = 0;
      const double* row = gram + i * N;
      for (index_t j = 0; j < N; ++j) s += row[j] * alpha[j];
      grad[static_cast<size_t>(i)] = s;
    }
  }
  double diag(index_t u) const { return gram[u * N + u]; }
  double margin(index_t u) const { return grad[static_cast<size_t>(u)]; }
  void update(index_t u, double delta) {
    const double* col = gram + u * N;  // symmetric: row u is column u
    double* g = grad.data();
#pragma omp simd
    for (index_t j = 0; j < N; ++j) g[j] += delta * col[j];
  }
};

template <class T>
struct LinearOp {
  const T* X;
  index_t D;
  double* w;
  std::vector<double> sqnorm;
  LinearOp(const T* x, index_t n, index_t d, double* w_) : X(x), D(d), w(w_), sqnorm(n) {
    for (index_t u = 0; u < n; ++u) {
      double s = 0;
      for (index_t k = 0; k < D; ++k) s += double(X[u * D + k]) * X[u * D + k];
      sqnorm[static_cast<size_t>(u)] = s;
    }
  }
  double diag(index_t u) const { return sqnorm[static_cast<size_t>(u)]; }
  double margin(index_t u) const {
    const T* x = X + u * D;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (index_t k = 0; k < D; ++k) s += w[k] * x[k];
    return s;
  }
  void update(index_t u, double delta) {
    const T* x = X + u * D;
#pragma omp simd
    for (index_t k = 0; k < D; ++k) w[k] += delta * x[k];
  }
};

void check_options(const CdOptions& o) {
  if (!(o.C > 0) || !std::isfinite(o.C)) throw std::invalid_argument("C: must be > 0");
  if (!(o.tol > 0)) throw std::invalid_argument("tol: must be > 0");
  if (o.max_epochs < 1) throw std::invalid_argument("max_iter: must be >= 1");
  if (static_cast<int>(o.loss) < 0 || static_cast<int>(o.loss) > 3)
    throw std::invalid_argument("loss: unknown kind");
}

}  // namespace

CdResult dual_cd_dense(const double* gram, index_t N, const double* lin, double* alpha,
                       const CdOptions& opt, const InterruptCheck& check) {
  check_options(opt);
  DenseGramOp op(gram, N, alpha);
  return coordinate_descent(op, N, lin, alpha, opt, check);
}

template <class T>
CdResult dual_cd_linear(const T* X, index_t N, index_t D, const double* lin, double* alpha,
                        double* w, const CdOptions& opt, const InterruptCheck& check) {
  check_options(opt);
  LinearOp<T> op(X, N, D, w);
  return coordinate_descent(op, N, lin, alpha, opt, check);
}

template CdResult dual_cd_linear<float>(const float*, index_t, index_t, const double*, double*,
                                        double*, const CdOptions&, const InterruptCheck&);
template CdResult dual_cd_linear<double>(const double*, index_t, index_t, const double*,
                                         double*, double*, const CdOptions&,
                                         const InterruptCheck&);

}  // namespace dccnn
