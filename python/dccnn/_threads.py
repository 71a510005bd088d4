"""n_jobs (joblib convention) -> number of threads for the compiled and Numba kernels."""

import os

from ._validation import check_int


def n_threads_from_n_jobs(n_jobs):
    """None or 0 -> 0, meaning "OpenMP's current setting" (OMP_NUM_THREADS, threadpoolctl).

    A positive value is used as is; -1 means every core, -2 all but one, and so on.
    """
    if n_jobs is None:
        return 0
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs > 0:
        return n_jobs
    if n_jobs == 0:
        raise ValueError("n_jobs: must be a positive or negative integer, or None; got 0")
    return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
