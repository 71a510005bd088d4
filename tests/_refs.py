"""Independent references for the dccnn tests: explicit loops on tiny inputs, numpy, scipy."""

import numpy as np
import pytest
import scipy.spatial.distance

import dccnn

HAS_CORE = dccnn.has_compiled_core()
BACKENDS = ["numba"] + (["cpp"] if HAS_CORE else [])
KERNEL_NAMES = ["rbf", "inverse_polynomial", "polynomial", "linear"]

requires_core = pytest.mark.skipif(not HAS_CORE, reason="compiled core dccnn._core not built")

# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------

def ref_extract_patches(X, size, stride=1, padding=0):
    """Explicit loops: zero padding with np.pad, positions row-major, d = (channel, dy, dx)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 3:
        X = X[:, None]
    n, C, H, W = X.shape
    Xp = np.pad(X, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = []
    for i in range(n):
        rows = []
        for y0 in range(0, H + 2 * padding - size + 1, stride):
            for x0 in range(0, W + 2 * padding - size + 1, stride):
                z = []
                for c in range(C):
                    for dy in range(size):
                        for dx in range(size):
                            z.append(Xp[i, c, y0 + dy, x0 + dx])
                rows.append(z)
        out.append(rows)
    return np.array(out, dtype=np.float64)


def ref_normalize(Z, eps):
    """CCNN patch normalisation in float64: (z - mean(z)) / (||z - mean(z)|| + eps)."""
    Z = np.asarray(Z, dtype=np.float64)
    centred = Z - Z.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = centred / (norms + eps)
    return np.where(norms + eps > 0, out, 0.0)


def ref_kernel(Z1, Z2, kernel, *, gamma=None, degree=2, coef0=1.0, constant=0.0):
    """k(Z1[i], Z2[j]) in float64 with numpy / scipy."""
    Z1 = np.asarray(Z1, dtype=np.float64)
    Z2 = Z1 if Z2 is None else np.asarray(Z2, dtype=np.float64)
    if gamma is None:
        gamma = 1.0 / Z1.shape[1]
    if kernel == "rbf":
        K = np.exp(-gamma * scipy.spatial.distance.cdist(Z1, Z2, "sqeuclidean"))
    elif kernel == "inverse_polynomial":
        K = 1.0 / (2.0 - Z1 @ Z2.T)
    elif kernel == "polynomial":
        K = (Z1 @ Z2.T + coef0) ** degree
    elif kernel == "linear":
        K = Z1 @ Z2.T
    else:
        raise AssertionError(kernel)
    return K + constant


def ref_pool_windows(grid_shape, size=None, stride=None):
    """List of windows (sorted position lists), row-major over the pooled grid."""
    Hp, Wp = grid_shape
    if size is None:
        return [[p] for p in range(Hp * Wp)]
    stride = size if stride is None else stride
    windows = []
    for y0 in range(0, Hp - size + 1, stride):
        for x0 in range(0, Wp - size + 1, stride):
            windows.append(sorted((y0 + dy) * Wp + (x0 + dx)
                                  for dy in range(size) for dx in range(size)))
    return windows


def ref_pool_matrix(grid_shape, size=None, stride=None):
    """(Q, P) averaging matrix built from ref_pool_windows."""
    windows = ref_pool_windows(grid_shape, size, stride)
    A = np.zeros((len(windows), grid_shape[0] * grid_shape[1]))
    for q, members in enumerate(windows):
        A[q, members] = 1.0 / len(members)
    return A


def ref_pooled_blocks(Z1, Z2, A, kernel, **params):
    """einsum('qp,ipjr,sr->ijqs', A, Kpatch, A) with Kpatch of all patch pairs."""
    Z1 = np.asarray(Z1, dtype=np.float64)
    Z2 = Z1 if Z2 is None else np.asarray(Z2, dtype=np.float64)
    n1, P, d = Z1.shape
    n2 = Z2.shape[0]
    if params.get("gamma") is None:
        params = dict(params, gamma=1.0 / d)
    Kp = ref_kernel(Z1.reshape(-1, d), Z2.reshape(-1, d), kernel, **params)
    Kp = Kp.reshape(n1, P, n2, P)
    return np.einsum("qp,ipjr,sr->ijqs", A, Kp, A)


def assert_close(actual, expected, rtol, err_msg=""):
    """Element-wise relative tolerance with a norm-wise floor (rtol * max |expected|), so that
    entries that are small through cancellation are judged on the scale of the result."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, err_msg)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol,
                               atol=rtol * scale, err_msg=err_msg)


def unit_ball_rows(rng, n, d, max_norm=0.95, dtype=np.float64):
    """Random rows with norms spread in (0, max_norm]."""
    Z = rng.standard_normal((n, d))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    Z *= rng.uniform(0.05, max_norm, size=(n, 1))
    return Z.astype(dtype)
