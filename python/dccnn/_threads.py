"""Thread counts: n_jobs (joblib convention) for the compiled and Numba kernels, and the
BLAS pools while the solvers run."""

import contextlib
import os

from ._validation import check_int


def n_threads_from_n_jobs(n_jobs):
    """None or 0 -> 0, meaning "OpenMP's current setting" (OMP_NUM_THREADS, threadpoolctl).

    A positive value is used up to the number of processors (more would only oversubscribe
    the cores, and tens of thousands of OpenMP threads crash the runtime); -1 means every
    processor, -2 all but one, and so on.
    """
    if n_jobs is None:
        return 0
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ValueError("n_jobs: must be a positive or negative integer, or None; got 0")
    n_cpus = os.cpu_count() or 1
    return min(n_jobs, n_cpus) if n_jobs > 0 else max(1, n_cpus + 1 + n_jobs)


def scipy_blas_single_thread():
    """Context manager: scipy's own BLAS/LAPACK (the library its wheels vendor next to the
    package) runs on one thread while the solvers do.

    The solvers alternate numpy GEMMs over the features (numpy's BLAS, the costly part) with
    scipy's small calls (L-BFGS-B's vector updates, T x T eigh and SVD). With pip wheels these
    are two OpenBLAS libraries, each with its own thread pool whose workers busy-wait after a
    call, so on two cores each pool's spinning workers stole the cores from the other's calls:
    the default digits fit took 68 s with two threads against 27 s with one. With scipy's pool
    at one thread it takes 17 s (bench/README.md). Where numpy and scipy share one BLAS (conda,
    system libraries) nothing is vendored next to scipy and nothing changes.
    """
    import scipy
    from threadpoolctl import ThreadpoolController

    scipy_dir = os.path.dirname(os.path.abspath(scipy.__file__))
    vendored = (scipy_dir + os.sep, scipy_dir + ".libs" + os.sep)
    controller = ThreadpoolController()
    paths = [lib.filepath for lib in controller.lib_controllers
             if lib.user_api == "blas" and os.path.abspath(lib.filepath).startswith(vendored)]
    if not paths:
        return contextlib.nullcontext()
    return controller.select(filepath=paths).limit(limits=1)


def blas_single_thread():
    """Context manager: every BLAS library on one thread, for loops that alternate numpy GEMMs
    with the core's OpenMP kernels (the exact back-end's passes that evaluate blocks again).
    An OpenBLAS pool's workers busy-wait after a call and take the cores from the OpenMP
    threads that follow: at n = 1000 on two cores such a pass took 3.2-3.8 s with numpy's
    BLAS on two threads and 2.15 s on one (bench/README.md). The controller is made once:
    finding the libraries takes 3 ms, limiting them 0.03 ms, and a fit makes hundreds of
    passes."""
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


_blas_controller = None  # the libraries loaded with numpy and scipy, found at the first use
