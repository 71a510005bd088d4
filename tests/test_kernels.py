"""dccnn.kernel_matrix, dccnn.make_pooling / Pooling and dccnn.pooled_kernel_blocks against
independent references (scipy cdist, numpy einsum, hand-written window lists)."""

import itertools
import zlib

import numpy as np
import pytest

import dccnn
from _refs import (
    KERNEL_NAMES,
    assert_close,
    ref_kernel,
    ref_pool_matrix,
    ref_pool_windows,
    ref_pooled_blocks,
    unit_ball_rows,
)

SIZES = [1, 2, 7, 8, 9, 31, 33, 100]
DIMS = [1, 3, 9, 25, 75]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# (kernel, parameters): gamma=None means 1/d.
KERNEL_CASES = [
    ("rbf", dict()),
    ("rbf", dict(gamma=0.7, constant=0.3)),
    ("inverse_polynomial", dict()),
    ("inverse_polynomial", dict(constant=1.5)),
    ("polynomial", dict(degree=1, coef0=0.0)),
    ("polynomial", dict(degree=2, coef0=1.0)),
    ("polynomial", dict(degree=3, coef0=0.5, constant=0.25)),
    ("polynomial", dict(degree=4, coef0=-0.3)),
    ("linear", dict()),
    ("linear", dict(constant=2.0)),
]


def _case_id(case):
    kernel, params = case
    return kernel + "".join(f"-{k}{v}" for k, v in params.items())


def _rows(rng, kernel, n, d, dtype):
    if kernel == "inverse_polynomial":
        return unit_ball_rows(rng, n, d, dtype=dtype)
    # entries of size ~ 1/sqrt(d): squared norms ~ 1, dot products ~ 1/sqrt(d)
    return (rng.standard_normal((n, d)) / np.sqrt(d) * 1.3).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("case", KERNEL_CASES, ids=_case_id)
def test_kernel_matrix_matches_reference(backend, dtype, d, case):
    kernel, params = case
    rng = np.random.default_rng(1000 + d)
    Zall = _rows(rng, kernel, 2 * max(SIZES), d, dtype)
    rtol = RTOL[dtype]
    for n1, n2 in itertools.product(SIZES, SIZES):
        Z1, Z2 = Zall[:n1], Zall[max(SIZES):max(SIZES) + n2]
        K = dccnn.kernel_matrix(Z1, Z2, kernel, backend=backend, **params)
        assert K.dtype == dtype and K.shape == (n1, n2)
        assert_close(K, ref_kernel(Z1, Z2, kernel, **params), rtol,
                     err_msg=f"n1={n1} n2={n2} d={d}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=_case_id)
def test_kernel_matrix_many_row_blocks(backend, dtype, case):
    # More rows than one work unit of the core (row blocks of 16 tile rows) and more columns
    # than one cache chunk for d = 75, with ragged ends on both sides, over 2 threads.
    kernel, params = case
    rng = np.random.default_rng(7)
    Z1 = _rows(rng, kernel, 301, 75, dtype)
    Z2 = _rows(rng, kernel, 133, 75, dtype)
    K = dccnn.kernel_matrix(Z1, Z2, kernel, backend=backend, n_jobs=2, **params)
    assert_close(K, ref_kernel(Z1, Z2, kernel, **params), RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_kernel_matrix_z2_none_means_z1(backend, dtype, kernel):
    rng = np.random.default_rng(3)
    Z = _rows(rng, kernel, 33, 9, dtype)
    K = dccnn.kernel_matrix(Z, None, kernel, backend=backend)
    assert K.shape == (33, 33) and K.dtype == dtype
    assert_close(K, ref_kernel(Z, Z, kernel), RTOL[dtype])
    np.testing.assert_array_equal(K, dccnn.kernel_matrix(Z, kernel=kernel, backend=backend))
    if kernel == "rbf":
        # k(z, z) = 1 exactly up to rounding of the squared distance
        np.testing.assert_allclose(np.diag(K), 1.0, rtol=RTOL[dtype])


def test_kernel_matrix_default_gamma_is_one_over_d(backend):
    rng = np.random.default_rng(4)
    Z1, Z2 = rng.standard_normal((6, 12)), rng.standard_normal((5, 12))
    K = dccnn.kernel_matrix(Z1, Z2, backend=backend)     # rbf, gamma None
    d2 = ((Z1[:, None, :] - Z2[None, :, :]) ** 2).sum(-1)
    assert_close(K, np.exp(-d2 / 12), 1e-12)
    # and it is not gamma = 1 (the check can fail)
    assert not np.allclose(K, np.exp(-d2), rtol=1e-3)


def test_kernel_matrix_explicit_small_values(backend):
    # Values worked out by hand.
    Z1 = np.array([[0.0, 0.0], [1.0, 0.0]])
    Z2 = np.array([[0.0, 0.5], [0.6, 0.0]])
    np.testing.assert_allclose(
        dccnn.kernel_matrix(Z1, Z2, "rbf", gamma=2.0, backend=backend),
        [[np.exp(-0.5), np.exp(-0.72)], [np.exp(-2.5), np.exp(-0.32)]], rtol=1e-14)
    np.testing.assert_allclose(
        dccnn.kernel_matrix(Z1, Z2, "inverse_polynomial", backend=backend),
        [[0.5, 0.5], [0.5, 1 / 1.4]], rtol=1e-14)
    np.testing.assert_allclose(
        dccnn.kernel_matrix(Z1, Z2, "polynomial", degree=3, coef0=1.0, constant=0.5,
                            backend=backend),
        [[1.5, 1.5], [1.5, 1.6 ** 3 + 0.5]], rtol=1e-14)
    np.testing.assert_allclose(
        dccnn.kernel_matrix(Z1, Z2, "linear", constant=1.0, backend=backend),
        [[1.0, 1.0], [1.0, 1.6]], rtol=1e-14)


def test_kernel_matrix_mixed_dtypes_give_float64(backend):
    rng = np.random.default_rng(5)
    Z1 = rng.standard_normal((4, 3)).astype(np.float32)
    Z2 = rng.standard_normal((5, 3))
    K = dccnn.kernel_matrix(Z1, Z2, "linear", backend=backend)
    assert K.dtype == np.float64
    assert_close(K, Z1.astype(np.float64) @ Z2.T, 1e-12)
    K = dccnn.kernel_matrix(Z1.astype(np.int64), Z1.astype(np.int64), "linear", backend=backend)
    assert K.dtype == np.float64


def test_rbf_underflow_and_far_points(backend):
    # Far apart points: exp(-gamma d^2) underflows towards 0, never negative or NaN.
    Z1 = np.array([[0.0, 0.0], [30.0, 0.0]])
    Z2 = np.array([[0.0, 0.1], [0.0, 40.0]])
    K = dccnn.kernel_matrix(Z1, Z2, "rbf", gamma=1.0, backend=backend)
    assert np.isfinite(K).all() and (K >= 0).all()
    assert_close(K, ref_kernel(Z1, Z2, "rbf", gamma=1.0), 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", [1.0, 1e-3, 1e12])
def test_rbf_across_the_exp_underflow_floor(backend, dtype, gamma):
    # gamma * dist swept through the float range's underflow (about 87-104 in float32,
    # 708-745 in float64) and far beyond: values match exp to the precision, with an absolute
    # slack of the smallest normal number (the C++ core flushes what lies below it to 0).
    tiny = np.finfo(dtype).tiny
    exponents = np.concatenate([np.linspace(0.0, 120.0, 241), np.linspace(700.0, 760.0, 121),
                                [1e4, 1e8, 1e20]])
    dist = exponents / gamma
    Z2 = np.sqrt(dist)[:, None].astype(dtype)
    Z1 = np.zeros((4, 1), dtype)
    K = dccnn.kernel_matrix(Z1, Z2, "rbf", gamma=gamma, backend=backend)
    assert K.dtype == dtype and np.isfinite(K).all() and (K >= 0).all()
    expected = np.exp(-gamma * Z2[:, 0].astype(np.float64) ** 2)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for row in K:
        np.testing.assert_allclose(row, expected, rtol=rtol, atol=tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_inverse_polynomial_outside_unit_ball_is_an_error(backend, dtype):
    rng = np.random.default_rng(6)
    Z1 = unit_ball_rows(rng, 9, 4, dtype=dtype)
    Z2 = unit_ball_rows(rng, 7, 4, dtype=dtype)
    bad = Z1.copy()
    bad[5] *= 1.5 / np.linalg.norm(bad[5])                  # norm 1.5
    with pytest.raises(ValueError, match="norm") as info:
        dccnn.kernel_matrix(bad, Z2, "inverse_polynomial", backend=backend)
    assert "Z1" in str(info.value) and "1.5" in str(info.value)
    with pytest.raises(ValueError, match="Z2.*norm"):
        dccnn.kernel_matrix(Z2, bad, "inverse_polynomial", backend=backend)
    with pytest.raises(ValueError, match="norm"):
        dccnn.kernel_matrix(bad, None, "inverse_polynomial", backend=backend)
    # norm exactly 1 is inside the domain
    edge = Z1.astype(np.float64)
    edge /= np.linalg.norm(edge, axis=1, keepdims=True)
    edge = edge.astype(dtype)
    K = dccnn.kernel_matrix(edge, Z2, "inverse_polynomial", backend=backend)
    assert_close(K, ref_kernel(edge, Z2, "inverse_polynomial"), RTOL[dtype])
    # the other kernels accept any norm
    dccnn.kernel_matrix(bad, Z2, "rbf", backend=backend)


# ---------------------------------------------------------------------------------------------
# Pooling windows
# ---------------------------------------------------------------------------------------------

def _windows_of(pool):
    """Window membership from the CSR arrays of a Pooling."""
    windows = [[] for _ in range(pool.n_windows)]
    for p in range(pool.n_positions):
        for m in range(pool.position_ptr[p], pool.position_ptr[p + 1]):
            windows[pool.position_window[m]].append(p)
    return [sorted(w) for w in windows]


def test_pooling_4x4_size2_stride2_hand_written():
    pool = dccnn.make_pooling((4, 4), 2, 2)
    assert pool.out_shape == (2, 2) and pool.n_windows == 4 and pool.n_positions == 16
    expected = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert _windows_of(pool) == expected
    A = pool.matrix()
    assert A.shape == (4, 16)
    for q, members in enumerate(expected):
        row = np.zeros(16)
        row[members] = 0.25
        np.testing.assert_array_equal(A[q], row)


def test_pooling_stride_defaults_to_size():
    a = dccnn.make_pooling((4, 4), 2)
    assert _windows_of(a) == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_pooling_overlapping_size3_stride1_hand_written():
    pool = dccnn.make_pooling((4, 4), 3, 1)
    assert pool.out_shape == (2, 2)
    expected = [
        [0, 1, 2, 4, 5, 6, 8, 9, 10],
        [1, 2, 3, 5, 6, 7, 9, 10, 11],
        [4, 5, 6, 8, 9, 10, 12, 13, 14],
        [5, 6, 7, 9, 10, 11, 13, 14, 15],
    ]
    assert _windows_of(pool) == expected
    # position 5 (row 1, col 1) lies in all four windows, the corners in one each
    assert pool.position_ptr[6] - pool.position_ptr[5] == 4
    assert pool.position_ptr[1] - pool.position_ptr[0] == 1


def test_pooling_non_square_grid_hand_written():
    pool = dccnn.make_pooling((3, 5), 2, 1)
    assert pool.out_shape == (2, 4)
    expected = [
        [0, 1, 5, 6], [1, 2, 6, 7], [2, 3, 7, 8], [3, 4, 8, 9],
        [5, 6, 10, 11], [6, 7, 11, 12], [7, 8, 12, 13], [8, 9, 13, 14],
    ]
    assert _windows_of(pool) == expected


def test_pooling_leftover_positions_are_dropped():
    # 5x5 grid, 2x2 windows every 2: row/column 4 belongs to no window (valid pooling)
    pool = dccnn.make_pooling((5, 5), 2, 2)
    assert pool.out_shape == (2, 2)
    assert _windows_of(pool) == [[0, 1, 5, 6], [2, 3, 7, 8], [10, 11, 15, 16],
                                 [12, 13, 17, 18]]
    A = pool.matrix()
    np.testing.assert_array_equal(A[:, [4, 9, 14, 20, 21, 22, 23, 24]], 0.0)


def test_no_pooling_is_the_identity():
    pool = dccnn.make_pooling((3, 4), None)
    assert pool.n_windows == pool.n_positions == 12 and pool.out_shape == (3, 4)
    np.testing.assert_array_equal(pool.matrix(), np.eye(12))


@pytest.mark.parametrize("grid,size,stride", [
    ((4, 4), 2, 2), ((4, 4), 3, 1), ((5, 7), 2, 1), ((6, 6), 3, 2), ((8, 8), 4, 3),
    ((1, 1), 1, 1), ((3, 4), None, None), ((7, 5), 5, 2), ((2, 9), 2, None),
])
def test_pooling_matrix_matches_reference_and_rows_sum_to_one(grid, size, stride):
    pool = dccnn.make_pooling(grid, size, stride)
    assert _windows_of(pool) == ref_pool_windows(grid, size, stride)
    A = pool.matrix()
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(A, ref_pool_matrix(grid, size, stride), rtol=1e-15)
    assert pool.position_ptr.dtype == np.int64 and pool.position_window.dtype == np.int32
    assert pool.position_ptr[0] == 0 and len(pool.position_ptr) == pool.n_positions + 1


@pytest.mark.parametrize("grid,size,stride", [
    ((4, 4), 2, 2), ((4, 4), 3, 1), ((5, 7), 2, 1), ((6, 6), 3, 2), ((8, 8), 4, 3),
    ((1, 1), 1, 1), ((3, 4), None, None), ((7, 5), 5, 2), ((2, 9), 2, None),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_is_the_product_with_the_reference_matrix(grid, size, stride, dtype):
    """Window averages without the Q x P matrix (the explicit features' pooling)."""
    pool = dccnn.make_pooling(grid, size, stride)
    values = np.random.default_rng(0).standard_normal((3, pool.n_positions, 5)).astype(dtype)
    got = pool.pool(values)
    want = np.einsum("qp,npm->nqm", ref_pool_matrix(grid, size, stride), values)
    assert got.dtype == dtype and got.shape == (3, pool.n_windows, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-14)
    with pytest.raises(ValueError, match="values"):
        pool.pool(values[:, 1:])
    counts = np.arange(3 * pool.n_positions * 2).reshape(3, pool.n_positions, 2)
    np.testing.assert_allclose(pool.pool(counts), pool.pool(counts.astype(np.float64)))


def test_make_pooling_errors():
    with pytest.raises(ValueError, match="pool_size"):
        dccnn.make_pooling((3, 3), 4)
    with pytest.raises(ValueError, match="pool_size"):
        dccnn.make_pooling((3, 3), 0)
    with pytest.raises(ValueError, match="pool_stride"):
        dccnn.make_pooling((3, 3), 2, 0)
    with pytest.raises(TypeError, match="pool_size"):
        dccnn.make_pooling((3, 3), 1.5)
    with pytest.raises(ValueError, match="grid_shape"):
        dccnn.make_pooling((3, 3, 1), 2)
    with pytest.raises(ValueError, match="grid_shape"):
        dccnn.make_pooling((0, 3), 1)


# ---------------------------------------------------------------------------------------------
# Pooled kernel blocks
# ---------------------------------------------------------------------------------------------

def _patches(rng, kernel, n, P, d, dtype):
    if kernel == "inverse_polynomial":
        return unit_ball_rows(rng, n * P, d, dtype=dtype).reshape(n, P, d)
    return (rng.standard_normal((n, P, d)) / np.sqrt(d) * 1.3).astype(dtype)


POOLED_CASES = [
    # (grid, pool size, pool stride, d)
    ((4, 4), 2, 2, 3),      # disjoint windows
    ((4, 4), 3, 1, 4),      # overlapping windows
    ((3, 5), None, None, 2),  # no pooling: Q = P
    ((5, 5), 2, 2, 9),      # positions outside every window
    ((7, 7), 3, 2, 5),      # P = 49: more positions than one vector of lanes
    ((1, 1), None, None, 1),  # a single position
    ((6, 4), 4, 1, 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("grid,size,stride,d", POOLED_CASES)
def test_pooled_kernel_blocks_symmetric(backend, dtype, kernel, grid, size, stride, d):
    rng = np.random.default_rng(zlib.crc32(repr((grid, size, d)).encode()))
    P = grid[0] * grid[1]
    pool = dccnn.make_pooling(grid, size, stride)
    Z = _patches(rng, kernel, 3, P, d, dtype)
    B = dccnn.pooled_kernel_blocks(Z, pooling=pool, kernel=kernel, backend=backend)
    A = ref_pool_matrix(grid, size, stride)
    Q = A.shape[0]
    assert B.shape == (3, 3, Q, Q) and B.dtype == dtype
    ref = ref_pooled_blocks(Z, None, A, kernel)
    assert_close(B, ref, RTOL[dtype] * (3 if dtype == np.float32 else 1))
    # K_ji = K_ij^T: the half not evaluated is the exact transpose of the evaluated one; the
    # diagonal blocks K_ii are symmetric up to the rounding of their sums.
    for i, j in itertools.product(range(3), range(3)):
        if i != j:
            np.testing.assert_array_equal(B[j, i], B[i, j].T)
    assert_close(B, B.transpose(1, 0, 3, 2), RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("grid,size,stride,d", POOLED_CASES)
def test_pooled_kernel_blocks_with_z2(backend, dtype, kernel, grid, size, stride, d):
    rng = np.random.default_rng(zlib.crc32(repr((grid, size, d, 1)).encode()))
    P = grid[0] * grid[1]
    pool = dccnn.make_pooling(grid, size, stride)
    Z1 = _patches(rng, kernel, 2, P, d, dtype)
    Z2 = _patches(rng, kernel, 5, P, d, dtype)
    params = dict(degree=3, coef0=0.5, constant=0.2) if kernel == "polynomial" else {}
    if kernel == "rbf":
        params = dict(gamma=0.6, constant=0.1)
    B = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pool, kernel=kernel, backend=backend,
                                   **params)
    A = ref_pool_matrix(grid, size, stride)
    assert B.shape == (2, 5, A.shape[0], A.shape[0]) and B.dtype == dtype
    ref = ref_pooled_blocks(Z1, Z2, A, kernel, **params)
    assert_close(B, ref, RTOL[dtype] * (3 if dtype == np.float32 else 1))


@pytest.mark.parametrize("n2", [63, 64, 65, 150])
def test_pooled_kernel_blocks_few_rows_against_many_images(backend, n2):
    """The core splits each row of pairs into runs of 64 images for its threads (the exact
    back-end evaluates a few rows against all training images on each pass)."""
    rng = np.random.default_rng(n2)
    grid, size, stride, d = (4, 4), 2, 2, 3
    pool = dccnn.make_pooling(grid, size, stride)
    Z2 = _patches(rng, "rbf", n2, grid[0] * grid[1], d, np.float64)
    B = dccnn.pooled_kernel_blocks(Z2[:3], Z2, pooling=pool, backend=backend)
    ref = ref_pooled_blocks(Z2[:3], Z2, ref_pool_matrix(grid, size, stride), "rbf")
    assert_close(B, ref, RTOL[np.float64])
    B1 = dccnn.pooled_kernel_blocks(Z2[:3], Z2, pooling=pool, backend=backend, n_jobs=1)
    np.testing.assert_array_equal(B, B1)


def test_pooled_kernel_blocks_definition_by_explicit_loops(backend):
    # Literal loops over the definition K_ij[q, q'] = mean_{p in S_q, p' in S_q'} k(.,.)
    rng = np.random.default_rng(11)
    grid, d = (3, 3), 2
    Z1 = rng.standard_normal((2, 9, d))
    Z2 = rng.standard_normal((3, 9, d))
    windows = [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    pool = dccnn.make_pooling(grid, 2, 1)
    B = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pool, kernel="rbf", gamma=0.8,
                                   backend=backend)
    for i in range(2):
        for j in range(3):
            for q, Sq in enumerate(windows):
                for r, Sr in enumerate(windows):
                    vals = [np.exp(-0.8 * np.sum((Z1[i, p] - Z2[j, pp]) ** 2))
                            for p in Sq for pp in Sr]
                    assert B[i, j, q, r] == pytest.approx(np.mean(vals), rel=1e-12)


def test_pooled_kernel_blocks_without_pooling_equals_kernel_matrix_blocks(backend):
    # Q = P: the blocks are the patch kernel matrices of the image pairs (cdist reference)
    rng = np.random.default_rng(12)
    Z1 = rng.standard_normal((2, 6, 4))
    Z2 = rng.standard_normal((3, 6, 4))
    B = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=dccnn.make_pooling((2, 3)), backend=backend)
    for i in range(2):
        for j in range(3):
            assert_close(B[i, j], ref_kernel(Z1[i], Z2[j], "rbf"), 1e-12)


def test_pooled_kernel_blocks_inverse_polynomial_norm_error(backend):
    rng = np.random.default_rng(13)
    Z = unit_ball_rows(rng, 8, 3).reshape(2, 4, 3)
    Z[1, 2] *= 2.0 / np.linalg.norm(Z[1, 2])
    pool = dccnn.make_pooling((2, 2), 2)
    with pytest.raises(ValueError, match="norm"):
        dccnn.pooled_kernel_blocks(Z, pooling=pool, kernel="inverse_polynomial",
                                   backend=backend)
    with pytest.raises(ValueError, match="Z2.*norm"):
        dccnn.pooled_kernel_blocks(Z[:1], Z, pooling=pool, kernel="inverse_polynomial",
                                   backend=backend)


def test_pooled_kernel_blocks_mixed_dtypes(backend):
    rng = np.random.default_rng(14)
    Z1 = rng.standard_normal((2, 4, 3)).astype(np.float32)
    Z2 = rng.standard_normal((3, 4, 3))
    pool = dccnn.make_pooling((2, 2), 2)
    B = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pool, kernel="linear", backend=backend)
    assert B.dtype == np.float64
    ref = ref_pooled_blocks(Z1, Z2, ref_pool_matrix((2, 2), 2), "linear")
    assert_close(B, ref, 1e-12)


def _custom_pooling(grid, windows):
    """A Pooling with arbitrary (unequal, overlapping) windows, built from its CSR form."""
    P = grid[0] * grid[1]
    members = [[q for q, w in enumerate(windows) if p in w] for p in range(P)]
    ptr = np.zeros(P + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(m) for m in members])
    win = np.array([q for m in members for q in m], dtype=np.int32)
    return dccnn.Pooling(grid, 0, 0, (1, len(windows)), ptr, win)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_pooled_kernel_blocks_unequal_windows(backend, dtype, kernel):
    # Windows of 1, 4, 2 and 6 positions (one position in no window): each window is averaged
    # over its own size.
    grid = (2, 4)
    windows = [[0], [1, 2, 5, 6], [0, 4], [2, 3, 5, 6, 7, 1]]
    pool = _custom_pooling(grid, windows)
    A = np.zeros((4, 8))
    for q, w in enumerate(windows):
        A[q, w] = 1.0 / len(w)
    np.testing.assert_allclose(pool.matrix(), A, rtol=1e-15)
    rng = np.random.default_rng(21)
    Z1 = _patches(rng, kernel, 3, 8, 3, dtype)
    Z2 = _patches(rng, kernel, 2, 8, 3, dtype)
    rtol = RTOL[dtype] * (3 if dtype == np.float32 else 1)
    for second in (None, Z2):
        B = dccnn.pooled_kernel_blocks(Z1, second, pooling=pool, kernel=kernel, backend=backend)
        assert_close(B, ref_pooled_blocks(Z1, second, A, kernel), rtol)
