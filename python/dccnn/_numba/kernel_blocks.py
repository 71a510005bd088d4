"""Numba twin of csrc/dccnn/kernel_blocks.cpp (kernel codes as in dccnn.kernels.KERNELS)."""

import numba
import numpy as np

from ._threads import set_threads

RBF, INVERSE_POLYNOMIAL, POLYNOMIAL, LINEAR = 0, 1, 2, 3
MAX_DEGREE = 100  # the core's kMaxDegree (csrc/dccnn/kernel_spec.hpp)


def tile_engine():
    return "numba"


@numba.njit(inline="always")
def _kernel_value(dot, sqn_a, sqn_b, kind, gamma, degree, coef0, constant):
    if kind == RBF:
        dist = max(sqn_a + sqn_b - 2.0 * dot, 0.0)
        return np.exp(-gamma * dist) + constant
    if kind == INVERSE_POLYNOMIAL:
        return 1.0 / (2.0 - dot) + constant
    if kind == POLYNOMIAL:
        return (dot + coef0) ** degree + constant
    return dot + constant


# Multiply-adds per call of a compiled loop: Numba's loops cannot see a pending Ctrl-C, so the
# wrappers run them in chunks of about this much work (a few tenths of a second on one core)
# and Python raises KeyboardInterrupt between two chunks, as the C++ core polls within 50 ms.
CHUNK_WORK = 2**27


def _chunk_size(work_per_item):
    """Items per chunk: about CHUNK_WORK multiply-adds, and at least one per thread."""
    return max(numba.get_num_threads(), CHUNK_WORK // max(1, work_per_item))


@numba.njit(parallel=True, cache=True)
def _kernel_matrix(Z1, sq1, Z2, sq2, kind, gamma, degree, coef0, constant, out):
    for i in numba.prange(Z1.shape[0]):
        for j in range(Z2.shape[0]):
            dot = 0.0
            for k in range(Z1.shape[1]):
                dot += Z1[i, k] * Z2[j, k]
            out[i, j] = _kernel_value(dot, sq1[i], sq2[j], kind, gamma, degree, coef0, constant)


@numba.njit(parallel=True, cache=True)
def _pooled(Z1, sq1, Z2, sq2, pair_i, pair_j, symmetric, ptr, win, n_windows, kind, gamma,
            degree, coef0, constant, out):
    P, d = Z1.shape[1], Z1.shape[2]
    counts = np.zeros(n_windows)
    for m in range(ptr[P]):
        counts[win[m]] += 1.0
    for t in numba.prange(pair_i.shape[0]):
        i, j = pair_i[t], pair_j[t]
        block = np.zeros((n_windows, n_windows))
        for p in range(P):
            for pp in range(P):
                dot = 0.0
                for k in range(d):
                    dot += Z1[i, p, k] * Z2[j, pp, k]
                v = _kernel_value(dot, sq1[i, p], sq2[j, pp], kind, gamma, degree, coef0,
                                  constant)
                for a in range(ptr[p], ptr[p + 1]):
                    for b in range(ptr[pp], ptr[pp + 1]):
                        block[win[a], win[b]] += v
        for q in range(n_windows):
            for r in range(n_windows):
                out[i, j, q, r] = block[q, r] / (counts[q] * counts[r])
                if symmetric:
                    out[j, i, r, q] = out[i, j, q, r]


def _check_unit_ball(Z, name):
    sq = np.einsum("...k,...k->...", Z, Z)
    if sq.size and sq.max() > 1 + 1e-5:
        raise ValueError(f"{name}: inverse_polynomial needs every patch norm <= 1 (found "
                         f"{np.sqrt(sq.max()):.6f}); normalise or rescale the patches")


def _check_kernel(kind, gamma, degree, constant):
    if kind not in (RBF, INVERSE_POLYNOMIAL, POLYNOMIAL, LINEAR):
        raise ValueError(f"kernel: unknown kind {kind}")
    if constant < 0:
        raise ValueError("constant: must be >= 0")
    if kind == RBF and gamma <= 0:
        raise ValueError("gamma: must be > 0")
    if kind == POLYNOMIAL and not 1 <= degree <= MAX_DEGREE:
        raise ValueError(f"degree: must be between 1 and {MAX_DEGREE}")


def kernel_matrix(Z1, Z2, kind, gamma, degree, coef0, constant, n_threads):
    if Z1.ndim != 2 or Z2.ndim != 2 or Z1.shape[1] != Z2.shape[1]:
        raise ValueError("Z1, Z2: expected 2-d arrays with the same number of columns")
    _check_kernel(kind, gamma, degree, constant)
    if kind == INVERSE_POLYNOMIAL:
        _check_unit_ball(Z1, "Z1")
        _check_unit_ball(Z2, "Z2")
    out = np.empty((Z1.shape[0], Z2.shape[0]), dtype=Z1.dtype)
    set_threads(n_threads)
    t = Z1.dtype.type
    sq1, sq2 = (Z1 * Z1).sum(axis=1), (Z2 * Z2).sum(axis=1)
    rows = _chunk_size(Z2.shape[0] * Z1.shape[1])
    for r0 in range(0, Z1.shape[0], rows):
        _kernel_matrix(Z1[r0:r0 + rows], sq1[r0:r0 + rows], Z2, sq2, kind, t(gamma), degree,
                       t(coef0), t(constant), out[r0:r0 + rows])
    return out


def validate_pooling(position_ptr, position_window, n_windows, n_positions):
    """The C++ core's checks of a pooling map, with its messages (the compiled loops index
    memory with these arrays unchecked). Returns them as int64 and int32 arrays."""
    ptr, win = np.asarray(position_ptr), np.asarray(position_window)
    if ptr.dtype.kind not in "iu" or win.dtype.kind not in "iu":
        raise TypeError("pooling: position_ptr and position_window must be integer arrays")
    ptr, win = ptr.astype(np.int64, copy=False), win.astype(np.int32, copy=False)
    if ptr.shape != (n_positions + 1,):
        raise ValueError("pooling: position_ptr must have P + 1 entries")
    if win.ndim != 1 or win.shape[0] != ptr[-1]:
        raise ValueError("pooling: position_window length must equal position_ptr[-1]")
    if n_windows < 1 or n_positions < 1:
        raise ValueError("pooling: empty pooling map")
    if ptr[0] != 0:
        raise ValueError("pooling: offsets must start at 0")
    if np.any(np.diff(ptr) < 0):
        raise ValueError("pooling: offsets must be non-decreasing")
    if win.size and (win.min() < 0 or win.max() >= n_windows):
        raise ValueError("pooling: window out of range")
    if np.bincount(win, minlength=n_windows).min() == 0:
        raise ValueError("pooling: every window needs at least one position")
    return ptr, win


def pooled_kernel_blocks(Z1, Z2, position_ptr, position_window, n_windows, kind, gamma, degree,
                         coef0, constant, n_threads):
    if Z1.ndim != 3:
        raise ValueError("Z1: expected a 3-d array (n1, P, d)")
    if Z2 is not None and (Z2.ndim != 3 or Z2.shape[1:] != Z1.shape[1:]):
        raise ValueError("Z2: expected a 3-d array (n2, P, d) with the P and d of Z1")
    position_ptr, position_window = validate_pooling(position_ptr, position_window, n_windows,
                                                     Z1.shape[1])
    _check_kernel(kind, gamma, degree, constant)
    symmetric = Z2 is None
    Z2 = Z1 if symmetric else Z2
    if kind == INVERSE_POLYNOMIAL:
        _check_unit_ball(Z1, "Z1")
        _check_unit_ball(Z2, "Z2")
    out = np.empty((Z1.shape[0], Z2.shape[0], n_windows, n_windows), dtype=Z1.dtype)
    set_threads(n_threads)
    sq1, sq2 = (Z1 * Z1).sum(axis=2), (Z2 * Z2).sum(axis=2)
    P, d = Z1.shape[1:]
    for pair_i, pair_j in _pair_chunks(Z1.shape[0], Z2.shape[0], symmetric,
                                       _chunk_size(P * P * d)):
        _pooled(Z1, sq1, Z2, sq2, pair_i, pair_j, symmetric, position_ptr, position_window,
                n_windows, kind, float(gamma), degree, float(coef0), float(constant), out)
    return out


def _pair_chunks(n1, n2, symmetric, size):
    """The image pairs (i, j) to evaluate, j >= i where symmetric, in row-major order: index
    arrays of at most ``size`` pairs each."""
    rows, cols, count = [], [], 0
    for i in range(n1):
        js = np.arange(i if symmetric else 0, n2)
        while js.size:
            take = js[:size - count]
            rows.append(np.full(take.size, i))
            cols.append(take)
            count += take.size
            js = js[take.size:]
            if count == size:
                yield np.concatenate(rows), np.concatenate(cols)
                rows, cols, count = [], [], 0
    if count:
        yield np.concatenate(rows), np.concatenate(cols)
