"""Coding of targets y into the (n, K) matrix Y of SPEC §1."""

import numpy as np

from ._validation import as_float_array


def encode_targets(y, n, loss):
    """1-d labels -> one-vs-rest +-1 columns (two classes -> one column); 2-d float (n, K) -> as
    is. Returns (Y, classes) with classes None for 2-d targets."""
    if y is None:
        raise ValueError("y: targets are required")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.dtype.kind in "biuf":
        Y = as_float_array(arr, "y", ndims={2}, dtype=np.float64)
        if Y.shape[0] != n:
            raise ValueError(f"y: expected {n} rows like X, got {Y.shape[0]}")
        if loss.margin and not np.isin(Y, (-1.0, 1.0)).all():
            raise ValueError(f"y: a 2-d y for loss={loss.name!r} must hold only -1 and +1")
        return Y, None
    if arr.ndim != 1:
        raise ValueError(f"y: expected a 1-d array of labels or a 2-d (n, K) array, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"y: expected {n} labels like X, got {arr.shape[0]}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("y: contains NaN or infinity")
    if not loss.margin:
        Y = as_float_array(arr, "y", ndims={1}, dtype=np.float64)
        return Y[:, None], None
    classes, idx = np.unique(arr, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"y: needs at least two classes, got {classes.size} ({classes!r})")
    if classes.size == 2:
        return np.where(idx == 1, 1.0, -1.0)[:, None], classes
    Y = -np.ones((n, classes.size))
    Y[np.arange(n), idx] = 1.0
    return Y, classes
