"""Input checks shared by every public entry point: errors name the argument."""

import numbers
import operator

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_int(value, name, *, minimum=None, maximum=None):
    """Return ``value`` as a Python int, or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got a boolean")
    if not isinstance(value, numbers.Integral):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be <= {maximum}, got {value}")
    return value


def check_bool(value, name):
    """Return ``value`` as a Python bool (True, False or their numpy forms), or raise naming
    ``name``: a string such as "False" or a number would otherwise read as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_sample_weight(value, n):
    """``sample_weight`` as a float64 (n,) array of finite weights >= 0, not all 0."""
    try:
        w = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"sample_weight: expected an array of {n} numbers") from None
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight: every weight must be finite and >= 0")
    if not np.any(w > 0):
        raise ValueError("sample_weight: every weight is zero; at least one must be > 0")
    return w


def check_seed(value, name):
    """A seed for ``np.random.default_rng``: None, an integer >= 0, a SeedSequence, BitGenerator
    or Generator, or a legacy RandomState (scikit-learn's convention), from which one integer
    seed is drawn. Anything else raises naming ``name``."""
    if value is None or isinstance(value, (np.random.SeedSequence, np.random.BitGenerator,
                                           np.random.Generator)):
        return value
    if isinstance(value, np.random.RandomState):
        return int(value.randint(2**31 - 1))
    return check_int(value, name, minimum=0)


def check_float(value, name, *, minimum=None, exclusive=False):
    """Return ``value`` as a finite Python float, or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    if minimum is not None:
        if exclusive and value <= minimum:
            raise ValueError(f"{name}: must be > {minimum}, got {value}")
        if not exclusive and value < minimum:
            raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


def as_float_array(X, name, *, ndims, dtype=None, allow_empty=False):
    """Validate ``X`` and return a C-contiguous float32/float64 array (copied at most once).

    ``ndims`` is the set of accepted numbers of dimensions. float32 stays float32, other real
    types become float64 unless ``dtype`` forces one. Complex, object and string arrays,
    non-finite values and (unless ``allow_empty``) empty arrays are errors.
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name}: expected a numeric array, got {type(X).__name__}")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and other unconvertible objects
        raise TypeError(f"{name}: could not be converted to a numeric array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        shapes = " or ".join(f"{k}-d" for k in sorted(ndims))
        raise ValueError(f"{name}: expected a {shapes} array, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: array is empty (shape {arr.shape})")
    if dtype is None:
        dtype = np.float32 if (arr.dtype.kind == "f" and arr.dtype.itemsize == 4) else np.float64
    # Native byte order and C order in one copy at most (big-endian and Fortran inputs too).
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return arr


def common_dtype(*arrays):
    """float32 when every array is float32, float64 otherwise."""
    return np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
