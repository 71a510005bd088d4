"""Feature back-ends (SPEC §5) behind one interface.

The dual solvers see only ``dual_operator(beta)``: for dual weights beta (n, K) it gives
M(beta) = G(beta)^T G(beta) (T x T) and the scores of any A = G(beta) S (S: T x T). The exact
back-end gets both from ``cross(beta)``,
``H[j, q, r*K + c] = <G_(r, c), psi_q(x_j)> = sum_i beta[i, c] K_ji[q, r]``, the inner
products of the columns of G(beta) with every pooled feature of every training image
(n^2 Q^2 K work on the blocks). The explicit back-end gets them from G(beta) itself (m x T):
two passes over psi at n Q m K each, the cost of one FISTA iteration, where ``cross`` would
cost n Q m T, Q times more. ``ExactFeatures`` holds the pooled kernel blocks (those of the
images that fit the memory budget; the others are evaluated again on each pass);
``DeviceExactFeatures`` (device="cuda") holds them in device memory, or evaluates them on
the GPU on each pass where they do not fit, and reduces them there; ``ExplicitFeatures``
holds psi_q(x) in R^m (from a feature map of feature_maps.py: Nystroem, random Fourier or
the patches themselves for the linear kernel) and is also what the primal solvers need.
"""

import contextlib

import numpy as np

from . import _cuda_backend
from ._memory import check_allocation, memory_budget
from ._threads import blas_single_thread
from .kernels import check_kernel_inputs, check_kernel_values, pooled_kernel_blocks


class ExactBackend:
    """What the solvers use of the exact back-end, given ``cross(beta)`` and ``trace_gram()``
    (and ``n``, ``Q``) from a subclass."""

    kind = "exact"

    def dual_operator(self, beta):
        return CrossOperator(self.cross(beta), beta)

    def dual_operator_flops(self, K):
        """Flops of one ``dual_operator``: the cross product over all blocks."""
        return 2.0 * self.n * self.n * self.Q * self.Q * K

    def admm_space(self, sign, K):
        from .solvers.admm_spaces import KernelSpace  # the spaces build on this module
        return KernelSpace(self, sign, K)


class ExactFeatures(ExactBackend):
    """Pooled kernel blocks of all training pairs, ``K_ij`` (Q x Q).

    Either all of them, ``ExactFeatures(blocks)`` with blocks (n, n, Q, Q), when they fit the
    memory budget; or, by ``ExactFeatures.by_batches``, the upper triangle in batches of rows:
    batch [start, stop) is K_ij for i in [start, stop) and j >= start (K_ji = K_ij^T gives the
    rest), so each pair is held once and twice as many pairs fit a budget as in whole rows.
    The first ``n_cached`` batches are evaluated once and held (SPEC §5: "optionally cached up
    to a memory budget"); the others are evaluated again on each pass by
    ``evaluate_rows(start, stop)``. Every pass visits the same batches in the same order, so a
    fixed set of held batches is the best a cache can do here: an LRU cache would evict each
    batch just before its next use. A pass over batches costs two GEMMs per batch (the second
    on the transposed blocks) where all blocks take one, so all blocks are held whenever they
    fit."""

    def __init__(self, blocks):
        self.blocks = blocks
        self.n, self.Q = blocks.shape[1], blocks.shape[2]
        self.batch_rows = None
        self.cached = []
        self.evaluate_rows = None
        self.pairs_evaluated = 0  # image pairs evaluated again since construction

    @classmethod
    def by_batches(cls, n, Q, evaluate_rows, batch_rows, n_cached):
        """The upper triangle in batches of ``batch_rows`` rows, the first ``n_cached`` of
        them evaluated now and held."""
        self = cls.__new__(cls)
        self.blocks = None
        self.n, self.Q = n, Q
        self.evaluate_rows = evaluate_rows
        self.batch_rows = batch_rows
        starts = range(0, n, batch_rows)[:n_cached]
        self.cached = [evaluate_rows(s, min(n, s + batch_rows)) for s in starts]
        self.pairs_evaluated = 0
        return self

    @property
    def streamed(self):
        """Whether each pass evaluates blocks again (not all batches are held)."""
        return self.blocks is None and len(self.cached) * self.batch_rows < self.n

    @property
    def held_share(self):
        """The share of the distinct image pairs (i <= j) whose blocks are held."""
        if self.blocks is not None:
            return 1.0
        n, held = self.n, 0
        for k in range(len(self.cached)):
            start, stop = k * self.batch_rows, min(n, (k + 1) * self.batch_rows)
            held += (stop - start) * (n - start) - (stop - start) * (stop - start - 1) // 2
        return held / (n * (n + 1) // 2)

    def pieces(self):
        """Every block K_ij once, as (I, J, blocks, transposed) over ranges of images I, J:
        K_ij = blocks[i - I.start, j - J.start], or its transpose
        blocks[j - J.start, i - I.start].T where ``transposed``."""
        n = self.n
        if self.blocks is not None:
            yield range(0, n), range(0, n), self.blocks, False
            return
        for k, start in enumerate(range(0, n, self.batch_rows)):
            stop = min(n, start + self.batch_rows)
            if k < len(self.cached):
                rows = self.cached[k]
            else:
                rows = self.evaluate_rows(start, stop)  # K_ij, i in [start, stop), j >= start
                self.pairs_evaluated += rows.shape[0] * rows.shape[1]
            yield range(start, stop), range(start, n), rows, False
            if stop < n:
                yield range(stop, n), range(start, stop), rows[:, stop - start:], True

    def pass_threads(self):
        """The BLAS threads of a pass: one where it evaluates blocks between its GEMMs."""
        return blas_single_thread() if self.streamed else contextlib.nullcontext()

    def cross(self, beta):
        # S[c, j, a, b] = sum_i beta[i, c] K_ij[a, b]: one GEMM of beta^T with the blocks as
        # stored per piece (a transposed piece: batched over j, then a, b swapped)
        n, Q = self.n, self.Q
        K = beta.shape[1]
        S = np.zeros((K, n, Q, Q))
        with self.pass_threads():
            for I, J, blocks, transposed in self.pieces():
                b = beta[I.start:I.stop].T.astype(blocks.dtype)
                if transposed:
                    # part[j, c, b * Q + a]
                    part = np.matmul(b[None], blocks.reshape(len(J), len(I), Q * Q))
                    S[:, J.start:J.stop] += part.reshape(len(J), K, Q, Q).transpose(1, 0, 3, 2)
                else:
                    part = b @ blocks.reshape(len(I), len(J) * Q * Q)
                    S[:, J.start:J.stop] += part.reshape(K, len(J), Q, Q)
        # H[j, q, r*K + c] = sum_i beta[i, c] K_ji[q, r] = S[c, j, r, q]
        return np.ascontiguousarray(S.transpose(1, 3, 2, 0).reshape(n, Q, Q * K))

    def trace_gram(self):
        """(n, n) float64, tr K_ij: the Gram of the concatenated pooled features."""
        G = np.empty((self.n, self.n))
        with self.pass_threads():
            for I, J, blocks, transposed in self.pieces():
                t = np.trace(blocks, axis1=2, axis2=3)
                G[I.start:I.stop, J.start:J.stop] = t.T if transposed else t
        return G


class DeviceExactFeatures(ExactBackend):
    """The exact back-end on the GPU (device="cuda"). The pooled blocks of all pairs are
    evaluated once and held in device memory when they take at most half the device memory
    budget (``held``), and every pass reduces them there (``cross``: contracted with beta;
    ``trace_gram``: their traces). Larger sets are evaluated again on every pass, in batches
    under the budget, each batch reduced on the device (SPEC §5: "evaluated blockwise on the
    fly"). Either way only n Q T (or n^2) numbers come back and no block is held in host
    memory."""

    def __init__(self, Z, pooling, kernel_params, max_device_memory=None):
        self.Z = Z
        self.pooling = pooling
        self.kernel_params = kernel_params
        self.max_device_memory = max_device_memory
        self.n, self.Q = Z.shape[0], pooling.n_windows
        p = pooling
        self.held = _cuda_backend.held_blocks(
            Z, p.position_ptr, p.position_window, p.n_windows, *kernel_params.core_args(),
            max_device_memory=max_device_memory)

    def release(self):
        """Free the held blocks' device memory; later passes evaluate the blocks again."""
        self.held = None

    def cross(self, beta):
        if self.held is None:
            return device_cross(self.Z, None, beta, self.pooling, self.kernel_params,
                                self.max_device_memory)
        H, _ = self.held.cross(np.ascontiguousarray(beta, dtype=np.float64))
        return check_kernel_values(H, self.kernel_params)

    def trace_gram(self):
        p = self.pooling
        if self.held is None:
            G = _cuda_backend.pooled_kernel_traces(
                self.Z, None, p.position_ptr, p.position_window, p.n_windows,
                *self.kernel_params.core_args(), max_device_memory=self.max_device_memory)
        else:
            G, _ = self.held.traces()
        return check_kernel_values(G, self.kernel_params)


def device_cross(Z1, Z2, beta, pooling, kernel_params, max_device_memory=None):
    """``cross_from_blocks`` of the pooled blocks of Z1 against Z2 (None: Z1), computed on the
    GPU without the blocks leaving it: (n1, Q, Q K) float64."""
    H = _cuda_backend.pooled_kernel_cross(
        Z1, Z2, beta, pooling.position_ptr, pooling.position_window, pooling.n_windows,
        *kernel_params.core_args(), max_device_memory=max_device_memory)
    return check_kernel_values(H, kernel_params)


class ExplicitFeatures:
    """Explicit pooled features ``psi[i, q] = psi_q(x_i)`` in R^m, shape (n, Q, m)."""

    kind = "explicit"

    def __init__(self, psi):
        self.psi = psi
        self.n, self.Q, self.m = psi.shape

    def G(self, beta):
        """G(beta) as an (m, Q*K) matrix, column q*K + c = sum_i beta[i, c] psi_q(x_i)."""
        n, Q, m = self.psi.shape
        K = beta.shape[1]
        G_qm = self.psi.reshape(n, Q * m).T @ beta  # (Q*m, K): one GEMM
        # explicit sizes: m = 0 (every Nystroem eigenvalue dropped) is a valid feature space
        return G_qm.reshape(Q, m, K).transpose(1, 0, 2).reshape(m, Q * K)

    def scores(self, A):
        """f[i, c] = sum_q <A[:, q*K + c], psi_q(x_i)> for an explicit A (m, Q*K)."""
        n, Q, m = self.psi.shape
        K = A.shape[1] // Q
        # one GEMM over the flattened (q, m) axis; einsum would copy psi on every call
        A_qm = A.reshape(m, Q, K).transpose(1, 0, 2).reshape(Q * m, K)
        return self.psi.reshape(n, Q * m) @ A_qm

    def scores_adjoint(self, R):
        """The adjoint of ``scores``: dF -> dA, (n, K) -> (m, Q*K)."""
        return self.G(R)

    def cross(self, beta):
        return cross_from_psi(self.psi, self.G(beta))

    def dual_operator(self, beta):
        return ExplicitOperator(self, self.G(np.asarray(beta, dtype=np.float64)))

    def dual_operator_flops(self, K):
        """Flops of one ``dual_operator``: G(beta) and the scores, a pass over psi each."""
        return 4.0 * self.n * self.Q * self.m * K

    def admm_space(self, sign, K):
        from .solvers.admm_spaces import ExplicitSpace
        return ExplicitSpace(self, sign, K)


class CrossOperator:
    """M(beta) and the scores of G(beta) S from H = cross(beta)."""

    def __init__(self, H, beta):
        self.H = H
        self.M = gram_M(H, beta)

    def scores(self, S):
        return scores_from_cross(self.H, S)


class ExplicitOperator:
    """M(beta) and the scores of G(beta) S from the explicit G(beta) (m x T)."""

    def __init__(self, feats, G):
        self.feats = feats
        self.G = G
        M = G.T @ G
        self.M = 0.5 * (M + M.T)

    def scores(self, S):
        return self.feats.scores(self.G @ S)


def cross_from_blocks(blocks, beta):
    """H[j, q, r*K + c] = sum_i beta[i, c] blocks[j, i, q, r]; blocks (na, nb, Q, Q)."""
    na, nb, Q, _ = blocks.shape
    K = beta.shape[1]
    B = beta.T.astype(blocks.dtype)[None]  # (1, K, nb)
    HT = np.matmul(B, blocks.reshape(na, nb, Q * Q))  # (na, K, Q*Q)
    return HT.reshape(na, K, Q, Q).transpose(0, 2, 3, 1).reshape(na, Q, Q * K).astype(np.float64)


def cross_from_psi(psi, G):
    """H[j, q, t] = <G[:, t], psi[j, q]>; psi (na, Q, m), G (m, T)."""
    na, Q, m = psi.shape
    return (psi.reshape(na * Q, m).astype(np.float64) @ G).reshape(na, Q, G.shape[1])


def gram_M(H, beta):
    """M(beta)[q*K + c, t'] = sum_j beta[j, c] H[j, q, t'] (symmetrised)."""
    n, Q, T = H.shape
    K = beta.shape[1]
    M = (beta.T @ H.reshape(n, Q * T)).reshape(K, Q, T).transpose(1, 0, 2).reshape(T, T)
    return 0.5 * (M + M.T)


def scores_from_cross(H, S):
    """Scores of A = G(beta) S: f[j, c] = sum_q sum_t' H[j, q, t'] S[t', q*K + c]."""
    n, Q, T = H.shape
    K = T // Q
    return H.reshape(n, Q * T) @ S.reshape(T, Q, K).transpose(1, 0, 2).reshape(Q * T, K)


# Bytes of one batch of block rows when not all blocks fit the budget (and at most a quarter of
# the budget, the rest holds batches): a few large GEMMs per pass.
STREAM_BATCH_BYTES = 128 * 2**20
# The upper triangle of the blocks comes in at least this many batches of rows: a batch holds
# the blocks among its own rows twice, n^2 / (2 TRIANGLE_BATCHES) blocks more in all, 1/32 of
# the triangle's n^2 / 2. More batches of fewer rows hold less twice but make slower passes:
# each batch's GEMM writes K n Q^2 numbers for its rows' m n Q^2 (n = 1000, Q = 16, K = 10:
# 0.35 s a pass with 64 batches, 0.28 s with 32, 0.23 s for all blocks; bench/README.md).
TRIANGLE_BATCHES = 32


def plan_exact_blocks(n, Q, itemsize, budget):
    """How the exact back-end holds the blocks of n images under a byte budget (None: no
    limit): None when all of them fit, else (batch_rows, n_cached, n_batches) for their upper
    triangle in batches of rows (at most n / TRIANGLE_BATCHES rows, STREAM_BATCH_BYTES and a
    quarter of the budget, at least one row), holding as many leading batches as fit beside
    one batch evaluated again on each pass (none is evaluated again where n_cached is
    n_batches, at about half the blocks' memory)."""
    block_bytes = Q * Q * itemsize
    row_bytes = n * block_bytes
    if budget is None or n * row_bytes <= budget:
        return None
    batch_rows = int(max(1, min(-(-n // TRIANGLE_BATCHES),
                                min(STREAM_BATCH_BYTES, budget // 4) // row_bytes)))
    batch_bytes = [min(batch_rows, n - s) * (n - s) * block_bytes for s in range(0, n, batch_rows)]
    n_cached, held = 0, 0
    while n_cached < len(batch_bytes):
        # the held batches, this one, and the next one evaluated on each pass if any
        after = batch_bytes[n_cached + 1] if n_cached + 1 < len(batch_bytes) else 0
        if held + batch_bytes[n_cached] + after > budget:
            break
        held += batch_bytes[n_cached]
        n_cached += 1
    return batch_rows, n_cached, len(batch_bytes)


def exact_features(Z, pooling, kernel_params, *, n_jobs=None, backend="auto", max_memory=None,
                   device="cpu"):
    """The exact back-end on patches Z (n, P, d): all blocks when they fit the memory budget
    (``max_memory``, else half the available memory), else as ``plan_exact_blocks`` says.
    MemoryError when not even one row of blocks fits. ``device="cuda"``: the blocks are
    held or evaluated on the GPU and reduced there (``DeviceExactFeatures``)."""
    p = kernel_params
    if device == "cuda":
        _cuda_backend.get_cuda()  # a clear error now when there is no GPU, not at the first pass
        return DeviceExactFeatures(Z, pooling, kernel_params)

    def blocks(Z1, Z2=None, budget=None):
        return pooled_kernel_blocks(Z1, Z2, pooling=pooling, kernel=p.kernel, gamma=p.gamma,
                                    degree=p.degree, coef0=p.coef0, constant=p.constant,
                                    n_jobs=n_jobs, backend=backend, max_memory=budget,
                                    device=device)

    n, Q = Z.shape[0], pooling.n_windows
    budget = memory_budget(max_memory)
    plan = plan_exact_blocks(n, Q, Z.dtype.itemsize, budget)
    if plan is None:
        return ExactFeatures(blocks(Z, budget=budget))
    check_kernel_inputs(p, Z.dtype, {"Z": Z})  # now, not at the first batch evaluated in a pass
    batch_rows, n_cached, _ = plan
    check_allocation((batch_rows, n, Q, Q), Z.dtype, "one batch of kernel block rows",
                     max_memory=budget,
                     advice="Use explicit features (features='nystroem') or fewer images.")
    return ExactFeatures.by_batches(n, Q, lambda start, stop: blocks(Z[start:stop], Z[start:]),
                                    batch_rows, n_cached)
