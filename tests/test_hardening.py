"""Reproducibility and concurrency (issue 8): the same random_state gives bit-identical fits;
the compiled core gives the same results from several Python threads at once, next to
OpenBLAS's threads, and stops within a second on Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import dccnn
from _refs import ref_kernel, ref_pool_matrix, ref_pooled_blocks, requires_core

RNG = np.random.default_rng(2024)
IMAGES = RNG.standard_normal((8, 1, 6, 6))
LABELS = np.arange(8) % 2
PATCHES = RNG.standard_normal((6, 16, 4)) / 2          # a 4x4 grid of positions, d = 4
POOLING = dccnn.make_pooling((4, 4), 2, 2)


def _fit(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # short fits: ConvergenceWarning
        return dccnn.fit_layer(IMAGES, LABELS, patch_size=3, pool_size=2, tol=1e-4,
                               max_iter=50, random_state=7, **kwargs)


def _fingerprint(layer):
    """Everything a fit produces that a user sees."""
    return (layer.alpha_, np.array([layer.primal_objective_, layer.dual_objective_,
                                    layer.gap_]), layer.decision_function(IMAGES))


def _assert_bit_identical(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("features,solver", [("exact", "dual"), ("exact", "admm"),
                                             ("nystroem", "dual"), ("nystroem", "primal"),
                                             ("random_fourier", "dual")])
def test_same_random_state_gives_bit_identical_fits(features, solver):
    kw = dict(features=features, solver=solver, n_jobs=1)
    if features != "exact":
        kw["n_components"] = 12       # fewer than the patches: the random draw matters
    _assert_bit_identical(_fingerprint(_fit(**kw)), _fingerprint(_fit(**kw)))


def test_random_state_matters_for_random_features():
    # the check above would pass trivially if random_state were ignored
    a = _fit(features="random_fourier", n_components=12, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = dccnn.fit_layer(IMAGES, LABELS, patch_size=3, pool_size=2, tol=1e-4, max_iter=50,
                            random_state=8, features="random_fourier", n_components=12,
                            n_jobs=1)
    assert not np.array_equal(a.decision_function(IMAGES), b.decision_function(IMAGES))


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_kernels_do_not_depend_on_the_thread_count(backend):
    # Every kernel value and pooled block entry is computed by one thread in a fixed order,
    # so the thread count cannot change a bit.
    if backend == "cpp" and not dccnn.has_compiled_core():
        pytest.skip("compiled core not built")
    Z = RNG.standard_normal((37, 9))
    for fn in (lambda n: dccnn.kernel_matrix(Z, Z[:23], backend=backend, n_jobs=n),
               lambda n: dccnn.pooled_kernel_blocks(PATCHES, pooling=POOLING, backend=backend,
                                                    n_jobs=n),
               lambda n: dccnn.extract_patches(IMAGES, 3, normalize=True, backend=backend,
                                               n_jobs=n)):
        np.testing.assert_array_equal(fn(1), fn(2))


@pytest.mark.parametrize("features", ["exact", "nystroem"])
def test_fits_do_not_depend_on_n_jobs(features):
    # n_jobs only splits the kernel evaluations (bit-identical, above) and the patch
    # extraction; the solvers themselves run in one thread in a fixed order, so the fit is
    # bit-identical too. (Only the BLAS calls of numpy could change this, and they do not
    # depend on n_jobs.)
    _assert_bit_identical(_fingerprint(_fit(features=features, n_jobs=1)),
                          _fingerprint(_fit(features=features, n_jobs=2)))


# ---------------------------------------------------------------------------------------------
# Several Python threads at once
# ---------------------------------------------------------------------------------------------

@requires_core
def test_core_from_four_threads_matches_serial_calls():
    Z = RNG.standard_normal((150, 25)).astype(np.float32)
    calls = {
        "kernel_matrix": lambda: dccnn.kernel_matrix(Z, Z[:90], gamma=0.1, backend="cpp"),
        "pooled_kernel_blocks": lambda: dccnn.pooled_kernel_blocks(
            PATCHES, PATCHES[:4], pooling=POOLING, backend="cpp"),
        "extract_patches": lambda: dccnn.extract_patches(IMAGES, 3, normalize=True,
                                                         backend="cpp"),
    }
    serial = {name: call() for name, call in calls.items()}
    # the serial results are right, so the comparison below is against a verified value
    np.testing.assert_allclose(serial["kernel_matrix"], ref_kernel(Z, Z[:90], "rbf", gamma=0.1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        serial["pooled_kernel_blocks"],
        ref_pooled_blocks(PATCHES, PATCHES[:4], ref_pool_matrix((4, 4), 2, 2), "rbf"),
        rtol=1e-12)

    n_threads, rounds = 4, 25
    barrier = threading.Barrier(n_threads)
    mismatches, errors = [], []

    def worker(k):
        try:
            barrier.wait()
            for r in range(rounds):
                name = list(calls)[(k + r) % len(calls)]     # all three run at the same time
                if not np.array_equal(calls[name](), serial[name]):
                    mismatches.append((k, r, name))
        except Exception as exc:                             # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert not mismatches, mismatches


def _run_script(source, timeout=180, env=None):
    env = dict(os.environ, **(env or {}), PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(dccnn.__file__))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], env=env,
                          capture_output=True, text=True, timeout=timeout)


@requires_core
def test_omp_num_threads_beyond_the_processors_runs_on_the_processors():
    # the core's own clamp: OMP_NUM_THREADS reaches it unchanged (n_jobs=None), and 100000
    # OpenMP threads crashed the runtime
    out = _run_script("""
        import numpy as np, dccnn
        Z = np.random.default_rng(0).standard_normal((300, 9))
        K = dccnn.kernel_matrix(Z, Z, gamma=0.5, backend="cpp")
        D = ((Z[:, None] - Z[None]) ** 2).sum(-1)
        print(np.abs(K - np.exp(-0.5 * D)).max() < 1e-12)
    """, env={"OMP_NUM_THREADS": "100000", "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"


@requires_core
def test_openmp_next_to_openblas_threads():
    # numpy's OpenBLAS keeps its own thread pool busy in a matmul in one Python thread while
    # dccnn's OpenMP threads run in another: both results must be right and the process
    # must exit cleanly (no clash of the two runtimes, no hang at exit).
    proc = _run_script("""
        import threading
        import numpy as np
        import dccnn

        rng = np.random.default_rng(0)
        A = rng.standard_normal((600, 600))
        Z = rng.standard_normal((400, 30))
        ref_gemm = A @ A
        sq = (Z ** 2).sum(1)
        ref_kernel = np.exp(-0.05 * np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0))
        stop = threading.Event()
        gemm_errors = []

        def blas_load():
            while not stop.is_set():
                if not np.allclose(A @ A, ref_gemm, rtol=1e-12, atol=1e-9):
                    gemm_errors.append("matmul")

        t = threading.Thread(target=blas_load)
        t.start()
        try:
            for _ in range(20):
                K = dccnn.kernel_matrix(Z, kernel="rbf", gamma=0.05, backend="cpp", n_jobs=2)
                assert np.abs(K - ref_kernel).max() < 1e-12
        finally:
            stop.set()
            t.join()
        assert not gemm_errors, gemm_errors
        print("coexistence OK")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "coexistence OK" in proc.stdout


def test_solvers_run_scipys_vendored_blas_on_one_thread():
    # scipy's own BLAS (vendored next to the package by its wheels) is limited to one thread
    # inside the context and restored after it; every other pool (numpy's BLAS, OpenMP) keeps
    # its setting. With a shared BLAS (conda, system) nothing is vendored and nothing changes.
    import scipy
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
    from threadpoolctl import threadpool_info

    from dccnn._threads import scipy_blas_single_thread

    scipy_dir = os.path.dirname(os.path.abspath(scipy.__file__))

    def vendored(lib):
        path = os.path.abspath(lib["filepath"])
        return lib["user_api"] == "blas" and (path.startswith(scipy_dir + os.sep)
                                              or path.startswith(scipy_dir + ".libs" + os.sep))

    before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
    if os.path.isdir(scipy_dir + ".libs"):  # a pip wheel of scipy: its BLAS is vendored there
        assert any(vendored(lib) for lib in threadpool_info())
    with scipy_blas_single_thread():
        for lib in threadpool_info():
            expected = 1 if vendored(lib) else before[lib["filepath"]]
            assert lib["num_threads"] == expected, lib
    after = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
    assert after == before


LONG_CALLS = {
    # each takes several seconds on 2 cores (the Numba twin much longer) and returns a small
    # result; one call on small inputs first compiles the Numba kernels, so that the signal
    # arrives in the kernels and not in Numba's compiler
    "pooled_kernel_blocks": """
        Z = rng.standard_normal((200, 576, 25)).astype(np.float32)
        pooling = dccnn.make_pooling((24, 24), 24)
        call = lambda Z=Z, pooling=pooling: dccnn.pooled_kernel_blocks(Z, pooling=pooling,
                                                                       backend=BACKEND)
        call(Z[:2, :4], dccnn.make_pooling((2, 2), 2))
    """,
    "kernel_matrix": """
        Z = rng.standard_normal((4000, 4096)).astype(np.float32)
        call = lambda Z=Z: dccnn.kernel_matrix(Z, backend=BACKEND)
        call(Z[:3, :5])
    """,
}


@pytest.mark.parametrize("name", LONG_CALLS)
def test_ctrl_c_interrupts_a_long_call_within_a_second(name, backend):
    # Numba's loops cannot poll for signals: its twin runs them in chunks of a few tenths of
    # a second, and the interrupt lands between two of them
    source = "\n".join([
        "import signal",
        "import numpy as np",
        "import dccnn",
        # a process started with SIGINT ignored (e.g. a background job) would keep ignoring it
        "signal.signal(signal.SIGINT, signal.default_int_handler)",
        "rng = np.random.default_rng(0)",
        f"BACKEND = {backend!r}",
        textwrap.dedent(LONG_CALLS[name]),
        textwrap.dedent("""
            print("started", flush=True)
            try:
                call()
                print("completed", flush=True)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            # the core is usable afterwards: no lock or state left behind
            X = np.arange(32.0).reshape(2, 4, 4)
            P = dccnn.extract_patches(X, 2, backend=BACKEND)
            assert P.shape == (2, 9, 4) and P[1, 0].tolist() == [16.0, 17.0, 20.0, 21.0]
            print("usable", flush=True)
        """),
    ])
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dccnn.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", source], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
        time.sleep(0.5)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().strip()
        latency = time.perf_counter() - sent
        # read on through the same buffered file: readline may already hold "usable", and
        # communicate() would read the pipe beneath it and miss that line
        rest, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert line == "interrupted", (line, err[-2000:])
    assert latency < 1.0, f"KeyboardInterrupt arrived {latency:.2f} s after SIGINT"
    assert rest.split() == ["usable"] and proc.returncode == 0, (rest, err[-2000:])


# Three cases found by `bench/fuzz.py --cases 600 --fit-layer-share 1 --entries fit_layer`
# (session 8): fits that worked whose prediction failed, and a primal solve that divided by 0.
HUGE = np.array([[[[1.26e29, -1.32e29, 6.40e29], [1.05e29, -5.36e29, 3.62e29],
                   [1.30e30, 9.47e29, -7.04e29]]],
                 [[[-1.27e30, -6.23e29, 4.13e28], [-2.33e30, -2.19e29, -1.25e30],
                   [-7.32e29, -5.44e29, -3.16e29]]]], dtype=np.float32)


def test_exact_prediction_of_float32_patches_beyond_float32_kernels():
    """The fit evaluates the blocks in float64 whatever the input; with patch norms near 2e30
    float32 cannot hold the rbf evaluation, and the prediction now falls back to float64
    too: it equals that of the same fit on float64 images."""
    common = dict(patch_size=1, kernel="rbf", features="exact", solver="dual", tol=1e-6,
                  random_state=0)
    layer = dccnn.fit_layer(HUGE, [0, 1], **common)
    twin = dccnn.fit_layer(HUGE.astype(np.float64), [0, 1], **common)
    assert layer.dtype_ == np.float32 and layer.support_.size == 2
    np.testing.assert_allclose(layer.decision_function(HUGE),
                               twin.decision_function(HUGE.astype(np.float64)),
                               rtol=1e-12, atol=0)
    assert layer.transform(HUGE).dtype == np.float32


def test_exact_prediction_with_no_support_image_is_zero():
    """Zero targets: ADMM's first step is exact, alpha = 0, so the recovered beta is 0 for
    every image and every filter (and score) is the zero function, not an error about an
    empty Z2. (Found on the smoothed dual with a linear kernel of ~1e60, whose start at an
    infeasible point drove alpha to 0; it now starts feasible.)"""
    layer = dccnn.fit_layer(HUGE, np.zeros(2), loss="squared", patch_size=1, kernel="linear",
                            mu=0.1, features="exact", solver="admm", tol=1e-3, random_state=0)
    assert layer.support_.size == 0 and layer.gap_ == 0.0
    np.testing.assert_array_equal(layer.decision_function(HUGE), np.zeros((2, 1)))
    assert layer.transform(HUGE).shape == (2, layer.n_filters_, 3, 3)


def test_primal_solver_on_all_zero_features():
    """Zero images, linear kernel: the features are 0, so FISTA's Lipschitz constant is 0 and
    its step 1/0 turned A into NaN; A = 0 is the solution, certified exactly."""
    X = np.zeros((4, 1, 3, 3))
    layer = dccnn.fit_layer(X, [0, 1, 0, 1], patch_size=1, kernel="linear",
                            features="nystroem", solver="primal", tol=1e-6, random_state=0)
    assert layer.n_filters_ == 0 and layer.gap_ == 0.0
    np.testing.assert_array_equal(layer.decision_function(X), np.zeros((4, 1)))


def test_linear_features_whose_values_overflow_are_refused():
    """Linear kernel on explicit features (the patches themselves): nothing evaluates the
    kernel, but the solver's Grams are its values, 1e600 for patches of 1e300; refused naming
    X (the ALM dual met NaN in its eigh)."""
    X = np.full((2, 1, 3, 3), 1e300)
    with pytest.raises(ValueError, match="^X: its patches give kernel values up to 1e600"):
        dccnn.fit_layer(X, [0, 1], patch_size=1, kernel="linear", features="nystroem",
                        solver="dual", tol=1e-3, random_state=0)


@pytest.mark.parametrize("kernel,scale", [("linear", 1e140), ("polynomial", 1e70)])
def test_kernel_values_beyond_the_solvers_range_are_refused(kernel, scale):
    """Kernel values near 1e280 are representable, but the solvers sum (n C)^2 of them
    (found by the fuzzer: linear features of patches near 1e150 gave NaN in the ALM);
    refused naming X."""
    X = np.random.default_rng(0).standard_normal((4, 1, 3, 3))
    with pytest.raises(ValueError, match="^X: its patches give kernel values up to 1e2.*"
                                         "would overflow float64"):
        dccnn.fit_layer(X * scale, [0, 1, 0, 1], patch_size=1, kernel=kernel, degree=2,
                        features="nystroem", solver="dual", tol=1e-3, random_state=0)


SOLVERS_AT_ANY_SCALE = [("exact", "dual", 0.0), ("exact", "dual", 0.1), ("exact", "admm", 0.1),
                        ("nystroem", "factored", 0.1), ("nystroem", "primal", 0.1),
                        ("nystroem", "dual", 0.1)]


@pytest.mark.parametrize("features,solver,mu", SOLVERS_AT_ANY_SCALE)
def test_kernel_values_up_to_1e140_fit_and_beyond_are_refused(features, solver, mu):
    """Linear kernel values of 1e130 give finite certificates on every solver (no solver
    gets far at that scale: the optimal A is near 1e-65); from 1e150 (the factored primal
    met NaN from 1e160, the smoothed dual from 1e120 before it started feasible: its dual
    points, and L-BFGS-B's curvature, reach the square of the kernel) the fit is refused
    naming X, whatever n and C."""
    X = np.random.default_rng(0).standard_normal((6, 1, 4, 4))
    X /= np.sqrt((X[:, :, :3, :3] ** 2).sum(axis=(1, 2, 3))).max()  # the largest patch: norm 1
    y = np.arange(6) % 3
    common = dict(patch_size=3, pool_size=2, kernel="linear", mu=mu, features=features,
                  solver=solver, tol=1e-3, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=30 may stop short: a ConvergenceWarning
        layer = dccnn.fit_layer(X * 10.0**65, y, **common)
    certificate = [layer.primal_objective_, layer.dual_objective_, layer.gap_]
    assert np.isfinite(certificate).all() and 0.0 <= layer.gap_ <= 1.0, certificate
    assert np.isfinite(layer.decision_function(X * 10.0**65)).all()
    with pytest.raises(ValueError, match="^X: .*kernel values up to 1e150 .*beyond the 1e140"):
        dccnn.fit_layer(X * 10.0**75, y, C=1e-6, **common)


def test_a_constant_beyond_the_solvers_range_is_refused_naming_it():
    X = np.zeros((4, 1, 3, 3))
    with pytest.raises(ValueError, match="^constant: 1e\\+300 is added to every kernel value"):
        dccnn.fit_layer(X, [0, 1, 0, 1], patch_size=1, kernel="linear", constant=1e300,
                        features="nystroem", solver="dual", tol=1e-3, random_state=0)


@pytest.mark.parametrize("kernel,scale,message", [
    ("rbf", 1e300, "X: patch norms up to 3e+300 overflow the kernel evaluation"),
    ("inverse_polynomial", 1.0, "X: inverse_polynomial needs every patch norm <= 1")])
@pytest.mark.parametrize("max_memory", [None, 2**12])
def test_fits_that_evaluate_blocks_on_each_pass_name_X_for_bad_patches(kernel, scale, message,
                                                                       max_memory):
    # fuzzing found it: under a budget that holds no block, the blocks are first evaluated in
    # the solver, whose errors named the kernels' internal argument Z1
    X = np.full((6, 5, 5), scale)
    X[::2] *= -1
    y = np.arange(6) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the budget's warning
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            dccnn.fit_layer(X, y, patch_size=3, kernel=kernel, gamma=0.5, features="exact",
                            solver="dual", max_memory=max_memory, tol=1e-3)


def test_recovery_with_one_filter_on_explicit_features_of_one_window():
    """max_filters=1 on a 2 x 2 patch grid without pooling: the recovery's reduced features
    (n, Q, r = 1) were a strided view, and its ADMM passed their rows to the core's coordinate
    descent, which takes C-ordered arrays only (a TypeError from the bindings; found by
    fuzzing two-layer networks). The recovered layer's primal objective, recomputed from its A
    and its scores, matches the one it reports."""
    X = np.random.default_rng(0).standard_normal((10, 1, 3, 3))
    y = np.arange(10) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=50 may stop short: a ConvergenceWarning
        layer = dccnn.fit_layer(X, y, patch_size=2, padding=1, stride=2, kernel="polynomial",
                                C=0.1, mu=0.1, loss="hinge", features="nystroem",
                                n_components=5, solver="admm", max_filters=1, tol=1e-3,
                                max_iter=50, random_state=0)
    assert layer.n_filters_ == 1
    Y = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    s = np.linalg.svd(layer.A_, compute_uv=False)
    hinge = np.maximum(0.0, 1.0 - Y * layer.decision_function(X)).sum()
    np.testing.assert_allclose(layer.primal_objective_, s.sum() + 0.05 * (s**2).sum() + 0.1 * hinge,
                               rtol=1e-12)
