"""dccnn.extract_patches, dccnn.patch_grid_shape and dccnn.ZCAWhitening against independent
references (explicit loops, numpy)."""

import numpy as np
import pytest

import dccnn
from _refs import assert_close, ref_extract_patches, ref_normalize

# (n, C, H, W, size, stride, padding): C = None means a 3-d (n, H, W) input.
SHAPES = [
    (1, None, 1, 1, 1, 1, 0),   # 1x1 image, 1x1 patch
    (2, 1, 1, 1, 1, 1, 0),
    (3, None, 4, 4, 4, 1, 0),   # patch = whole image: P = 1
    (2, 2, 3, 5, 3, 1, 0),      # non-square, patch of full height
    (2, None, 5, 5, 2, 1, 0),
    (2, None, 6, 6, 2, 2, 0),   # stride > 1, exact tiling
    (2, None, 7, 6, 3, 2, 0),   # stride > 1, leftover rows/columns dropped
    (1, None, 5, 7, 3, 3, 0),
    (2, None, 4, 4, 3, 1, 1),   # padding > 0
    (2, 3, 4, 5, 3, 2, 1),      # C > 1, non-square, stride and padding
    (1, 2, 2, 2, 3, 1, 1),      # patch larger than the image, fits the padded image
    (1, 1, 1, 1, 3, 1, 1),      # 1x1 image with padding: a single 3x3 patch
    (1, 1, 3, 2, 5, 1, 2),      # padding >= size / 2
    (2, 3, 5, 5, 1, 1, 0),      # 1x1 patches of a multi-channel image: d = C
    (1, 2, 6, 4, 2, 3, 2),      # stride > size with padding
]


def _images(rng, n, C, H, W, dtype=np.float64):
    shape = (n, H, W) if C is None else (n, C, H, W)
    return rng.standard_normal(shape).astype(dtype)


def test_reference_on_hand_computed_case():
    # A check of the reference itself on a case worked out by hand.
    X = np.array([[[[1, 2, 3], [4, 5, 6]], [[10, 20, 30], [40, 50, 60]]]], dtype=float)
    expected = np.array([[[1, 2, 4, 5, 10, 20, 40, 50], [2, 3, 5, 6, 20, 30, 50, 60]]], float)
    np.testing.assert_array_equal(ref_extract_patches(X, 2), expected)
    np.testing.assert_array_equal(dccnn.extract_patches(X, 2), expected)
    # padding 1, stride 2 on a 1x1 image: one 2x2 patch holding the pixel at (1, 1)
    got = dccnn.extract_patches(np.array([[[7.0]]]), 2, stride=2, padding=1)
    np.testing.assert_array_equal(got, [[[0, 0, 0, 7]]])


@pytest.mark.parametrize("n,C,H,W,size,stride,padding", SHAPES)
def test_extract_patches_matches_loops(backend, rng, n, C, H, W, size, stride, padding):
    X = _images(rng, n, C, H, W)
    Z = dccnn.extract_patches(X, size, stride, padding, backend=backend)
    ref = ref_extract_patches(X, size, stride, padding)
    channels = 1 if C is None else C
    Hp, Wp = dccnn.patch_grid_shape((H, W), size, stride, padding)
    assert Z.shape == (n, Hp * Wp, channels * size * size)
    assert Z.dtype == np.float64
    assert Z.flags.c_contiguous
    np.testing.assert_array_equal(Z, ref)


@pytest.mark.parametrize("n,C,H,W,size,stride,padding", SHAPES[::2])
def test_extract_patches_float32_stays_float32(backend, rng, n, C, H, W, size, stride, padding):
    X = _images(rng, n, C, H, W, np.float32)
    Z = dccnn.extract_patches(X, size, stride, padding, backend=backend)
    assert Z.dtype == np.float32
    np.testing.assert_array_equal(Z, ref_extract_patches(X, size, stride, padding))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.float16, bool])
def test_extract_patches_other_real_types_become_float64(backend, rng, dtype):
    X = rng.integers(0, 2 if dtype is bool else 50, size=(2, 2, 4, 5)).astype(dtype)
    Z = dccnn.extract_patches(X, 3, stride=1, padding=1, backend=backend)
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z, ref_extract_patches(X.astype(np.float64), 3, 1, 1))


def test_extract_patches_accepts_lists(backend):
    X = [[[1, 2], [3, 4]]]
    Z = dccnn.extract_patches(X, 1, backend=backend)
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z, [[[1], [2], [3], [4]]])


def test_3d_input_equals_single_channel_4d(backend, rng):
    X = rng.standard_normal((3, 6, 5))
    a = dccnn.extract_patches(X, 3, 2, 1, backend=backend)
    b = dccnn.extract_patches(X[:, None], 3, 2, 1, backend=backend)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n,C,H,W,size,stride,padding", SHAPES)
@pytest.mark.parametrize("eps", [0.1, 0.5, 1e-3])
def test_normalize_matches_numpy(backend, rng, n, C, H, W, size, stride, padding, eps):
    X = _images(rng, n, C, H, W)
    Z = dccnn.extract_patches(X, size, stride, padding, normalize=True, eps=eps,
                              backend=backend)
    ref = ref_normalize(ref_extract_patches(X, size, stride, padding), eps)
    assert Z.dtype == np.float64
    assert_close(Z, ref, 1e-12)


def test_normalize_default_eps_is_0_1(backend, rng):
    X = rng.standard_normal((2, 1, 5, 5))
    Z = dccnn.extract_patches(X, 3, normalize=True, backend=backend)
    assert_close(Z, ref_normalize(ref_extract_patches(X, 3), 0.1), 1e-12)


def test_normalize_float32(backend, rng):
    X = _images(rng, 3, 2, 7, 6, np.float32) * 10 + 3   # an offset makes centring matter
    Z = dccnn.extract_patches(X, 3, 1, 1, normalize=True, backend=backend)
    assert Z.dtype == np.float32
    assert_close(Z, ref_normalize(ref_extract_patches(X, 3, 1, 1), 0.1), 1e-5)


def test_normalize_properties(backend, rng):
    # Independent of the formula's implementation: mean 0 and norm ||z_c|| / (||z_c|| + eps).
    X = rng.standard_normal((2, 2, 6, 6)) * 4 + 1
    eps = 0.25
    raw = ref_extract_patches(X, 3)
    Z = dccnn.extract_patches(X, 3, normalize=True, eps=eps, backend=backend)
    np.testing.assert_allclose(Z.mean(axis=-1), 0, atol=1e-13)
    nc = np.linalg.norm(raw - raw.mean(axis=-1, keepdims=True), axis=-1)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=-1), nc / (nc + eps), rtol=1e-12)


def test_normalize_constant_patches_with_eps_zero_are_zero(backend):
    # A constant patch centres to 0; with eps = 0 the division must not produce NaN.
    X = np.zeros((1, 1, 4, 4))
    X[0, 0, :, 2:] = np.arange(8).reshape(4, 2) + 1.0
    Z = dccnn.extract_patches(X, 2, normalize=True, eps=0.0, backend=backend)
    assert np.isfinite(Z).all()
    np.testing.assert_array_equal(Z[0, 0], 0.0)          # patch of zeros
    ref = ref_normalize(ref_extract_patches(X, 2), 0.0)
    assert_close(Z, ref, 1e-12)
    norms = np.linalg.norm(Z[0], axis=-1)
    nonconstant = np.ptp(ref_extract_patches(X, 2)[0], axis=-1) > 0
    np.testing.assert_allclose(norms[nonconstant], 1.0, rtol=1e-12)


def test_normalize_does_not_change_the_unnormalised_result(backend, rng):
    X = rng.standard_normal((2, 1, 5, 5))
    raw = dccnn.extract_patches(X, 2, backend=backend)
    X_copy = X.copy()
    dccnn.extract_patches(X, 2, normalize=True, backend=backend)
    np.testing.assert_array_equal(X, X_copy)   # the input is never modified
    np.testing.assert_array_equal(raw, ref_extract_patches(X, 2))


# ---------------------------------------------------------------------------------------------
# patch_grid_shape
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "image_shape,size,stride,padding,expected",
    [
        ((1, 1), 1, 1, 0, (1, 1)),
        ((5, 5), 5, 1, 0, (1, 1)),
        ((5, 7), 3, 1, 0, (3, 5)),
        ((7, 6), 3, 2, 0, (3, 2)),
        ((6, 6), 2, 2, 0, (3, 3)),
        ((4, 4), 3, 1, 1, (4, 4)),
        ((28, 28), 5, 1, 0, (24, 24)),
        ((8, 8), 3, 1, 1, (8, 8)),
        ((1, 1), 3, 1, 1, (1, 1)),
        ((10, 3), 4, 3, 2, (4, 2)),
    ],
)
def test_patch_grid_shape(image_shape, size, stride, padding, expected):
    assert dccnn.patch_grid_shape(image_shape, size, stride, padding) == expected
    # and it agrees with counting the positions of the explicit loops
    H, W = image_shape
    count_y = len(range(0, H + 2 * padding - size + 1, stride))
    count_x = len(range(0, W + 2 * padding - size + 1, stride))
    assert expected == (count_y, count_x)


def test_patch_grid_shape_rejects_a_window_larger_than_the_padded_image():
    with pytest.raises(ValueError, match="size"):
        dccnn.patch_grid_shape((4, 4), 5)
    with pytest.raises(ValueError, match="size"):
        dccnn.patch_grid_shape((4, 6), 7, padding=1)
    assert dccnn.patch_grid_shape((4, 4), 6, padding=1) == (1, 1)


# ---------------------------------------------------------------------------------------------
# ZCA whitening
# ---------------------------------------------------------------------------------------------

def _correlated_patches(rng, shape, d):
    mixing = rng.standard_normal((d, d)) * rng.uniform(0.1, 3.0, size=d)
    return (rng.standard_normal(shape + (d,)) @ mixing + rng.standard_normal(d)).astype(float)


@pytest.mark.parametrize("eps", [0.1, 1e-3, 2.0])
@pytest.mark.parametrize("d", [1, 4, 9])
def test_zca_whitened_covariance(rng, eps, d):
    Z = _correlated_patches(rng, (40, 6), d)          # (n, P, d): 240 training patches
    W = dccnn.ZCAWhitening(eps=eps).fit_transform(Z)
    assert W.shape == Z.shape and W.dtype == np.float64
    flat = Z.reshape(-1, d)
    centred = flat - flat.mean(axis=0)
    lam, U = np.linalg.eigh(centred.T @ centred / len(flat))
    expected_cov = (U * (lam / (lam + eps))) @ U.T
    Wf = W.reshape(-1, d)
    np.testing.assert_allclose(Wf.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(Wf.T @ Wf / len(Wf), expected_cov, atol=1e-10)
    # and the map itself is the symmetric (ZCA) whitening, not another square root
    expected = centred @ ((U / np.sqrt(lam + eps)) @ U.T)
    np.testing.assert_allclose(Wf, expected, atol=1e-10)


def test_zca_transform_new_patches_uses_training_statistics(rng):
    d = 5
    train = _correlated_patches(rng, (300,), d)
    test = _correlated_patches(rng, (4, 7), d)
    zca = dccnn.ZCAWhitening(eps=0.1).fit(train)
    mean = train.mean(axis=0)
    lam, U = np.linalg.eigh(np.cov(train, rowvar=False, bias=True))
    expected = (test - mean) @ ((U / np.sqrt(lam + 0.1)) @ U.T)
    out = zca.transform(test)
    assert out.shape == (4, 7, d)
    np.testing.assert_allclose(out, expected, atol=1e-10)


def test_zca_float32_stays_float32(rng):
    Z = _correlated_patches(rng, (50, 3), 4).astype(np.float32)
    zca = dccnn.ZCAWhitening().fit(Z)
    out = zca.transform(Z)
    assert out.dtype == np.float32 and out.shape == Z.shape
    out2 = zca.transform(Z.reshape(-1, 4))
    assert out2.dtype == np.float32 and out2.shape == (150, 4)
    ref = dccnn.ZCAWhitening().fit(Z.astype(np.float64)).transform(Z.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_zca_errors(rng):
    zca = dccnn.ZCAWhitening()
    with pytest.raises(RuntimeError, match="fit"):
        zca.transform(rng.standard_normal((5, 3)))
    zca.fit(rng.standard_normal((20, 3)))
    with pytest.raises(ValueError, match="Z"):
        zca.transform(rng.standard_normal((5, 4)))
    with pytest.raises(ValueError, match="eps"):
        dccnn.ZCAWhitening(eps=0).fit(rng.standard_normal((20, 3)))
    with pytest.raises(ValueError, match="Z"):
        dccnn.ZCAWhitening().fit(np.full((4, 3), np.nan))
