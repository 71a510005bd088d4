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

  CoordinateLoss(LossKind k, double c) : kind(k), C(c) {
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

// Shrinking and stopping state of one output (LIBLINEAR's, kept per output).
struct OutputState {
  double pg_max_old = kInf, pg_min_old = -kInf;  // last epoch's projected-gradient range
  double pg_max = -kInf, pg_min = kInf;          // this epoch's
  index_t n_active = 0, epochs = 0;
  double spread = 0.0;
  bool done = false, converged = false;
};

// LIBLINEAR's coordinate descent with random permutations and shrinking, for outputs
// [c0, c1) of an operator that provides diag(i), margin(i, c) = (Qm_c a_c)_i and
// update(i, c, delta). Returns early, without an exception, when `cancel` is set: it may run
// inside an OpenMP loop.
template <class Op>
void coordinate_descent(Op& op, index_t N, index_t K, index_t c0, index_t c1, const double* lin,
                        double* alpha, const CdOptions& opt, CancelToken& cancel,
                        OutputState* states) {
  // row i's loss (a few flops: built where it is used, as in the Numba twin)
  auto loss_of = [&](index_t i) {
    return CoordinateLoss(opt.loss, opt.row_C ? opt.row_C[i] : opt.C);
  };
  const bool shrink = opt.shrinking && opt.loss != LossKind::logistic;
  for (index_t i = 0; i < N; ++i)
    for (index_t c = c0; c < c1; ++c) {
      const CoordinateLoss loss = loss_of(i);
      double& a_u = alpha[i * K + c];
      const double a = loss.interior(a_u);
      if (a != a_u) {
        op.update(i, c, a - a_u);
        a_u = a;
      }
    }
  const index_t n_out = c1 - c0;
  std::vector<unsigned char> shrunk(static_cast<size_t>(N * n_out), 0);
  for (index_t c = 0; c < n_out; ++c) states[c].n_active = N;
  std::vector<index_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), index_t(0));
  std::mt19937_64 rng(opt.seed);  // the same rows order in every thread, for every output
  index_t n_open = n_out;
  for (index_t epoch = 0; epoch < opt.max_epochs && n_open > 0; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    for (index_t c = 0; c < n_out; ++c) {
      states[c].pg_max = -kInf;
      states[c].pg_min = kInf;
    }
    for (index_t s = 0; s < N; ++s) {
      if ((s & 63) == 0 && cancel.stop_requested()) return;
      const index_t i = order[static_cast<size_t>(s)];
      const CoordinateLoss loss = loss_of(i);
      for (index_t c = c0; c < c1; ++c) {
        OutputState& st = states[c - c0];
        unsigned char& is_shrunk = shrunk[static_cast<size_t>(i * n_out + c - c0)];
        if (st.done || is_shrunk) continue;
        const index_t u = i * K + c;
        const double g = op.margin(i, c);
        const double grad = loss.gradient(g, alpha[u], lin[u]);
        // Shrink coordinates stuck at a bound with a gradient pushing them further out.
        if (shrink && ((alpha[u] <= loss.lower && grad > st.pg_max_old) ||
                       (alpha[u] >= loss.upper && grad < st.pg_min_old))) {
          is_shrunk = 1;
          --st.n_active;
          continue;
        }
        const double pg = loss.projected(grad, alpha[u]);
        st.pg_max = std::max(st.pg_max, pg);
        st.pg_min = std::min(st.pg_min, pg);
        if (pg == 0.0 && loss.kind != LossKind::logistic) continue;
        const double a_new = loss.solve(op.diag(i), g, alpha[u], lin[u]);
        const double delta = a_new - alpha[u];
        if (delta != 0.0) {
          op.update(i, c, delta);
          alpha[u] = a_new;
        }
      }
    }
    for (index_t c = 0; c < n_out; ++c) {
      OutputState& st = states[c];
      if (st.done) continue;
      ++st.epochs;
      if (st.n_active == 0) st.pg_max = st.pg_min = 0.0;
      st.spread = st.pg_max - st.pg_min;
      if (st.spread <= opt.tol) {
        if (st.n_active == N) {
          st.converged = st.done = true;
          --n_open;
          continue;
        }
        // Converged on the active set: check everything once more before stopping.
        for (index_t i = 0; i < N; ++i) shrunk[static_cast<size_t>(i * n_out + c)] = 0;
        st.n_active = N;
        st.pg_max_old = kInf;
        st.pg_min_old = -kInf;
        continue;
      }
      st.pg_max_old = st.pg_max <= 0 ? kInf : st.pg_max;
      st.pg_min_old = st.pg_min >= 0 ? -kInf : st.pg_min;
    }
  }
}

CdResult summarise(const std::vector<OutputState>& states) {
  CdResult res;
  res.converged = true;
  for (const auto& st : states) {
    res.epochs = std::max(res.epochs, st.epochs);
    res.pg_spread = std::max(res.pg_spread, st.spread);
    res.converged = res.converged && st.converged;
  }
  return res;
}

// The two loops of an explicit-feature coordinate step, cloned for AVX2 and chosen at load
// time: an epoch is these loops, and the portable (SSE2) build of them took 1.5x longer on
// AVX2 (bench/README.md). The loops are forced inline so that each clone compiles them for its
// own instruction set.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DCCNN_ISA_CLONES __attribute__((target_clones("avx2", "default")))
#define DCCNN_INLINE_IN_CLONES __attribute__((always_inline)) inline
#else
#define DCCNN_ISA_CLONES
#define DCCNN_INLINE_IN_CLONES inline
#endif

template <class T>
DCCNN_INLINE_IN_CLONES double dot_row_impl(const double* w, const T* x, index_t D) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (index_t j = 0; j < D; ++j) s += w[j] * x[j];
  return s;
}

template <class T>
DCCNN_INLINE_IN_CLONES void axpy_row_impl(double step, const T* x, double* w, index_t D) {
#pragma omp simd
  for (index_t j = 0; j < D; ++j) w[j] += step * x[j];
}

DCCNN_ISA_CLONES double dot_row(const double* w, const float* x, index_t D) {
  return dot_row_impl(w, x, D);
}
DCCNN_ISA_CLONES double dot_row(const double* w, const double* x, index_t D) {
  return dot_row_impl(w, x, D);
}
DCCNN_ISA_CLONES void axpy_row(double step, const float* x, double* w, index_t D) {
  axpy_row_impl(step, x, w, D);
}
DCCNN_ISA_CLONES void axpy_row(double step, const double* x, double* w, index_t D) {
  axpy_row_impl(step, x, w, D);
}

// The signs of the K outputs' coordinates, shared by both operators: output c's Gram is
// s_c s_c^T times the operator's own.
struct OutputSigns {
  const double* sign;  // (N x K) or nullptr: all +1
  index_t K;
  double sign_of(index_t i, index_t c) const { return sign ? sign[i * K + c] : 1.0; }
};

template <class T>
struct LinearOp : OutputSigns {
  const T* X;
  index_t D;
  double* W;  // (K x D)
  std::vector<double> sqnorm;
  LinearOp(const T* x, index_t n, index_t d, index_t k, const double* s, double* w)
      : OutputSigns{s, k}, X(x), D(d), W(w), sqnorm(static_cast<size_t>(n)) {
    for (index_t i = 0; i < n; ++i) {
      const T* xi = X + i * D;
      double q = 0;
#pragma omp simd reduction(+ : q)
      for (index_t j = 0; j < D; ++j) q += double(xi[j]) * xi[j];
      sqnorm[static_cast<size_t>(i)] = q;
    }
  }
  double diag(index_t i) const { return sqnorm[static_cast<size_t>(i)]; }
  double margin(index_t i, index_t c) const {
    return sign_of(i, c) * dot_row(W + c * D, X + i * D, D);
  }
  void update(index_t i, index_t c, double delta) {
    axpy_row(delta * sign_of(i, c), X + i * D, W + c * D, D);
  }
};

// Dense Gram (LIBSVM style): the state G[c] = Gram (sign_c * alpha_c) is kept, and a step on
// row i adds a multiple of the Gram's row i (= column i) to it.
struct DenseGramOp : OutputSigns {
  const double* gram;
  index_t N;
  double* G;  // (K x N)
  DenseGramOp(const double* g, index_t n, index_t k, const double* s, double* state)
      : OutputSigns{s, k}, gram(g), N(n), G(state) {}
  double diag(index_t i) const { return gram[i * N + i]; }
  double margin(index_t i, index_t c) const { return sign_of(i, c) * G[c * N + i]; }
  void update(index_t i, index_t c, double delta) {
    axpy_row(delta * sign_of(i, c), gram + i * N, G + c * N, N);
  }
};

void check_options(const CdOptions& o) {
  if (!(o.C > 0) || !std::isfinite(o.C)) throw std::invalid_argument("C: must be > 0");
  if (!(o.tol > 0)) throw std::invalid_argument("tol: must be > 0");
  if (o.max_epochs < 1) throw std::invalid_argument("max_iter: must be >= 1");
  if (static_cast<int>(o.loss) < 0 || static_cast<int>(o.loss) > 3)
    throw std::invalid_argument("loss: unknown kind");
}

// Outputs are independent problems: contiguous groups of them, one per thread.
template <class Op>
CdResult run_outputs(Op& op, index_t N, index_t K, const double* lin, double* alpha,
                     const CdOptions& opt, int n_threads, const InterruptCheck& check) {
  check_options(opt);
  if (opt.row_C)
    for (index_t i = 0; i < N; ++i)
      if (!(opt.row_C[i] > 0) || !std::isfinite(opt.row_C[i]))
        throw std::invalid_argument("row_C: every entry must be > 0 and finite");
  CancelToken cancel(check);
  std::vector<OutputState> states(static_cast<size_t>(K));
  const index_t groups = std::max<index_t>(1, std::min<index_t>(resolve_threads(n_threads), K));
#pragma omp parallel for schedule(static, 1) num_threads(static_cast<int>(groups))
  for (index_t g = 0; g < groups; ++g) {
    const index_t c0 = g * K / groups, c1 = (g + 1) * K / groups;
    coordinate_descent(op, N, K, c0, c1, lin, alpha, opt, cancel, states.data() + c0);
  }
  cancel.throw_if_stopped();
  return summarise(states);
}

}  // namespace

CdResult dual_cd_dense(const double* gram, index_t N, index_t K, const double* sign,
                       const double* lin, double* alpha, double* G, const CdOptions& opt,
                       int n_threads, const InterruptCheck& check) {
  DenseGramOp op(gram, N, K, sign, G);
  return run_outputs(op, N, K, lin, alpha, opt, n_threads, check);
}

template <class T>
CdResult dual_cd_linear(const T* X, index_t N, index_t D, index_t K, const double* sign,
                        const double* lin, double* alpha, double* W, const CdOptions& opt,
                        int n_threads, const InterruptCheck& check) {
  LinearOp<T> op(X, N, D, K, sign, W);
  return run_outputs(op, N, K, lin, alpha, opt, n_threads, check);
}

template CdResult dual_cd_linear<float>(const float*, index_t, index_t, index_t, const double*,
                                        const double*, double*, double*, const CdOptions&, int,
                                        const InterruptCheck&);
template CdResult dual_cd_linear<double>(const double*, index_t, index_t, index_t,
                                         const double*, const double*, double*, double*,
                                         const CdOptions&, int, const InterruptCheck&);

}  // namespace dccnn
