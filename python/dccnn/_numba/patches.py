"""Numba twin of csrc/dccnn/patches.cpp."""

import numba
import numpy as np

from ._threads import set_threads


@numba.njit(parallel=True, cache=True)
def _extract(X, size, stride, padding, out):
    n, C, H, W = X.shape
    Wo = (W + 2 * padding - size) // stride + 1
    P = out.shape[1]
    for i in numba.prange(n):
        for p in range(P):
            oy, ox = p // Wo, p % Wo
            for c in range(C):
                for dy in range(size):
                    y = oy * stride - padding + dy
                    for dx in range(size):
                        x = ox * stride - padding + dx
                        k = (c * size + dy) * size + dx
                        if 0 <= y < H and 0 <= x < W:
                            out[i, p, k] = X[i, c, y, x]
                        else:
                            out[i, p, k] = 0.0


@numba.njit(parallel=True, cache=True)
def _normalize(Z, center, scale, eps):
    for r in numba.prange(Z.shape[0]):
        z = Z[r]
        if center:
            z -= np.mean(z.astype(np.float64))
        if scale:
            nrm = np.sqrt(np.sum(z.astype(np.float64) ** 2))
            if nrm + eps > 0:
                z *= 1.0 / (nrm + eps)


def extract_patches(X, size, stride, padding, n_threads):
    if X.ndim != 4:
        raise ValueError("X: expected a 4-d array (n, C, H, W)")
    n, C, H, W = X.shape
    if size < 1 or stride < 1 or padding < 0:
        raise ValueError("size, stride: must be >= 1; padding: must be >= 0")
    if size > H + 2 * padding or size > W + 2 * padding:
        raise ValueError(f"size: a {size}x{size} window does not fit the padded "
                         f"{H + 2 * padding}x{W + 2 * padding} image")
    Ho = (H + 2 * padding - size) // stride + 1
    Wo = (W + 2 * padding - size) // stride + 1
    out = np.empty((n, Ho * Wo, C * size * size), dtype=X.dtype)
    set_threads(n_threads)
    _extract(X, size, stride, padding, out)
    return out


def normalize_patches(Z, center, scale, eps, n_threads):
    if eps < 0:
        raise ValueError("eps: must be >= 0")
    if not Z.flags.writeable:
        raise ValueError("Z: must be writeable")
    set_threads(n_threads)
    if Z.size:
        _normalize(Z.reshape(-1, Z.shape[-1]), center, scale, Z.dtype.type(eps))
