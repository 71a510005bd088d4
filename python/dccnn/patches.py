"""Patch extraction z_p(x), CCNN patch normalisation and ZCA whitening (SPEC §1)."""

import numpy as np
import scipy.linalg

from ._backend import get_backend
from ._memory import check_allocation
from ._threads import n_threads_from_n_jobs
from ._validation import as_float_array, check_bool, check_float, check_int


def as_images(X, name="X"):
    """(n, C, H, W) or (n, H, W) -> C-contiguous float (n, C, H, W)."""
    X = as_float_array(X, name, ndims={3, 4})
    return X[:, None] if X.ndim == 3 else X


def patch_grid_shape(image_shape, size, stride=1, padding=0):
    """(H', W') of the grid of patch positions of an (H, W) image, or a ValueError."""
    if isinstance(image_shape, (str, bytes)) or not hasattr(image_shape, "__len__") or len(
            image_shape) != 2:
        raise ValueError(f"image_shape: expected (H, W), got {image_shape!r}")
    H, W = (check_int(s, "image_shape", minimum=1) for s in image_shape)
    # Bounded so that the core's index arithmetic can never overflow int64.
    size = check_int(size, "size", minimum=1, maximum=2**31)
    stride = check_int(stride, "stride", minimum=1, maximum=2**31)
    padding = check_int(padding, "padding", minimum=0, maximum=2**31)
    if size > H + 2 * padding or size > W + 2 * padding:
        raise ValueError(
            f"size: a {size}x{size} window does not fit the padded "
            f"{H + 2 * padding}x{W + 2 * padding} image"
        )
    return (H + 2 * padding - size) // stride + 1, (W + 2 * padding - size) // stride + 1


def extract_patches(X, size, stride=1, padding=0, *, normalize=False, eps=0.1, backend="auto",
                    n_jobs=None, max_memory=None):
    """All ``size x size`` patches of images ``X`` -> (n, P, d).

    ``X`` is (n, C, H, W) or (n, H, W). ``d = C*size*size`` is ordered (channel, dy, dx);
    the P positions run row-major over the grid of ``patch_grid_shape``; ``padding`` adds
    zeros. ``normalize=True`` subtracts each patch's mean and divides it by (its norm + eps),
    as in CCNN. float32 stays float32; other inputs become float64.
    """
    X = as_images(X)
    grid = patch_grid_shape(X.shape[2:], size, stride, padding)
    eps = check_float(eps, "eps", minimum=0)
    normalize = check_bool(normalize, "normalize")
    d = X.shape[1] * size * size
    check_allocation((X.shape[0], grid[0] * grid[1], d), X.dtype, "extract_patches",
                     max_memory=max_memory, advice="Extract patches in batches of images.")
    if normalize:
        _check_norms_representable(X, d)
    be = get_backend(backend)
    n_threads = n_threads_from_n_jobs(n_jobs)
    Z = be.extract_patches(X, size, stride, padding, n_threads)
    if normalize:
        be.normalize_patches(Z, True, True, eps, n_threads)
    return Z


def _check_norms_representable(X, d):
    """The normalisation sums d squared centred values in float64 (|z - mean| <= 2 max|x|):
    beyond this bound the norm overflows to inf and every patch would silently become 0."""
    bound = np.sqrt(np.finfo(np.float64).max / (4 * d))
    largest = float(np.abs(X).max())
    if largest > bound:
        raise ValueError(f"X: values up to {largest:.3g} overflow the patch norms of "
                         f"normalize=True (|x| must stay below {bound:.3g}); rescale X")


class ZCAWhitening:
    """ZCA whitening of patches: ``z -> (z - mean) U diag(1/sqrt(lambda + eps)) U^T``,
    fitted on training patches (CCNN uses eps = 0.1 on normalised patches)."""

    def __init__(self, eps=0.1):
        self.eps = eps

    def fit(self, Z):
        """Fit on patches ``Z`` of shape (..., d)."""
        Z = as_float_array(Z, "Z", ndims={2, 3})
        eps = check_float(self.eps, "eps", minimum=0, exclusive=True)
        flat = Z.reshape(-1, Z.shape[-1]).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            self.mean_ = flat.mean(axis=0)
            cov = np.cov(flat - self.mean_, rowvar=False, bias=True).reshape(flat.shape[1], -1)
        if not (np.isfinite(self.mean_).all() and np.isfinite(cov).all()):
            raise ValueError(f"Z: values up to {np.abs(flat).max():.3g} overflow the covariance "
                             "of the patches in float64; rescale Z")
        evals, evecs = scipy.linalg.eigh(cov)
        self.components_ = (evecs / np.sqrt(np.maximum(evals, 0) + eps)) @ evecs.T
        return self

    def transform(self, Z):
        if not hasattr(self, "components_"):
            raise RuntimeError("ZCAWhitening: call fit before transform")
        Z = as_float_array(Z, "Z", ndims={2, 3})
        if Z.shape[-1] != self.mean_.shape[0]:
            raise ValueError(f"Z: expected patches of dimension {self.mean_.shape[0]}, "
                             f"got {Z.shape[-1]}")
        with np.errstate(over="ignore", invalid="ignore"):
            out = (Z - self.mean_.astype(Z.dtype)) @ self.components_.astype(Z.dtype)
        if not np.isfinite(out).all():
            raise ValueError(f"Z: whitening overflows {Z.dtype.name} on these patches (values up "
                             f"to {np.abs(Z).max():.3g}); rescale Z or use float64")
        return out.astype(Z.dtype, copy=False)

    def fit_transform(self, Z):
        return self.fit(Z).transform(Z)
