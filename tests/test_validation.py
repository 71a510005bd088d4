"""Input validation: bad input gives a ValueError / TypeError / MemoryError naming the argument;
unusual but valid memory layouts are accepted and give the same result as a C-contiguous
native array."""

import math

import numpy as np
import pytest

import dccnn
from _refs import ref_extract_patches, ref_kernel, requires_core, unit_ball_rows

RNG = np.random.default_rng(123)
X4 = RNG.standard_normal((3, 2, 6, 5))
Z1 = RNG.standard_normal((6, 4)) / 2
Z2 = RNG.standard_normal((5, 4)) / 2
ZP1 = RNG.standard_normal((3, 9, 4)) / 2     # patches on a 3x3 grid
ZP2 = RNG.standard_normal((2, 9, 4)) / 2
POOL = dccnn.make_pooling((3, 3), 2, 1)


def _with(arr, index, value):
    out = np.array(arr, dtype=np.float64, copy=True)
    out[index] = value
    return out


# ---------------------------------------------------------------------------------------------
# Non-finite values
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_images(backend, bad):
    with pytest.raises(ValueError, match=r"\bX\b.*(NaN|infinity)"):
        dccnn.extract_patches(_with(X4, (1, 1, 2, 3), bad), 3, backend=backend)
    with pytest.raises(ValueError, match=r"\bX\b"):
        dccnn.extract_patches(_with(X4, (0, 0, 0, 0), bad).astype(np.float32), 2,
                              backend=backend)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_kernel_inputs(backend, bad):
    with pytest.raises(ValueError, match=r"\bZ1\b.*(NaN|infinity)"):
        dccnn.kernel_matrix(_with(Z1, (2, 1), bad), Z2, backend=backend)
    with pytest.raises(ValueError, match=r"\bZ2\b.*(NaN|infinity)"):
        dccnn.kernel_matrix(Z1, _with(Z2, (4, 3), bad), backend=backend)
    with pytest.raises(ValueError, match=r"\bZ1\b"):
        dccnn.kernel_matrix(_with(Z1, (0, 0), bad), backend=backend)
    with pytest.raises(ValueError, match=r"\bZ1\b.*(NaN|infinity)"):
        dccnn.pooled_kernel_blocks(_with(ZP1, (1, 8, 2), bad), pooling=POOL, backend=backend)
    with pytest.raises(ValueError, match=r"\bZ2\b.*(NaN|infinity)"):
        dccnn.pooled_kernel_blocks(ZP1, _with(ZP2, (0, 0, 0), bad), pooling=POOL,
                                   backend=backend)


def test_non_finite_zca_input():
    with pytest.raises(ValueError, match=r"\bZ\b"):
        dccnn.ZCAWhitening().fit(_with(Z1, (1, 1), np.nan))
    zca = dccnn.ZCAWhitening().fit(Z1)
    with pytest.raises(ValueError, match=r"\bZ\b"):
        zca.transform(_with(Z1, (1, 1), np.inf))


# ---------------------------------------------------------------------------------------------
# Dimensions and shapes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5,), (4, 4), (1, 1, 1, 4, 4), ()])
def test_images_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"\bX\b.*(3-d|4-d)"):
        dccnn.extract_patches(np.ones(shape), 1)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), ()])
def test_kernel_matrix_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"\bZ1\b.*2-d"):
        dccnn.kernel_matrix(np.ones(shape), Z2)
    with pytest.raises(ValueError, match=r"\bZ2\b.*2-d"):
        dccnn.kernel_matrix(Z2, np.ones(shape))


def test_kernel_matrix_column_mismatch():
    with pytest.raises(ValueError, match=r"\bZ2\b"):
        dccnn.kernel_matrix(Z1, Z2[:, :3])


@pytest.mark.parametrize("H,W,size,padding", [(6, 5, 6, 0), (6, 5, 7, 0), (3, 3, 6, 1),
                                              (1, 1, 2, 0), (2, 8, 5, 1)])
def test_patch_larger_than_padded_image(backend, H, W, size, padding):
    X = np.ones((2, 1, H, W))
    with pytest.raises(ValueError, match=r"\bsize\b"):
        dccnn.extract_patches(X, size, padding=padding, backend=backend)


def test_pooled_z1_positions_must_match_pooling():
    with pytest.raises(ValueError, match=r"\bZ1\b.*positions"):
        dccnn.pooled_kernel_blocks(ZP1[:, :8], pooling=POOL)
    with pytest.raises(ValueError, match=r"\bZ1\b"):
        dccnn.pooled_kernel_blocks(ZP1[0], pooling=POOL)            # 2-d


@pytest.mark.parametrize("bad", [ZP2[:, :8], ZP2[:, :, :3], ZP2[0], ZP2[None]],
                         ids=["P", "d", "2-d", "4-d"])
def test_pooled_z2_shape_mismatch(bad):
    with pytest.raises(ValueError, match=r"\bZ2\b"):
        dccnn.pooled_kernel_blocks(ZP1, bad, pooling=POOL)


@pytest.mark.parametrize("bad", [None, np.ones((4, 9)) / 9, (3, 3), "2x2", 2])
def test_pooling_of_wrong_type(bad):
    with pytest.raises(TypeError, match="pooling"):
        dccnn.pooled_kernel_blocks(ZP1, pooling=bad)


# ---------------------------------------------------------------------------------------------
# Non-numeric and empty arrays
# ---------------------------------------------------------------------------------------------

NON_NUMERIC = {
    "str": "abc",
    "bytes": b"abc",
    "str-array": np.array([[["a", "b"], ["c", "d"]]]),
    "object-array": np.array([[[1.0, None], [2.0, 3.0]]], dtype=object),
    "object-numbers": np.ones((1, 2, 2), dtype=object),
    "complex": np.ones((1, 3, 3), dtype=complex),
    "complex64": np.ones((1, 3, 3), dtype=np.complex64),
    "datetime": np.zeros((1, 2, 2), dtype="datetime64[s]"),
    "ragged": [[[1.0, 2.0], [3.0]]],
    "dict": {"a": 1},
}


@pytest.mark.parametrize("bad", NON_NUMERIC.values(), ids=NON_NUMERIC.keys())
def test_non_numeric_images(bad):
    with pytest.raises(TypeError, match=r"\bX\b"):
        dccnn.extract_patches(bad, 1)


@pytest.mark.parametrize("bad", NON_NUMERIC.values(), ids=NON_NUMERIC.keys())
def test_non_numeric_kernel_inputs(bad):
    bad2 = bad[0] if isinstance(bad, np.ndarray) else bad          # 2-d versions
    with pytest.raises(TypeError, match=r"\bZ1\b"):
        dccnn.kernel_matrix(bad2, Z2)
    with pytest.raises(TypeError, match=r"\bZ2\b"):
        dccnn.kernel_matrix(Z1, bad2)
    with pytest.raises(TypeError, match=r"\bZ1\b"):
        dccnn.pooled_kernel_blocks(bad, pooling=POOL)
    with pytest.raises(TypeError, match=r"\bZ2\b"):
        dccnn.pooled_kernel_blocks(ZP1, bad, pooling=POOL)


@pytest.mark.parametrize("shape", [(0, 1, 4, 4), (2, 0, 4, 4), (2, 1, 0, 4), (2, 1, 4, 0),
                                   (0, 4, 4)])
def test_empty_images(shape):
    with pytest.raises(ValueError, match=r"\bX\b.*empty"):
        dccnn.extract_patches(np.ones(shape), 1)


def test_empty_kernel_inputs():
    with pytest.raises(ValueError, match=r"\bZ1\b.*empty"):
        dccnn.kernel_matrix(np.ones((0, 4)), Z2)
    with pytest.raises(ValueError, match=r"\bZ2\b.*empty"):
        dccnn.kernel_matrix(Z1, np.ones((0, 4)))
    with pytest.raises(ValueError, match=r"\bZ1\b.*empty"):
        dccnn.kernel_matrix(np.ones((3, 0)), None)
    with pytest.raises(ValueError, match=r"\bZ1\b.*empty"):
        dccnn.pooled_kernel_blocks(np.ones((0, 9, 4)), pooling=POOL)
    with pytest.raises(ValueError, match=r"\bZ2\b.*empty"):
        dccnn.pooled_kernel_blocks(ZP1, np.ones((0, 9, 4)), pooling=POOL)
    with pytest.raises(ValueError, match=r"\bZ\b.*empty"):
        dccnn.ZCAWhitening().fit(np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"\bX\b"):
        dccnn.extract_patches([], 1)


# ---------------------------------------------------------------------------------------------
# Integer parameters: size, stride, padding, n_jobs, degree
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,value", [
    ("size", 0), ("size", -2), ("stride", 0), ("stride", -1), ("padding", -1),
])
def test_geometry_out_of_range(backend, name, value):
    kwargs = dict(size=2, stride=1, padding=0)
    kwargs[name] = value
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        dccnn.extract_patches(X4, backend=backend, **kwargs)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        dccnn.patch_grid_shape((6, 5), **kwargs)


@pytest.mark.parametrize("name", ["size", "stride", "padding"])
@pytest.mark.parametrize("value", [2.5, 2.0, np.float64(2.0), "2", None, [2], 1 + 0j])
def test_geometry_non_integer(name, value):
    kwargs = dict(size=2, stride=1, padding=0)
    kwargs[name] = value
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        dccnn.extract_patches(X4, **kwargs)


@pytest.mark.parametrize("name", ["size", "stride", "padding"])
def test_geometry_numpy_integers_accepted(name):
    kwargs = dict(size=2, stride=1, padding=1)
    expected = dccnn.extract_patches(X4, **kwargs)
    for cast in (np.int8, np.int32, np.int64, np.uint16):
        kwargs2 = dict(kwargs)
        kwargs2[name] = cast(kwargs[name])
        np.testing.assert_array_equal(dccnn.extract_patches(X4, **kwargs2), expected)


@pytest.mark.parametrize("name", ["size", "stride"])
def test_geometry_booleans_rejected(name):
    # _validation.check_int means to reject bools (isinstance(value, bool)), but then lets
    # operator.index(True) == 1 through: extract_patches(X, True) silently uses size 1.
    kwargs = dict(size=2, stride=1)
    kwargs[name] = True
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        dccnn.extract_patches(X4, **kwargs)


@pytest.mark.parametrize("fn", ["extract_patches", "kernel_matrix", "pooled_kernel_blocks"])
@pytest.mark.parametrize("n_jobs,error", [(0, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_n_jobs(fn, n_jobs, error):
    call = {
        "extract_patches": lambda: dccnn.extract_patches(X4, 2, n_jobs=n_jobs),
        "kernel_matrix": lambda: dccnn.kernel_matrix(Z1, Z2, n_jobs=n_jobs),
        "pooled_kernel_blocks": lambda: dccnn.pooled_kernel_blocks(ZP1, pooling=POOL,
                                                                   n_jobs=n_jobs),
    }[fn]
    with pytest.raises(error, match="n_jobs"):
        call()


def test_negative_n_jobs_accepted():
    expected = dccnn.kernel_matrix(Z1, Z2)
    for n_jobs in (-1, -2, -100):
        np.testing.assert_array_equal(dccnn.kernel_matrix(Z1, Z2, n_jobs=n_jobs), expected)


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_n_jobs_beyond_the_processors_runs_on_the_processors(backend):
    # tens of thousands of OpenMP threads crashed the runtime (a segfault), and 10**12 does not
    # fit the core's int: both mean "every processor", like the Numba back-end's own limit
    if backend == "cpp" and not dccnn.has_compiled_core():
        pytest.skip("compiled core not built")
    calls = {
        "extract_patches": lambda n: dccnn.extract_patches(X4, 2, n_jobs=n, backend=backend),
        "kernel_matrix": lambda n: dccnn.kernel_matrix(Z1, Z2, n_jobs=n, backend=backend),
        "pooled_kernel_blocks": lambda n: dccnn.pooled_kernel_blocks(
            ZP1, pooling=POOL, n_jobs=n, backend=backend),
    }
    for name, call in calls.items():
        expected = call(1)
        for n_jobs in (10**5, 10**12):
            np.testing.assert_array_equal(call(n_jobs), expected, err_msg=name)


def _bad_poolings():
    good = dccnn.make_pooling((3, 3), 2, 1)              # 4 windows over 9 positions
    ptr, win = good.position_ptr, good.position_window
    decreasing = ptr.copy()
    decreasing[1], decreasing[2] = decreasing[2], decreasing[1]
    shifted = ptr.copy()
    shifted[0] = 1
    return {
        "window out of range": (ptr, np.full_like(win, 10**6), 4),
        "window out of range ": (ptr, np.where(win == 0, -1, win).astype(np.int32), 4),
        "window out of range  ": (ptr, win, 2),        # indices beyond the windows it says
        "every window needs at least one position": (ptr, win, 5),
        "offsets must be non-decreasing": (decreasing, win, 4),
        "offsets must start at 0": (shifted, win, 4),
        "position_window length must equal position_ptr": (ptr, win[:-1], 4),
        "position_ptr must have P \\+ 1 entries": (ptr[:-1], win, 4),
    }


@pytest.mark.parametrize("message", list(_bad_poolings()))
def test_a_pooling_that_would_index_out_of_bounds_is_refused_by_both_back_ends(backend, message):
    # dccnn.Pooling is public: the Numba kernels wrote out of bounds (a segfault) where the
    # C++ core refused; both now refuse it with the same message
    ptr, win, Q = _bad_poolings()[message]
    side = math.isqrt(Q) if math.isqrt(Q) ** 2 == Q else 1
    pool = dccnn.Pooling((3, 3), 2, 1, (side, Q // side), ptr, win)
    with pytest.raises(ValueError, match=f"pooling: {message.strip()}"):
        dccnn.pooled_kernel_blocks(ZP1, pooling=pool, backend=backend)


@pytest.mark.parametrize("image_shape,error", [((5.5, 5), TypeError), (("5", 5), TypeError),
                                               ((5, 5, 5), ValueError), ((-5, 5), ValueError),
                                               ("55", ValueError)])
def test_patch_grid_shape_checks_the_image_shape(image_shape, error):
    with pytest.raises(error, match="image_shape"):
        dccnn.patch_grid_shape(image_shape, 3)


def test_eps_of_normalisation():
    with pytest.raises(ValueError, match="eps"):
        dccnn.extract_patches(X4, 2, normalize=True, eps=-0.1)
    with pytest.raises(ValueError, match="eps"):
        dccnn.extract_patches(X4, 2, normalize=True, eps=np.nan)
    with pytest.raises(TypeError, match="eps"):
        dccnn.extract_patches(X4, 2, normalize=True, eps="0.1")


# ---------------------------------------------------------------------------------------------
# Kernel parameters
# ---------------------------------------------------------------------------------------------

def _both_kernel_calls(**kwargs):
    yield lambda: dccnn.kernel_matrix(Z1, Z2, **kwargs)
    yield lambda: dccnn.pooled_kernel_blocks(ZP1, ZP2, pooling=POOL, **kwargs)


@pytest.mark.parametrize("kernel", ["RBF", "gaussian", "poly", "", None, 0, "linear "])
def test_unknown_kernel(kernel):
    for call in _both_kernel_calls(kernel=kernel):
        with pytest.raises(ValueError, match="kernel"):
            call()


@pytest.mark.parametrize("kwargs,error,name", [
    (dict(gamma=0.0), ValueError, "gamma"),
    (dict(gamma=-1.0), ValueError, "gamma"),
    (dict(gamma=np.nan), ValueError, "gamma"),
    (dict(gamma=np.inf), ValueError, "gamma"),
    (dict(gamma="1"), TypeError, "gamma"),
    (dict(gamma=True), TypeError, "gamma"),
    (dict(kernel="polynomial", degree=0), ValueError, "degree"),
    (dict(kernel="polynomial", degree=-2), ValueError, "degree"),
    (dict(kernel="polynomial", degree=101), ValueError, "degree: must be <= 100"),
    (dict(kernel="polynomial", degree=2**31), ValueError, "degree: must be <= 100"),
    (dict(kernel="polynomial", degree=2.5), TypeError, "degree"),
    (dict(kernel="polynomial", degree=2.0), TypeError, "degree"),
    (dict(kernel="polynomial", coef0=np.nan), ValueError, "coef0"),
    (dict(kernel="polynomial", coef0="1"), TypeError, "coef0"),
    (dict(constant=-1e-3), ValueError, "constant"),
    (dict(constant=-np.inf), ValueError, "constant"),
    (dict(kernel="linear", constant=np.nan), ValueError, "constant"),
    (dict(constant=None), TypeError, "constant"),
])
def test_bad_kernel_parameters(kwargs, error, name):
    for call in _both_kernel_calls(**kwargs):
        with pytest.raises(error, match=rf"\b{name}\b"):
            call()


def test_valid_kernel_parameter_edges(backend):
    # gamma tiny, degree 1, negative coef0, constant 0: all valid
    K = dccnn.kernel_matrix(Z1, Z2, "rbf", gamma=1e-300, backend=backend)
    np.testing.assert_allclose(K, 1.0, rtol=1e-12)
    K = dccnn.kernel_matrix(Z1, Z2, "polynomial", degree=1, coef0=-2.0, backend=backend)
    np.testing.assert_allclose(K, Z1 @ Z2.T - 2.0, rtol=1e-12, atol=1e-12)


def test_numpy_scalar_kernel_parameters(backend):
    K = dccnn.kernel_matrix(Z1, Z2, "polynomial", degree=np.int64(3), coef0=np.float32(0.5),
                            constant=np.float64(0.25), backend=backend)
    np.testing.assert_allclose(K, ref_kernel(Z1, Z2, "polynomial", degree=3, coef0=0.5,
                                             constant=0.25), rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# Memory budget
# ---------------------------------------------------------------------------------------------

def test_tiny_memory_budget():
    with pytest.raises(MemoryError, match="budget"):
        dccnn.extract_patches(X4, 2, max_memory=10)
    with pytest.raises(MemoryError, match="budget"):
        dccnn.kernel_matrix(Z1, Z2, max_memory=10)
    with pytest.raises(MemoryError, match="budget"):
        dccnn.pooled_kernel_blocks(ZP1, pooling=POOL, max_memory=10)


@pytest.mark.parametrize("dtype,itemsize", [(np.float64, 8), (np.float32, 4)])
def test_memory_budget_is_the_size_of_the_result(dtype, itemsize):
    a, b = Z1.astype(dtype), Z2.astype(dtype)
    nbytes = a.shape[0] * b.shape[0] * itemsize
    dccnn.kernel_matrix(a, b, max_memory=nbytes)                  # fits exactly
    with pytest.raises(MemoryError, match=rf"would take {nbytes} B .* budget of {nbytes - 1} B"):
        dccnn.kernel_matrix(a, b, max_memory=nbytes - 1)
    # pooled blocks: n1 * n2 * Q * Q values
    Q = POOL.n_windows
    nbytes = 3 * 2 * Q * Q * itemsize
    dccnn.pooled_kernel_blocks(ZP1.astype(dtype), ZP2.astype(dtype), pooling=POOL,
                               max_memory=nbytes)
    with pytest.raises(MemoryError, match="budget"):
        dccnn.pooled_kernel_blocks(ZP1.astype(dtype), ZP2.astype(dtype), pooling=POOL,
                                   max_memory=nbytes - 1)
    # patches: n * P * d values
    X = X4.astype(dtype)
    nbytes = 3 * (5 * 4) * (2 * 2 * 2) * itemsize
    dccnn.extract_patches(X, 2, max_memory=nbytes)
    with pytest.raises(MemoryError, match="budget"):
        dccnn.extract_patches(X, 2, max_memory=nbytes - 1)


@pytest.mark.parametrize("max_memory,error", [(np.nan, ValueError), (-1, ValueError),
                                              (0, ValueError), ("1GB", TypeError),
                                              (True, TypeError), ([2**30], TypeError)])
def test_max_memory_itself_is_checked(max_memory, error):
    # NaN used to switch every check off (the absurd allocation below then reached numpy)
    with pytest.raises(error, match="max_memory"):
        dccnn.extract_patches(np.ones((1, 1, 1)), 1, padding=2**20, max_memory=max_memory)


def test_default_budget_stops_absurd_allocations():
    # padding 2**20 on a 1x1 image: 2**42 positions; refused before allocating anything
    with pytest.raises(MemoryError, match="budget"):
        dccnn.extract_patches(np.ones((1, 1, 1)), 1, padding=2**20)
    big = np.ones((200_000, 1))
    with pytest.raises(MemoryError, match=r"would take 298 GiB .* budget of 1 GiB"):
        dccnn.kernel_matrix(big, big, max_memory=2**30)


def test_huge_stride_and_padding_agree_with_the_reference(backend):
    # stride 2**62 and padding 2**62 on a 3x3 image: a 3x3 grid of positions, one of which
    # (the centre) holds the top-left 2x2 pixels; everything else is padding. The compiled
    # core computes height + 2 * padding in int64 (signed overflow, undefined behaviour) and
    # reports "does not fit the padded -9223372036854775805x... image" instead.
    X = np.arange(1.0, 10.0).reshape(1, 3, 3)
    try:
        Z = dccnn.extract_patches(X, 2, stride=2**62, padding=2**62, backend=backend)
    except ValueError as exc:
        # a clear refusal naming the offending argument is acceptable; a wrong message is not
        assert str(exc).startswith(("padding", "stride")), str(exc)
        return
    expected = np.zeros((1, 9, 4))
    expected[0, 4] = [1, 2, 4, 5]
    np.testing.assert_array_equal(Z, expected)


# ---------------------------------------------------------------------------------------------
# Layouts: Fortran order, strided views, read-only and big-endian arrays are accepted
# ---------------------------------------------------------------------------------------------

def _readonly(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


LAYOUTS = {
    "fortran": np.asfortranarray,
    "readonly": _readonly,
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "readonly-fortran-big-endian": lambda a: _readonly(
        np.asfortranarray(a.astype(a.dtype.newbyteorder(">")))),
}


def _strided(a):
    """A non-contiguous view with the same values as ``a`` (every other element)."""
    big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    return view


LAYOUTS["strided"] = _strided


def _strided_readonly(a):
    view = _strided(a)
    view.setflags(write=False)
    return view


LAYOUTS["strided-readonly"] = _strided_readonly
LAYOUTS["negative-strides"] = lambda a: np.flip(np.flip(a).copy())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_extract_patches(backend, layout):
    base = X4.copy()
    ref = dccnn.extract_patches(base, 3, 2, 1, normalize=True, backend=backend)
    X = LAYOUTS[layout](base)
    np.testing.assert_array_equal(X, base)
    out = dccnn.extract_patches(X, 3, 2, 1, normalize=True, backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref)
    # and the 3-d form
    X3 = LAYOUTS[layout](base[:, 0])
    np.testing.assert_array_equal(dccnn.extract_patches(X3, 2, backend=backend),
                                  ref_extract_patches(base[:, 0], 2))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel", ["rbf", "inverse_polynomial", "polynomial", "linear"])
def test_layouts_kernel_matrix(backend, layout, kernel):
    rng = np.random.default_rng(8)
    A = unit_ball_rows(rng, 9, 5)
    B = unit_ball_rows(rng, 7, 5)
    ref = dccnn.kernel_matrix(A, B, kernel, backend=backend)
    out = dccnn.kernel_matrix(LAYOUTS[layout](A), LAYOUTS[layout](B), kernel, backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(
        dccnn.kernel_matrix(LAYOUTS[layout](A), None, kernel, backend=backend),
        dccnn.kernel_matrix(A, None, kernel, backend=backend))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_pooled_kernel_blocks(backend, layout):
    ref = dccnn.pooled_kernel_blocks(ZP1, ZP2, pooling=POOL, backend=backend)
    out = dccnn.pooled_kernel_blocks(LAYOUTS[layout](ZP1), LAYOUTS[layout](ZP2), pooling=POOL,
                                     backend=backend)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(
        dccnn.pooled_kernel_blocks(LAYOUTS[layout](ZP1), pooling=POOL, backend=backend),
        dccnn.pooled_kernel_blocks(ZP1, pooling=POOL, backend=backend))


def test_transposed_view_as_input(backend):
    At = np.ascontiguousarray(Z1.T)        # (4, 6)
    np.testing.assert_array_equal(dccnn.kernel_matrix(At.T, Z2, backend=backend),
                                  dccnn.kernel_matrix(Z1, Z2, backend=backend))


@pytest.mark.parametrize("layout", ["fortran", "readonly", "strided"])
def test_layouts_float32_stay_float32(backend, layout):
    X = X4.astype(np.float32)
    out = dccnn.extract_patches(LAYOUTS[layout](X), 2, backend=backend)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, dccnn.extract_patches(X, 2, backend=backend))
    A = Z1.astype(np.float32)
    K = dccnn.kernel_matrix(LAYOUTS[layout](A), backend=backend)
    assert K.dtype == np.float32
    np.testing.assert_array_equal(K, dccnn.kernel_matrix(A, backend=backend))


def test_big_endian_float32_stays_float32(backend):
    # SPEC §1 / extract_patches: "float32 stays float32". A big-endian float32 array ('>f4')
    # is float32 data, but _validation.as_float_array compares arr.dtype == np.float32, which
    # is False for '>f4', and promotes it to float64.
    X = X4.astype(">f4")
    out = dccnn.extract_patches(X, 2, backend=backend)
    np.testing.assert_array_equal(out, dccnn.extract_patches(X4.astype(np.float32), 2,
                                                             backend=backend))
    assert out.dtype == np.float32
    K = dccnn.kernel_matrix(Z1.astype(">f4"), backend=backend)
    assert K.dtype == np.float32


def test_inputs_are_not_modified(backend):
    X = X4.copy()
    dccnn.extract_patches(X, 2, normalize=True, backend=backend)
    np.testing.assert_array_equal(X, X4)
    A, B = Z1.copy(), Z2.copy()
    dccnn.kernel_matrix(A, B, backend=backend)
    np.testing.assert_array_equal(A, Z1)
    np.testing.assert_array_equal(B, Z2)


# ---------------------------------------------------------------------------------------------
# The compiled core guards itself: inconsistent arguments raise, never crash
# ---------------------------------------------------------------------------------------------

@requires_core
@pytest.mark.parametrize("ptr,win,Q,match", [
    ([0, 1, 2, 3, 4], [0, 1, 2, 5], 4, "out of range"),
    ([0, 1, 2, 3, 4], [0, 1, 2, -1], 4, "out of range"),
    ([0, 1, 2, 3, 4], [0, 0, 0, 0], 2, "at least one position"),
    ([0, 1, 2, 3, 9], [0, 1, 2, 3], 4, "position_window"),
    ([0, 2, 1, 3, 4], [0, 1, 2, 3], 4, "non-decreasing"),
    ([1, 1, 2, 3, 4], [0, 1, 2, 0], 3, "start at 0"),
    ([0, 1, 2, 3], [0, 1, 2], 3, "P \\+ 1"),
    ([0, 1, 2, 3, 4], [0, 1, 2, 3], 0, "pooling"),
])
def test_core_rejects_inconsistent_pooling_maps(ptr, win, Q, match):
    from dccnn import _core
    Z = np.ones((2, 4, 3)) / 4
    with pytest.raises(ValueError, match=match):
        _core.pooled_kernel_blocks(Z, None, np.array(ptr, dtype=np.int64),
                                   np.array(win, dtype=np.int32), Q, 0, 1.0, 2, 1.0, 0.0, 0)


@requires_core
def test_core_rejects_bad_kernel_specs():
    from dccnn import _core
    Z = np.ones((3, 2)) / 4
    with pytest.raises(ValueError, match="kernel"):
        _core.kernel_matrix(Z, Z, 7, 1.0, 2, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="gamma"):
        _core.kernel_matrix(Z, Z, 0, -1.0, 2, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="degree"):
        _core.kernel_matrix(Z, Z, 2, 1.0, 0, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="constant"):
        _core.kernel_matrix(Z, Z, 3, 1.0, 2, 1.0, -1.0, 0)
    with pytest.raises(ValueError, match="size"):
        _core.extract_patches(np.ones((1, 1, 3, 3)), 4, 1, 0, 0)
    with pytest.raises(ValueError, match="stride"):
        _core.extract_patches(np.ones((1, 1, 3, 3)), 2, 0, 0, 0)
    with pytest.raises(ValueError, match="padding"):
        _core.extract_patches(np.ones((1, 1, 3, 3)), 2, 1, -1, 0)
    ro = np.ones((2, 3))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        _core.normalize_patches(ro, True, True, 0.1, 0)


@pytest.mark.parametrize("features,n_components,what", [
    ("random_fourier", 10**9, "random Fourier weights"),     # (d, m) float64: 72 GB
    ("nystroem", 10**5, "landmarks' kernel matrix"),  # all 3840 patches: 2 x 3840^2 float64
    ("random_fourier", 10**6, "explicit features"),          # (60, 16, 10^6) float64: 7.7 GB
])
def test_explicit_feature_maps_are_refused_before_their_memory_is_taken(features, n_components,
                                                                        what):
    """The feature map's own arrays and the features it would give are checked against
    max_memory before the map is fitted (the random Fourier weights used to be drawn first)."""
    X = np.random.default_rng(0).random((60, 8, 8))
    y = np.arange(60) % 2
    with pytest.raises(MemoryError, match=f"max_memory: the {what}|max_memory: {what}"):
        dccnn.fit_layer(X, y, patch_size=3, padding=1, pool_size=2, features=features,
                        n_components=n_components, max_memory=2**27)


@pytest.mark.parametrize("features,solver", [
    ("exact", "auto"), ("exact", "dual"), ("exact", "admm"), ("nystroem", "auto"),
    ("nystroem", "factored"), ("nystroem", "primal")])
def test_many_outputs_are_refused_before_the_solvers_matrices_are_taken(features, solver):
    """2000 outputs on 16 windows: T = 32000, and the T x T float64 matrices of the solver
    and of the recovery that follows every solver would take 5 x 7.6 GiB (a fit used to
    reach 7.4 GiB before failing)."""
    X = np.random.default_rng(0).random((40, 8, 8))
    Y = np.random.default_rng(1).standard_normal((40, 2000))
    with pytest.raises(MemoryError, match=r"max_memory: the solver's T x T matrices "
                                          r"\(T = 16 windows x 2000 outputs = 32000\)"):
        dccnn.fit_layer(X, Y, patch_size=3, padding=1, pool_size=2, loss="squared",
                        features=features, n_components=5, solver=solver, max_memory=2**32)


@pytest.mark.parametrize("value", ["False", 0, 1.0, None, [True]])
def test_normalize_flags_must_be_booleans(value):
    """A string "False" or a number used to be taken as true (or silently as false)."""
    with pytest.raises(TypeError, match="normalize: expected True or False"):
        dccnn.extract_patches(X4, 2, normalize=value)
    X = np.random.default_rng(0).random((10, 6, 6))
    with pytest.raises(TypeError, match="normalize_patches: expected True or False"):
        dccnn.fit_layer(X, np.arange(10) % 2, patch_size=3, normalize_patches=value)


def test_normalize_flags_take_numpy_booleans():
    np.testing.assert_array_equal(dccnn.extract_patches(X4, 2, normalize=np.True_),
                                  dccnn.extract_patches(X4, 2, normalize=True))
