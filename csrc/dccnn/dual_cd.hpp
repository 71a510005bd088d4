// Dual coordinate descent (Hsieh et al. 2008; Yu, Huang & Lin 2011 for the logistic loss).
// Its problem is the inner one of the ADMM solver (python/dccnn/solvers/admm.py: the dual of
// the A-step, an L2-regularised linear machine per output) and of the saddle form (SPEC §3)
// with a fixed multiplier Sigma:
//
//   minimise  1/2 a^T Qm a + sum_u h(a_u)        over the loss's box,
//
// where Qm is the (sign-folded) contracted Gram, and h the loss's part of -L(alpha):
//   squared_hinge: -a + a^2/(4C), a >= 0      hinge: -a, 0 <= a <= C
//   logistic: a log a + (C - a) log(C - a), 0 < a < C      squared: -y a + a^2/(4C), free.
// The algorithm is written once over a "Gram operator" on N rows x K outputs, coordinate
// u = i*K + c; outputs are independent problems that share the rows. Two operators exist: a
// dense Gram matrix (the exact back-end, LIBSVM style: the gradient Gram (s_c a_c) is kept up
// to date) and explicit feature rows (LIBLINEAR style: w_c = sum_i s_ic a_ic x_i is kept).
// One epoch visits the rows in a random order and, at each row, all its outputs, so that a
// row is read from memory once per epoch whatever K. Every output keeps its own shrinking and
// stopping state, so its result does not depend on which outputs share a thread.
#pragma once

#include <cstdint>

#include "dccnn/common.hpp"

namespace dccnn {

enum class LossKind : int { squared_hinge = 0, hinge = 1, logistic = 2, squared = 3 };

struct CdOptions {
  LossKind loss = LossKind::squared_hinge;
  double C = 1.0;
  // Per-row C (N entries, each > 0), e.g. C times sample weights; nullptr: C on every row.
  const double* row_C = nullptr;
  double tol = 1e-6;        // stop when the projected-gradient spread is below tol
  index_t max_epochs = 1000;
  bool shrinking = true;
  std::uint64_t seed = 0;
};

struct CdResult {
  index_t epochs = 0;
  double pg_spread = 0.0;  // max - min projected gradient at the last full pass
  bool converged = false;
};

// K outputs over one dense Gram (N x N, row-major, symmetric): output c has Gram
// s_c s_c^T * Gram, s_c the column c of sign (N x K; nullptr: all +1). lin[u] is the linear
// coefficient of a_u in h (-1 for margin losses, -y_u for squared); lin and alpha are (N x K),
// alpha the warm start, updated in place. G (K x N) must equal G[c] = Gram (s_c * alpha_c) on
// entry and is kept equal to it. Threads and the result as for dual_cd_linear below.
CdResult dual_cd_dense(const double* gram, index_t N, index_t K, const double* sign,
                       const double* lin, double* alpha, double* G, const CdOptions& opt,
                       int n_threads = 0, const InterruptCheck& check = {});

// K outputs over feature rows X (N x D, row-major): output c has Gram s_c s_c^T * X X^T,
// s_c the column c of sign (N x K; nullptr: all +1). lin and alpha are (N x K), W (K x D)
// must equal W[c] = sum_i sign[i, c] alpha[i, c] X[i] on entry and is kept equal to it. The
// outputs are split over n_threads (<= 0: OpenMP's default). The result's epochs and
// pg_spread are the largest over the outputs; converged means all of them converged.
template <class T>
CdResult dual_cd_linear(const T* X, index_t N, index_t D, index_t K, const double* sign,
                        const double* lin, double* alpha, double* W, const CdOptions& opt,
                        int n_threads = 0, const InterruptCheck& check = {});

}  // namespace dccnn
