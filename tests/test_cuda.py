"""The optional CUDA kernels (dccnn._cuda) against the CPU core.

The agreement tests run on two devices (the fixture ``cuda_device``): a GPU with the CUDA
build ("gpu", marked ``cuda``, skipped cleanly without one), and everywhere else the same
sources compiled for the CPU emulation of tests/cuda_on_cpu ("cpu-emulation"), which runs
the kernels' logic and their host orchestration (batches, streams, events, staging) strictly
enough that a wrong index or a missing wait or synchronisation changes the results. The
blocks agree with the CPU core to 1e-5 (float32) and 1e-10 (float64), relative to the
largest value. The other tests check the skip path (a clear error naming ``device``) and run
everywhere.
"""

import subprocess
import sys

import numpy as np
import pytest

import dccnn
from dccnn import _cuda_backend, layer as layer_module
from _fake_cuda import FakeCuda
from cuda_on_cpu import build as cuda_on_cpu

HAS_GPU = _cuda_backend.cuda_available()


@pytest.fixture(scope="session")
def cuda_on_cpu_module(tmp_path_factory):
    """dccnn._cuda compiled for the CPU emulation, once per session (about 20 s on 2 cores)."""
    pytest.importorskip("pybind11", reason="building dccnn._cuda for the CPU needs pybind11")
    if cuda_on_cpu.compiler() is None:
        pytest.skip("building dccnn._cuda for the CPU needs a C++20 compiler (g++)")
    # named apart from dccnn._cuda: a process loads one extension of a name, and the nvcc
    # build may be loaded too
    path = cuda_on_cpu.build_module(tmp_path_factory.mktemp("cuda_on_cpu"), name="_cuda_on_cpu")
    return cuda_on_cpu.load_module(path)


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.cuda), "cpu-emulation"])
def cuda_device(request, monkeypatch):
    """device="cuda" on a GPU, or on the CPU emulation of the same sources."""
    if request.param == "gpu":
        if not HAS_GPU:
            pytest.skip("needs the CUDA build of dccnn (dccnn._cuda) and a CUDA GPU")
        return request.param
    monkeypatch.setattr(_cuda_backend, "_module", request.getfixturevalue("cuda_on_cpu_module"))
    monkeypatch.setattr(_cuda_backend, "_tried", True)
    return request.param


TOL = {np.float32: 1e-5, np.float64: 1e-10}
KERNELS = [
    ("rbf", dict(gamma=1.0)),
    ("rbf", dict(constant=0.5)),  # gamma = 1/d
    ("inverse_polynomial", dict(constant=0.25)),
    ("polynomial", dict(degree=3, coef0=0.5)),
    ("linear", dict(constant=1.0)),
]
KERNEL_IDS = ["rbf", "rbf-default-gamma", "inverse_polynomial", "polynomial3", "linear"]


def assert_close(got, want, dtype):
    tol = TOL[dtype]
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()) / scale
    assert err <= tol, f"max relative difference {err:.3e} > {tol:.0e}"


def make_patches(rng, n, grid, d, dtype, kernel):
    """(n, P, d) patches of norm about 1; inside the unit ball for inverse_polynomial."""
    Z = rng.standard_normal((n, grid[0] * grid[1], d)) / np.sqrt(d)
    if kernel == "inverse_polynomial":
        Z /= 1.01 * np.linalg.norm(Z, axis=-1).max()
    return Z.astype(dtype)


# (grid shape, patch dim, pool size, pool stride): 2x2 windows, overlapping 3x3 windows,
# no pooling, global pooling of 144 and 169 positions (wider than a tile: split windows;
# window sizes multiples of 4 or not), d > 32.
GEOMETRIES = [
    ((6, 6), 9, 2, 2),
    ((7, 9), 18, 3, 2),
    ((5, 5), 4, None, None),
    ((12, 12), 9, 12, 12),
    ((13, 13), 4, 13, 13),
    ((5, 5), 48, 2, 1),
]
GEOMETRY_IDS = ["pool2", "overlap3", "nopool", "global144", "global169", "d48"]


# ---------------------------------------------------------------------------------------------
# Everywhere: argument checks and the skip path
# ---------------------------------------------------------------------------------------------

def test_device_argument_is_validated():
    Z = np.ones((3, 4, 2))
    pooling = dccnn.make_pooling((2, 2), 2)
    with pytest.raises(ValueError, match="device"):
        dccnn.kernel_matrix(Z[0], device="gpu")
    with pytest.raises(ValueError, match="device"):
        dccnn.pooled_kernel_blocks(Z, pooling=pooling, device=None)
    with pytest.raises(ValueError, match="backend"):
        dccnn.kernel_matrix(Z[0], device="cuda", backend="numba")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present: the unavailable path cannot be seen")
def test_cuda_requested_without_gpu_or_build_is_a_clear_error():
    Z = np.ones((3, 4, 2))
    with pytest.raises(RuntimeError, match="device='cuda'"):
        dccnn.kernel_matrix(Z[0], device="cuda")
    with pytest.raises(RuntimeError, match="device='cuda'"):
        dccnn.pooled_kernel_blocks(Z, pooling=dccnn.make_pooling((2, 2), 2), device="cuda")
    assert not _cuda_backend.cuda_available()


def test_importing_dccnn_does_not_load_cuda():
    code = "import sys, dccnn; dccnn.kernel_matrix([[1.0]]); print('dccnn._cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_memory_budget_parsing(monkeypatch):
    monkeypatch.setenv("DCCNN_CUDA_MAX_MEMORY", "1.5G")
    assert _cuda_backend.resolve_device_memory() == int(1.5 * 2**30)
    monkeypatch.setenv("DCCNN_CUDA_MAX_MEMORY", "lots")
    with pytest.raises(ValueError, match="DCCNN_CUDA_MAX_MEMORY"):
        _cuda_backend.resolve_device_memory()
    monkeypatch.delenv("DCCNN_CUDA_MAX_MEMORY")
    assert _cuda_backend.resolve_device_memory() == 0
    assert _cuda_backend.resolve_device_memory(4096) == 4096
    with pytest.raises(ValueError, match="max_device_memory"):
        _cuda_backend.resolve_device_memory(-1)


@pytest.mark.skipif(not _cuda_backend.cuda_built(), reason="needs the CUDA build (dccnn._cuda)")
def test_device_reductions_check_their_arguments_before_the_device(rng):
    """With or without a GPU: bad arguments are ValueErrors naming them, and a side without
    images needs no device (empty sums are zeros)."""
    cuda = _cuda_backend._load()
    pooling = dccnn.make_pooling((6, 6), 2)
    Z = make_patches(rng, 5, (6, 6), 9, np.float64, "rbf")
    layout = (pooling.position_ptr, pooling.position_window, pooling.n_windows, 0, 1.0, 2, 1.0,
              0.0)
    with pytest.raises(ValueError, match="beta"):
        cuda.pooled_kernel_cross(Z, None, *layout, np.ones((4, 2)), 0)
    with pytest.raises(ValueError, match="beta"):
        cuda.pooled_kernel_cross(Z, None, *layout, np.ones((5, 0)), 0)
    with pytest.raises(ValueError, match="pooling"):
        cuda.pooled_kernel_traces(Z, None, np.zeros(37, np.int64), np.zeros(0, np.int32), 9, 0,
                                  1.0, 2, 1.0, 0.0, 0)
    H, _ = cuda.pooled_kernel_cross(Z, Z[:0], *layout, np.ones((0, 2)), 0)
    np.testing.assert_array_equal(H, np.zeros((5, 9, 18)))
    traces, _ = cuda.pooled_kernel_traces(Z, Z[:0], *layout, 0)
    assert traces.shape == (5, 0)


# ---------------------------------------------------------------------------------------------
# On a GPU: agreement with the CPU core
# ---------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel,params", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "nonsym"])
def test_pooled_blocks_match_cpu(rng, dtype, kernel, params, geometry, symmetric):
    grid, d, size, stride = geometry
    pooling = dccnn.make_pooling(grid, size, stride)
    Z1 = make_patches(rng, 7, grid, d, dtype, kernel)
    Z2 = None if symmetric else make_patches(rng, 5, grid, d, dtype, kernel)
    kw = dict(pooling=pooling, kernel=kernel, **params)
    got = dccnn.pooled_kernel_blocks(Z1, Z2, device="cuda", **kw)
    assert_close(got, dccnn.pooled_kernel_blocks(Z1, Z2, **kw), dtype)
    if dtype == np.float32:  # and the exact float64 blocks of the same float32 patches
        want64 = dccnn.pooled_kernel_blocks(
            Z1.astype(np.float64), None if Z2 is None else Z2.astype(np.float64), **kw)
        assert_close(got.astype(np.float64), want64, np.float32)


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_pooled_blocks_of_28x28_digits_geometry(rng, dtype):
    """5x5 patches of 28x28 images (P = 576, 4.5 tiles per image), 2x2 pooling (Q = 144)."""
    X = rng.random((9, 28, 28)).astype(dtype)
    Z = dccnn.extract_patches(X, 5)
    pooling = dccnn.make_pooling((24, 24), 2)
    for Z2 in (None, Z[:4]):
        got = dccnn.pooled_kernel_blocks(Z, Z2, pooling=pooling, device="cuda")
        assert_close(got, dccnn.pooled_kernel_blocks(Z, Z2, pooling=pooling), dtype)


# The batching tests: (grid, patch dim, pool size, pool stride) and the images (n1, n2), such
# that the blocks outweigh the staged patches and a small budget cuts them into batches. The
# windows of 169 positions are split over tiles and their pairs have few outputs: 1-d patches
# keep the patches lighter than those. (The reduction of single-output blocks, Q = 1, is
# checked in tests/cuda_on_cpu/check_block_reductions.cpp.)
BATCH_CASES = {
    "pool2": (((6, 6), 9, 2, 2), (37, 23)),
    "overlap3": (((7, 9), 18, 3, 2), (24, 16)),
    "split-windows169": (((15, 15), 1, 13, 2), (8, 6)),
}


def _batched(fn):
    """Call fn(budget) with (within 1/64) the smallest budget in bytes that fits, so that the
    work is cut into several batches; check that the budget is respected."""
    def attempt(budget):
        try:
            return fn(budget)
        except MemoryError:
            return None

    hi = next(2**k for k in range(12, 34) if attempt(2**k) is not None)
    lo = hi // 2  # does not fit
    while hi - lo > max(64, hi // 64):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if attempt(mid) is not None else (mid, hi)
    out, stats = fn(hi)
    assert stats["batches"] > 1, stats
    assert 0 < stats["device_bytes"] <= hi, (stats, hi)
    return out, stats


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(BATCH_CASES))
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "nonsym"])
def test_pooled_blocks_in_batches_under_a_memory_budget(rng, dtype, case, symmetric):
    (grid, d, size, stride), (n1, n2) = BATCH_CASES[case]
    pooling = dccnn.make_pooling(grid, size, stride)
    Z1 = make_patches(rng, n1, grid, d, dtype, "rbf")
    Z2 = None if symmetric else make_patches(rng, n2, grid, d, dtype, "rbf")
    Q = pooling.n_windows

    def run(budget):
        return _cuda_backend.pooled_kernel_blocks(
            Z1, Z2, pooling.position_ptr, pooling.position_window, Q, 0, 0.7, 2, 1.0, 0.1,
            max_device_memory=budget, return_stats=True)

    got, stats = _batched(run)
    want = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pooling, gamma=0.7, constant=0.1)
    assert_close(got, want, dtype)
    assert stats["split_windows"] == (size == 13)  # windows of 169 > the 128 / 64 of a tile


@pytest.mark.usefixtures("cuda_device")
def test_budget_is_respected_and_too_small_a_budget_is_a_memory_error(rng):
    pooling = dccnn.make_pooling((12, 12), 2)
    Z = make_patches(rng, 64, (12, 12), 9, np.float32, "rbf")
    args = (Z, None, pooling.position_ptr, pooling.position_window, pooling.n_windows,
            0, 1.0, 2, 1.0, 0.0)
    with pytest.raises(MemoryError, match="budget"):
        _cuda_backend.pooled_kernel_blocks(*args, max_device_memory=1000)
    budget = 4 * 2**20
    _, stats = _cuda_backend.pooled_kernel_blocks(*args, max_device_memory=budget,
                                                  return_stats=True)
    assert 0 < stats["device_bytes"] <= budget


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel,params", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("shape", [(300, 257, 25), (1, 1, 1), (130, None, 75), (129, 64, 33)],
                         ids=["300x257", "1x1", "sym130-d75", "129x64-d33"])
def test_kernel_matrix_matches_cpu(rng, dtype, kernel, params, shape):
    n1, n2, d = shape
    Z1 = make_patches(rng, 1, (n1, 1), d, dtype, kernel)[0]
    Z2 = None if n2 is None else make_patches(rng, 1, (n2, 1), d, dtype, kernel)[0]
    got = dccnn.kernel_matrix(Z1, Z2, kernel, device="cuda", **params)
    assert_close(got, dccnn.kernel_matrix(Z1, Z2, kernel, **params), dtype)


@pytest.mark.usefixtures("cuda_device")
def test_kernel_matrix_in_batches(rng):
    Z1 = rng.standard_normal((3000, 8)).astype(np.float32)
    Z2 = rng.standard_normal((700, 8)).astype(np.float32)

    def run(budget):
        return _cuda_backend.get_cuda().kernel_matrix(Z1, Z2, 0, 0.5, 2, 1.0, 0.0, budget)

    got, _ = _batched(run)
    assert_close(got, dccnn.kernel_matrix(Z1, Z2, gamma=0.5), np.float32)


@pytest.mark.usefixtures("cuda_device")
def test_device_errors_are_python_exceptions(rng):
    Z = rng.standard_normal((4, 9, 5))
    pooling = dccnn.make_pooling((3, 3), 2, 1)
    with pytest.raises(ValueError, match="inverse_polynomial"):
        dccnn.pooled_kernel_blocks(Z * 10, pooling=pooling, kernel="inverse_polynomial",
                                   device="cuda")
    with pytest.raises(ValueError, match="inverse_polynomial"):
        dccnn.kernel_matrix(Z[0] * 10, kernel="inverse_polynomial", device="cuda")
    cuda = _cuda_backend.get_cuda()
    bad_ptr = np.zeros(10, dtype=np.int64)  # no position belongs to any window
    with pytest.raises(ValueError, match="pooling"):
        cuda.pooled_kernel_blocks(Z, None, bad_ptr, np.zeros(0, np.int32), 4, 0, 1.0, 2, 1.0,
                                  0.0)
    info = _cuda_backend.device_info()
    assert info["multiprocessors"] > 0 and info["memory_total"] > 0


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("tiles", [2, 3, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[3], GEOMETRIES[5]],
                         ids=["pool2", "global144", "d48"])
def test_blocks_of_several_tiles(rng, monkeypatch, tiles, dtype, geometry):
    """Thread blocks that walk several column chunks, fetching the next one during this one."""
    monkeypatch.setenv("DCCNN_CUDA_TILES_PER_BLOCK", str(tiles))
    grid, d, size, stride = geometry
    pooling = dccnn.make_pooling(grid, size, stride)
    Z1 = make_patches(rng, 40, grid, d, dtype, "rbf")
    for Z2 in (None, make_patches(rng, 31, grid, d, dtype, "rbf")):
        got = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pooling, device="cuda")
        assert_close(got, dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pooling), dtype)
    A = make_patches(rng, 1, (700, 1), d, dtype, "rbf")[0]
    got = dccnn.kernel_matrix(A, A[:450], device="cuda", constant=0.5)
    assert_close(got, dccnn.kernel_matrix(A, A[:450], constant=0.5), dtype)


def test_large_output_through_pinned_staging(rng, cuda_device):
    """Outputs of 64 MiB and more go to the host through pinned staging buffers (32 MiB
    halves). On a GPU 84 images of 5x5 patches on a 24x24 grid (585 MB of blocks); on the CPU
    emulation 1-d patches of 29 images on the same grid (70 MB: three halves)."""
    n, d, budget = (84, 25, 2**28) if cuda_device == "gpu" else (29, 1, 2**25)
    Z = make_patches(rng, n, (24, 24), d, np.float32, "rbf")
    pooling = dccnn.make_pooling((24, 24), 2)
    got = dccnn.pooled_kernel_blocks(Z, pooling=pooling, device="cuda")
    assert got.nbytes >= 64 * 2**20
    assert_close(got, dccnn.pooled_kernel_blocks(Z, pooling=pooling), np.float32)
    del got
    Q = pooling.n_windows
    got, stats = _cuda_backend.pooled_kernel_blocks(
        Z, Z[:-1], pooling.position_ptr, pooling.position_window, Q, 0, 0.04, 2, 1.0, 0.0,
        max_device_memory=budget, return_stats=True)
    assert got.nbytes >= 64 * 2**20 and stats["batches"] > 1
    assert_close(got, dccnn.pooled_kernel_blocks(Z, Z[:-1], pooling=pooling, gamma=0.04),
                 np.float32)


def _contracted_reference(blocks, beta):
    """H[i, q, r*K + c] = sum_j beta[j, c] K_ij[q, r] from the CPU core's blocks."""
    return np.einsum("ijqr,jc->iqrc", blocks, beta).reshape(blocks.shape[0], blocks.shape[2], -1)


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(BATCH_CASES))
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "nonsym"])
def test_blocks_reduced_on_the_device_match_the_cpu(rng, dtype, case, symmetric):
    """The contraction with beta (K = 1, 3 and 11: two passes of 8 outputs) and the traces in
    one batch, then (K = 11) in several under a small budget (the symmetric case then has
    mirrored batches)."""
    (grid, d, size, stride), (n1, n2) = BATCH_CASES[case]
    pooling = dccnn.make_pooling(grid, size, stride)
    Q = pooling.n_windows
    Z1 = make_patches(rng, n1, grid, d, dtype, "rbf")
    Z2 = None if symmetric else make_patches(rng, n2, grid, d, dtype, "rbf")
    kernel = dict(gamma=0.7, constant=0.1)
    args = (Z1, Z2, pooling.position_ptr, pooling.position_window, Q, 0, 0.7, 2, 1.0, 0.1)
    blocks = dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pooling, **kernel).astype(np.float64)
    for K in (1, 3, 11):
        beta = rng.standard_normal((n1 if symmetric else n2, K))
        want_H = _contracted_reference(blocks, beta)
        H = _cuda_backend.pooled_kernel_cross(Z1, Z2, beta, *args[2:])
        assert_close(H, want_H, dtype)
    want_traces = np.einsum("ijqq->ij", blocks)
    traces = _cuda_backend.pooled_kernel_traces(*args)
    assert_close(traces, want_traces, dtype)
    cuda = _cuda_backend.get_cuda()
    H, _ = _batched(lambda budget: cuda.pooled_kernel_cross(*args, beta, budget))
    assert_close(H, want_H, dtype)
    traces, _ = _batched(lambda budget: cuda.pooled_kernel_traces(*args, budget))
    assert_close(traces, want_traces, dtype)
    # the reductions add in a fixed order: the same bits on every run
    np.testing.assert_array_equal(_cuda_backend.pooled_kernel_cross(Z1, Z2, beta, *args[2:]),
                                  _cuda_backend.pooled_kernel_cross(Z1, Z2, beta, *args[2:]))


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(BATCH_CASES))
def test_held_blocks_match_the_cpu(rng, dtype, case):
    """The blocks evaluated once into device memory (under the smallest budget that takes
    them: in several batches, each copied into place on the device), then contracted with new
    weights and traced on every call: the CPU core's results, the same bits on every call,
    within the budget. They are not held, and nothing is allocated, where they would take
    more than half the budget."""
    (grid, d, size, stride), (n, _) = BATCH_CASES[case]
    pooling = dccnn.make_pooling(grid, size, stride)
    Q = pooling.n_windows
    Z = make_patches(rng, n, grid, d, dtype, "rbf")
    args = (Z, pooling.position_ptr, pooling.position_window, Q, 0, 0.7, 2, 1.0, 0.1)
    blocks = dccnn.pooled_kernel_blocks(Z, pooling=pooling, gamma=0.7,
                                        constant=0.1).astype(np.float64)
    held_bytes = n * n * Q * Q * Z.itemsize
    cuda = _cuda_backend.get_cuda()
    with pytest.raises(MemoryError, match="over half the budget"):
        cuda.held_blocks(*args, 2 * held_bytes - 1)
    assert _cuda_backend.held_blocks(*args, max_device_memory=2 * held_bytes - 1) is None
    held, stats = _batched(lambda budget: (lambda h: (h, h.evaluation))(
        cuda.held_blocks(*args, budget)))
    assert held.held_bytes == held_bytes and stats["device_bytes"] > held_bytes
    for K in (1, 3, 11):
        beta = rng.standard_normal((n, K))
        H, _ = held.cross(beta)
        assert_close(H, _contracted_reference(blocks, beta), dtype)
        np.testing.assert_array_equal(H, held.cross(beta)[0])
    traces, _ = held.traces()
    assert_close(traces, np.einsum("ijqq->ij", blocks), dtype)
    with pytest.raises(ValueError, match="beta"):
        held.cross(np.ones((n + 1, 2)))


# ---------------------------------------------------------------------------------------------
# device= on fit_layer and the estimators
# ---------------------------------------------------------------------------------------------

def _small_problem():
    rng = np.random.default_rng(3)
    X = rng.random((24, 6, 6))
    return X, (X[:, 2:4, 2:4].mean(axis=(1, 2)) > 0.5).astype(int)


def test_fit_layer_validates_device():
    X, y = _small_problem()
    with pytest.raises(ValueError, match="device"):
        dccnn.fit_layer(X, y, patch_size=3, features="exact", device="gpu")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present: the unavailable path cannot be seen")
@pytest.mark.parametrize("features", ["exact", "nystroem"])
def test_fit_layer_on_cuda_without_gpu_is_a_clear_error(features):
    X, y = _small_problem()
    with pytest.raises(RuntimeError, match="device='cuda'"):
        dccnn.fit_layer(X, y, patch_size=3, features=features, n_components=20, device="cuda")
    with pytest.raises(RuntimeError, match="device='cuda'"):
        dccnn.DCCNNClassifier(device="cuda").fit(X, y)


@pytest.mark.usefixtures("cuda_device")
@pytest.mark.parametrize("features,solver", [("exact", "admm"), ("exact", "dual"),
                                             ("nystroem", "auto")])
def test_fit_layer_on_cuda_matches_the_cpu(features, solver):
    X, y = _small_problem()
    common = dict(patch_size=3, pool_size=2, gamma=0.5, features=features, n_components=20,
                  solver=solver, tol=1e-8, random_state=0)
    cpu = dccnn.fit_layer(X, y, **common)
    gpu = dccnn.fit_layer(X, y, device="cuda", **common)
    assert gpu.primal_objective_ == pytest.approx(cpu.primal_objective_, rel=1e-7)
    np.testing.assert_allclose(gpu.decision_function(X), cpu.decision_function(X), atol=1e-5)
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


# ---------------------------------------------------------------------------------------------
# Everywhere: the Python side of device="cuda" on a stand-in for dccnn._cuda (tests/_fake_cuda.py)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(_cuda_backend, "_module", fake)
    monkeypatch.setattr(_cuda_backend, "_tried", True)
    return fake


@pytest.mark.parametrize("held", [True, False], ids=["held", "evaluated-each-pass"])
@pytest.mark.parametrize("solver", ["admm", "dual"])
def test_exact_fit_on_cuda_brings_back_reductions_only(fake_cuda, solver, held, capsys,
                                                       monkeypatch):
    """On the GPU the exact back-end asks the device for the blocks contracted with beta (and,
    for ADMM, their traces), never for the blocks themselves, and fits what the CPU fits. The
    blocks are held on the device when they take at most half the device memory budget (24^2
    blocks of 4 x 4 float64: 74 KiB), else evaluated again on every pass."""
    monkeypatch.setenv("DCCNN_CUDA_MAX_MEMORY", "1M" if held else "100K")
    X, _ = _small_problem()
    # three classes (K = 3): with K = 1 a block layout mix-up (q and q' swapped) would not
    # change the fit, as M(beta) and the scores of symmetric S are invariant to it
    y = np.digitize(X[:, 2:4, 2:4].mean(axis=(1, 2)), [0.4, 0.6])
    common = dict(patch_size=3, pool_size=2, gamma=0.5, features="exact", solver=solver,
                  tol=1e-8, random_state=0)
    cpu = dccnn.fit_layer(X, y, **common)
    gpu = dccnn.fit_layer(X, y, device="cuda", verbose=1, **common)
    out = capsys.readouterr().out
    assert "pooled_kernel_blocks" not in fake_cuda.calls
    if held:
        assert "blocks held and reduced on the GPU" in out
        assert fake_cuda.calls.count("held_blocks") == 1
        assert "held_cross" in fake_cuda.calls and "pooled_kernel_cross" not in fake_cuda.calls
        assert ("held_traces" in fake_cuda.calls) == (solver == "admm")
    else:
        assert "evaluated and reduced on the GPU on each pass" in out
        assert "held_blocks" not in fake_cuda.calls
        assert "pooled_kernel_cross" in fake_cuda.calls
        assert ("pooled_kernel_traces" in fake_cuda.calls) == (solver == "admm")
    assert gpu.primal_objective_ == pytest.approx(cpu.primal_objective_, rel=1e-7)
    assert gpu.n_filters_ == cpu.n_filters_
    np.testing.assert_allclose(gpu.alpha_, cpu.alpha_, atol=1e-5 * np.abs(cpu.alpha_).max())
    del fake_cuda.calls[:]
    np.testing.assert_allclose(gpu.decision_function(X), cpu.decision_function(X), atol=1e-5)
    assert fake_cuda.calls == ["pooled_kernel_cross"]


def test_held_blocks_are_freed_when_a_fit_is_interrupted(fake_cuda, monkeypatch):
    """The traceback of an interrupted fit (kept by IPython as sys.last_traceback) must not
    keep the blocks' device memory."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(layer_module, "_solve_and_recover", interrupted)
    X, y = _small_problem()
    try:
        dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.5, features="exact",
                        device="cuda")
    except KeyboardInterrupt as exc:
        kept = exc.__traceback__
    assert kept is not None and len(fake_cuda.held) == 1
    assert fake_cuda.held[0]() is None


def test_transform_on_cuda_in_batches(fake_cuda, monkeypatch):
    """transform contracts the blocks against the support images on the device, in batches
    of images whose products fit EXPANSION_BATCH_BYTES."""
    X, y = _small_problem()
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.5, features="exact",
                            tol=1e-8, random_state=0)
    want = layer.transform(X)
    Q, K = layer.pooling_.n_windows, layer.n_outputs_
    monkeypatch.setattr(layer_module, "EXPANSION_BATCH_BYTES", 5 * Q * Q * K * 8)
    layer.device = "cuda"
    got = layer.transform(X)
    assert fake_cuda.calls == ["pooled_kernel_cross"] * 5  # 24 images, 5 per batch
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
