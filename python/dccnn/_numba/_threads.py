import numba


def set_threads(n_threads):
    """Mirror of the core's resolve_threads: n_threads <= 0 keeps Numba's current setting."""
    if n_threads > 0:
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
