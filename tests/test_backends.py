"""Back-ends: parity of the compiled core with its Numba twin, back-end selection, every ISA
build of the tile engine (DCCNN_TILE_ENGINE, in subprocesses) and thread-count invariance."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dccnn
import dccnn._backend
from _refs import KERNEL_NAMES, assert_close, requires_core, unit_ball_rows

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(dccnn.__file__)))


def _kernel_rows(rng, kernel, n, d):
    if kernel == "inverse_polynomial":
        return unit_ball_rows(rng, n, d)
    return rng.standard_normal((n, d)) / np.sqrt(d)


def _kernel_patches(rng, kernel, n, P, d):
    return _kernel_rows(rng, kernel, n * P, d).reshape(n, P, d)


KERNEL_PARAMS = {
    "rbf": [dict(), dict(gamma=1.7, constant=0.5)],
    "inverse_polynomial": [dict(), dict(constant=0.1)],
    "polynomial": [dict(degree=1, coef0=0.0), dict(degree=3, coef0=0.4, constant=1.0),
                   dict(degree=4, coef0=-1.0)],
    "linear": [dict(), dict(constant=3.0)],
}
KERNEL_CASES = [(k, p) for k in KERNEL_NAMES for p in KERNEL_PARAMS[k]]


def _case_id(case):
    kernel, params = case
    return kernel + "".join(f"-{k}{v}" for k, v in params.items())


# ---------------------------------------------------------------------------------------------
# Parity: backend="cpp" vs backend="numba"
# ---------------------------------------------------------------------------------------------

@requires_core
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("shape,size,stride,padding", [
    ((1, 1, 1, 1), 1, 1, 0),
    ((3, 1, 8, 8), 3, 1, 0),
    ((2, 3, 9, 7), 3, 2, 1),
    ((4, 2, 5, 11), 5, 1, 2),
    ((2, 12, 13), 4, 3, 0),
    ((5, 1, 28, 28), 5, 1, 0),
    ((1, 4, 6, 6), 6, 1, 0),
    ((2, 2, 3, 3), 1, 2, 3),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_parity_extract_patches(normalize, shape, size, stride, padding, dtype):
    rng = np.random.default_rng(sum(shape) + size)
    X = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    a = dccnn.extract_patches(X, size, stride, padding, normalize=normalize, backend="cpp")
    b = dccnn.extract_patches(X, size, stride, padding, normalize=normalize, backend="numba")
    assert a.dtype == b.dtype == dtype and a.shape == b.shape
    if normalize:
        assert_close(a, b, 1e-6 if dtype == np.float64 else 1e-5)
    else:
        np.testing.assert_array_equal(a, b)


@requires_core
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=_case_id)
def test_parity_kernel_matrix(dtype, case):
    kernel, params = case
    rng = np.random.default_rng(42)
    rtol = 1e-6 if dtype == np.float64 else 2e-5
    for n1, n2, d in [(1, 1, 1), (5, 3, 2), (17, 40, 9), (64, 33, 25), (129, 70, 75),
                      (8, 8, 8), (250, 3, 4)]:
        Z1 = _kernel_rows(rng, kernel, n1, d).astype(dtype)
        Z2 = _kernel_rows(rng, kernel, n2, d).astype(dtype)
        for second in (Z2, None):
            a = dccnn.kernel_matrix(Z1, second, kernel, backend="cpp", **params)
            b = dccnn.kernel_matrix(Z1, second, kernel, backend="numba", **params)
            assert a.dtype == b.dtype == dtype
            assert_close(a, b, rtol, err_msg=f"n1={n1} n2={n2} d={d}")


@requires_core
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=_case_id)
@pytest.mark.parametrize("grid,pool_size,pool_stride,d,n1,n2", [
    ((4, 4), 2, 2, 3, 3, 2),
    ((5, 5), 3, 1, 4, 2, 3),
    ((6, 3), None, None, 2, 2, 1),
    ((8, 8), 2, 2, 9, 2, 2),       # P = 64
    ((7, 9), 4, 3, 5, 1, 3),
    ((1, 1), None, None, 1, 4, 1),
])
def test_parity_pooled_kernel_blocks(dtype, case, grid, pool_size, pool_stride, d, n1, n2):
    kernel, params = case
    rng = np.random.default_rng(grid[0] * 100 + grid[1] * 10 + d)
    P = grid[0] * grid[1]
    pool = dccnn.make_pooling(grid, pool_size, pool_stride)
    Z1 = _kernel_patches(rng, kernel, n1, P, d).astype(dtype)
    Z2 = _kernel_patches(rng, kernel, n2, P, d).astype(dtype)
    rtol = 1e-6 if dtype == np.float64 else 5e-5
    for second in (Z2, None):
        a = dccnn.pooled_kernel_blocks(Z1, second, pooling=pool, kernel=kernel, backend="cpp",
                                       **params)
        b = dccnn.pooled_kernel_blocks(Z1, second, pooling=pool, kernel=kernel,
                                       backend="numba", **params)
        assert a.shape == b.shape and a.dtype == b.dtype == dtype
        assert_close(a, b, rtol)


# ---------------------------------------------------------------------------------------------
# Back-end selection
# ---------------------------------------------------------------------------------------------

@requires_core
def test_auto_uses_the_compiled_core():
    assert dccnn.has_compiled_core()
    assert dccnn.get_backend("auto") is dccnn._backend._core
    assert dccnn.get_backend() is dccnn.get_backend("cpp")
    assert dccnn.get_backend("auto").__name__ == "dccnn._core"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 1, 6, 6))
    Z = dccnn.extract_patches(X, 3, normalize=True)
    np.testing.assert_array_equal(Z, dccnn.extract_patches(X, 3, normalize=True,
                                                           backend="cpp"))
    K = dccnn.kernel_matrix(Z[0], Z[1])
    np.testing.assert_array_equal(K, dccnn.kernel_matrix(Z[0], Z[1], backend="cpp"))
    pool = dccnn.make_pooling((4, 4), 2)
    np.testing.assert_array_equal(dccnn.pooled_kernel_blocks(Z, pooling=pool),
                                  dccnn.pooled_kernel_blocks(Z, pooling=pool, backend="cpp"))


def test_numba_backend_module():
    be = dccnn.get_backend("numba")
    assert be.__name__ == "dccnn._numba"
    assert be.tile_engine() == "numba"


def test_auto_falls_back_to_numba_without_the_core(monkeypatch):
    monkeypatch.setattr(dccnn._backend, "_core", None)
    monkeypatch.setattr(dccnn._backend, "_core_import_error", ImportError("simulated"))
    assert not dccnn.has_compiled_core()
    assert dccnn.get_backend("auto").__name__ == "dccnn._numba"
    with pytest.raises(ImportError, match="backend"):
        dccnn.get_backend("cpp")
    with pytest.raises(ImportError, match="backend"):
        dccnn.kernel_matrix(np.ones((2, 2)), backend="cpp")
    # the public functions still work, on the twin
    Z = np.arange(6.0).reshape(3, 2) / 10
    K = dccnn.kernel_matrix(Z, kernel="linear")
    np.testing.assert_allclose(K, Z @ Z.T, rtol=1e-14)


@pytest.mark.parametrize("bad", ["CPP", "cuda", "", "numpy", None, 1])
def test_unknown_backend_is_a_value_error(bad):
    Z = np.ones((2, 3, 2)) / 4
    pool = dccnn.make_pooling((1, 3))
    with pytest.raises(ValueError, match="backend"):
        dccnn.get_backend(bad)
    with pytest.raises(ValueError, match="backend"):
        dccnn.extract_patches(np.ones((1, 3, 3)), 2, backend=bad)
    with pytest.raises(ValueError, match="backend"):
        dccnn.kernel_matrix(Z[0], backend=bad)
    with pytest.raises(ValueError, match="backend"):
        dccnn.pooled_kernel_blocks(Z, pooling=pool, backend=bad)


# ---------------------------------------------------------------------------------------------
# n_jobs: results do not depend on the number of threads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_n_jobs_does_not_change_results(backend, dtype):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((7, 2, 9, 9)).astype(dtype)
    Z1 = [dccnn.extract_patches(X, 3, normalize=True, backend=backend, n_jobs=j)
          for j in (1, 2, -1, None)]
    for other in Z1[1:]:
        np.testing.assert_array_equal(Z1[0], other)
    Z = Z1[0]
    for kernel in KERNEL_NAMES:
        flat = Z.reshape(-1, Z.shape[-1])            # 343 patches: several row blocks
        K1 = dccnn.kernel_matrix(flat, flat[:150], kernel, backend=backend, n_jobs=1)
        K2 = dccnn.kernel_matrix(flat, flat[:150], kernel, backend=backend, n_jobs=2)
        np.testing.assert_array_equal(K1, K2)       # bitwise
        Ks = dccnn.kernel_matrix(flat[:100], None, kernel, backend=backend, n_jobs=2)
        np.testing.assert_array_equal(Ks, dccnn.kernel_matrix(flat[:100], None, kernel,
                                                              backend=backend, n_jobs=1))
    pool = dccnn.make_pooling((7, 7), 3, 2)
    for second in (None, Z[:3]):
        B1 = dccnn.pooled_kernel_blocks(Z, second, pooling=pool, backend=backend, n_jobs=1)
        B2 = dccnn.pooled_kernel_blocks(Z, second, pooling=pool, backend=backend, n_jobs=2)
        assert_close(B1, B2, 1e-13 if dtype == np.float64 else 1e-6)


# ---------------------------------------------------------------------------------------------
# Every ISA build of the core: DCCNN_TILE_ENGINE in a fresh process
# ---------------------------------------------------------------------------------------------

def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _x86():
    import platform
    return platform.machine().lower() in ("x86_64", "amd64")


def _best_isa():
    flags = _cpu_flags()
    if flags is None or not _x86():
        return None
    if {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "generic"


_ISA_SCRIPT = textwrap.dedent(r"""
    import os, sys
    import numpy as np
    import dccnn
    from dccnn import _core
    from _refs import KERNEL_NAMES, assert_close, ref_kernel, ref_pool_matrix
    from _refs import ref_pooled_blocks, unit_ball_rows

    expected = sys.argv[1]
    engine = _core.tile_engine()
    assert engine == expected, f"tile_engine() = {engine!r}, expected {expected!r}"

    rng = np.random.default_rng(5)
    def rows(kernel, n, d, dtype):
        if kernel == "inverse_polynomial":
            return unit_ball_rows(rng, n, d, dtype=dtype)
        return (rng.standard_normal((n, d)) / np.sqrt(d)).astype(dtype)

    params = {"rbf": dict(gamma=0.9, constant=0.2), "inverse_polynomial": dict(),
              "polynomial": dict(degree=3, coef0=0.5), "linear": dict(constant=1.0)}
    rtol = {np.float32: 1e-5, np.float64: 1e-12}
    # sizes around every tile shape: MR in {4, 8}, NR in {4, 8, 16, 32}
    for dtype in (np.float32, np.float64):
        for kernel in KERNEL_NAMES:
            for n1, n2, d in [(1, 1, 1), (3, 5, 2), (4, 8, 3), (9, 17, 9), (33, 65, 25),
                              (130, 41, 75), (31, 33, 1)]:
                Z1, Z2 = rows(kernel, n1, d, dtype), rows(kernel, n2, d, dtype)
                K = dccnn.kernel_matrix(Z1, Z2, kernel, backend="cpp", **params[kernel])
                assert K.dtype == dtype
                assert_close(K, ref_kernel(Z1, Z2, kernel, **params[kernel]), rtol[dtype],
                             err_msg=f"{engine} {kernel} {dtype.__name__} {n1}x{n2}x{d}")
            for grid, size, stride, d in [((7, 7), 3, 2, 3), ((4, 4), None, None, 2),
                                          ((6, 6), 2, 1, 5)]:
                P = grid[0] * grid[1]
                pool = dccnn.make_pooling(grid, size, stride)
                A = ref_pool_matrix(grid, size, stride)
                Z1 = rows(kernel, 3 * P, d, dtype).reshape(3, P, d)
                Z2 = rows(kernel, 2 * P, d, dtype).reshape(2, P, d)
                for second in (None, Z2):
                    B = dccnn.pooled_kernel_blocks(Z1, second, pooling=pool, kernel=kernel,
                                                   backend="cpp", **params[kernel])
                    ref = ref_pooled_blocks(Z1, second, A, kernel, **params[kernel])
                    assert_close(B, ref, 3 * rtol[dtype],
                                 err_msg=f"{engine} pooled {kernel} {dtype.__name__} {grid}")

    # read once per process, at first use: a later change of the variable changes nothing
    os.environ["DCCNN_TILE_ENGINE"] = "avx2" if expected == "generic" else "generic"
    assert _core.tile_engine() == expected
    print("ISA-OK", engine)
""")


def _run_isa_script(requested, expected):
    env = dict(os.environ)
    env.pop("DCCNN_TILE_ENGINE", None)
    if requested is not None:
        env["DCCNN_TILE_ENGINE"] = requested
    env["PYTHONPATH"] = os.pathsep.join(
        [PACKAGE_PARENT, TESTS_DIR] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                       if p])
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, "-c", _ISA_SCRIPT, expected], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ISA-OK {expected}" in proc.stdout


@requires_core
@pytest.mark.parametrize("requested", ["generic", "avx2", "avx512", None])
def test_every_tile_engine_build_matches_reference(requested):
    best = _best_isa()
    if best is None:
        if requested != "generic":
            pytest.skip("ISA detection needs an x86-64 Linux machine")
        expected = "generic"
    elif requested == "generic":
        expected = "generic"
    elif requested == "avx2":
        if best == "generic":
            pytest.skip("this CPU has no AVX2+FMA")
        expected = "avx2"
    else:  # "avx512" or unset: the best the CPU supports
        expected = best
    _run_isa_script(requested, expected)


@requires_core
def test_default_tile_engine_in_this_process_is_the_best_supported():
    best = _best_isa()
    if best is None:
        pytest.skip("ISA detection needs an x86-64 Linux machine")
    if "DCCNN_TILE_ENGINE" in os.environ:
        pytest.skip("DCCNN_TILE_ENGINE is set for this run")
    assert dccnn._backend._core.tile_engine() == best


@requires_core
def test_openmp_enabled():
    # The core is built with OpenMP (CMake option DCCNN_USE_OPENMP=ON by default).
    assert dccnn._backend._core.openmp_enabled()
