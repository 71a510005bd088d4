"""What the ADMM solver (admm.py) needs from a feature back-end: the space its primal
iterates live in, and the A-step's K linear machines. One class per back-end, same methods:

- ``zeros()``, ``scores(E)`` (f on the training images, (n, K)), ``gram(E)`` (E^T E, T x T),
  ``norm(E)`` (Frobenius) and ``shrink(E, tau)`` (singular values shrunk by tau: the prox of
  tau ||.||_*);
- ``solve(core, lin, a, loss_kind, C, tol, max_epochs, seed, row_C)``: the A-step's dual
  (csrc/dccnn/dual_cd.hpp; row_C: the C of every row, None for C on all) from the warm
  start a, in place (``start(a)`` first sets the machines' kept state for a given a);
  ``step(a)``: the element G(sign * a) (= A - Z);
  ``rescale(f)``: divides the machines' kept state by f, as ADMM divides a when rho grows;
- ``expansion(beta, S)``: the element G(beta) S (warm starts);
- ``combine((c1, E1), (c2, E2), ...)``: the element c1 E1 + c2 E2 + ... in one pass.

Iterates support / by scalars and @ by T x T matrices; sums go through ``combine``.
"""

import numpy as np
import scipy.linalg
from scipy.linalg.blas import daxpy

from ..features import gram_M
from .fista import svt

SHRINKING = True
# Multiply-adds per epoch below which the coordinate descent runs on one thread: its outputs
# would be split over OpenMP threads that compete with numpy's BLAS workers, still spinning
# after the GEMMs around each call. Exact back-end, digits n = 300 (9e5 per epoch): 3.7-3.9 s
# on one thread against 4.5-4.8 s on two; Nystroem features of the default layer (8e7): 3.3
# against 3.8 s on one, but the outputs' split pays on more cores (bench/README.md).
PARALLEL_MIN_WORK = 1e7


def signed(sign, a):
    """beta of the A-step's multipliers a: sign * a (margin losses) or a (sign None)."""
    return a if sign is None else sign * a


def linear_combination(*terms):
    """sum of c * x over the (c, x) pairs (float64 arrays of one shape): a scaled copy and BLAS
    axpys into it. numpy's c1 * x1 + c2 * x2 + ... allocates a temporary per operation and
    passes over each: on ADMM's exact iterates (16000 x 160) a three-term sum took 19-26 ms
    that way against 6-7 ms (bench/README.md)."""
    (c0, x0), *rest = terms
    out = np.multiply(x0, c0, dtype=np.float64)
    if out.size == 0:  # (daxpy refuses empty vectors: explicit features with m = 0)
        return out
    flat = out.reshape(-1)
    for c, x in rest:
        # flat + c x, in place (daxpy returns its own y when y is contiguous float64)
        flat = daxpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1), flat, a=c)
    return flat.reshape(out.shape)


def cd_threads(work_per_epoch):
    """1, or 0 (OpenMP's default: OMP_NUM_THREADS, threadpoolctl's limits)."""
    return 1 if work_per_epoch < PARALLEL_MIN_WORK else 0


class ExplicitSpace:
    """Explicit features: elements are (m, T) matrices, the A-step runs on the rows
    x_i = (psi_1(x_i), ..., psi_Q(x_i)) (LIBLINEAR style, ``dual_cd_linear``)."""

    def __init__(self, feats, sign, K):
        self.feats = feats
        n, Q, m = feats.psi.shape
        self.shape = (m, Q * K)
        # the core's coordinate descent reads C-ordered rows: the recovery's reduced features
        # (n, Q, r) can be a strided view (one filter, one window), whose reshape stays one
        self.rows = np.ascontiguousarray(feats.psi.reshape(n, Q * m))
        self.sign = sign
        self.W = np.zeros((K, Q * m))  # W[c] = sum_i sign a x_i: A - Z in the rows' layout

    def zeros(self):
        return np.zeros(self.shape)

    combine = staticmethod(linear_combination)

    def scores(self, E):
        return self.feats.scores(E)

    def gram(self, E):
        return E.T @ E

    def norm(self, E):
        return float(np.linalg.norm(E))

    def shrink(self, E, tau):
        return svt(E, tau)

    def expansion(self, beta, S):
        return self.feats.G(beta) @ S

    def solve(self, core, lin, a, loss_kind, C, tol, max_epochs, seed, row_C=None):
        core.dual_cd_linear(self.rows, self.sign, lin, a, self.W, loss_kind, C, tol, max_epochs,
                            SHRINKING, seed, cd_threads(self.rows.size * a.shape[1]),
                            row_C=row_C)

    def start(self, a):
        self.W = np.ascontiguousarray(signed(self.sign, a).T @ self.rows, dtype=np.float64)

    def step(self, a):
        m, T = self.shape
        K = self.W.shape[0]
        return self.W.reshape(K, T // K, m).transpose(2, 1, 0).reshape(m, T)

    def rescale(self, f):
        self.W /= f


class KernelExpansion:
    """An element A of H^T on the exact back-end: A_t = sum_(i, q) coef[(i, q), t] psi_q(x_i),
    kept with its inner products with every training feature,
    img[(j, q), t] = <A_t, psi_q(x_j)> = (blocks as an nQ x nQ matrix) @ coef. Linear
    operations act on both, so no iteration multiplies by the blocks except ``step``.
    ``known_gram``: A^T A when already known (G(beta): M(beta), at n Q T K flops instead of
    the n Q T^2 of coef^T img)."""

    __slots__ = ("coef", "img", "known_gram")

    def __init__(self, coef, img, known_gram=None):
        self.coef, self.img, self.known_gram = coef, img, known_gram

    def __truediv__(self, scalar):
        return KernelExpansion(self.coef / scalar, self.img / scalar)

    def __matmul__(self, R):
        return KernelExpansion(self.coef @ R, self.img @ R)


class KernelSpace:
    """Exact back-end: elements are ``KernelExpansion``s. The A-step's rows are the
    concatenated pooled features, so its Gram is the n x n trace Gram
    sum_q <psi_q(x_i), psi_q(x_j)> = tr K_ij, Q^2 times smaller than the blocks and kept whole
    (LIBSVM style, ``dual_cd_dense``)."""

    # arrays of n Q T numbers alive at once in an ADMM iteration (B, U, Z, A - Z, A, the
    # relaxed A, B_old, X and the new B, two arrays each, and two temporaries), for memory
    # estimates
    LIVE_ARRAYS = 20

    def __init__(self, feats, sign, K):
        self.feats = feats
        self.n, self.Q, self.K = feats.n, feats.Q, K
        self.trace_gram = feats.trace_gram()
        self.sign = sign
        self.G = np.zeros((K, self.n))  # G[c] = trace Gram (sign_c * a_c)

    def zeros(self):
        T = self.Q * self.K
        return KernelExpansion(np.zeros((self.n * self.Q, T)), np.zeros((self.n * self.Q, T)))

    @staticmethod
    def combine(*terms):
        return KernelExpansion(linear_combination(*((c, E.coef) for c, E in terms)),
                               linear_combination(*((c, E.img) for c, E in terms)))

    def scores(self, E):
        # f[j, c] = sum_q <A_(q, c), psi_q(x_j)> = sum_q img[(j, q), q*K + c]
        n, Q, K = self.n, self.Q, self.K
        return np.einsum("jqqc->jc", E.img.reshape(n, Q, Q, K))

    def gram(self, E):
        if E.known_gram is not None:
            return E.known_gram
        M = E.coef.T @ E.img
        return 0.5 * (M + M.T)

    def norm(self, E):
        return float(np.sqrt(max(np.vdot(E.coef, E.img), 0.0)))

    def shrink(self, E, tau):
        lam, V = scipy.linalg.eigh(self.gram(E))
        s = np.sqrt(np.maximum(lam, 0.0))
        keep = s > tau
        Vk = V[:, keep]
        # rank r = keep.sum() is small: E (V_r diag(w) V_r^T) in two thin products
        thin = E @ Vk
        return thin @ ((1.0 - tau / s[keep])[:, None] * Vk.T), s[keep] - tau

    def expansion(self, beta, S):
        n, Q, K = self.n, self.Q, self.K
        coef = np.zeros((n, Q, Q, K))
        idx = np.arange(Q)
        coef[:, idx, idx, :] = beta[:, None, :]
        H = self.feats.cross(beta)
        G = KernelExpansion(coef.reshape(n * Q, Q * K), H.reshape(n * Q, Q * K),
                            gram_M(H, beta))
        return G if S is None else G @ S

    def solve(self, core, lin, a, loss_kind, C, tol, max_epochs, seed, row_C=None):
        threads = cd_threads(self.trace_gram.size * a.shape[1])
        core.dual_cd_dense(self.trace_gram, self.sign, lin, a, self.G, loss_kind, C, tol,
                           max_epochs, SHRINKING, seed, threads, row_C=row_C)

    def start(self, a):
        self.G = np.ascontiguousarray((self.trace_gram @ signed(self.sign, a)).T)

    def step(self, a):
        return self.expansion(signed(self.sign, a), None)

    def rescale(self, f):
        self.G /= f
