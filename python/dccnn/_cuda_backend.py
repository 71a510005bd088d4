"""Optional CUDA back-end: the extension ``dccnn._cuda``, imported lazily.

Nothing here imports ``dccnn._cuda`` until a caller asks for ``device="cuda"`` (or calls
:func:`cuda_available`), so users without a GPU or without the CUDA build never load it. The
extension exists only in builds configured with ``-DDCCNN_USE_CUDA=ON``
(``pip install . -Ccmake.define.DCCNN_USE_CUDA=ON``); it links the CUDA runtime statically and
needs an NVIDIA driver only when it is used.

Device memory: every call keeps its allocations under a budget, in bytes: the
``max_device_memory`` argument of the functions below, else the environment variable
``DCCNN_CUDA_MAX_MEMORY`` (bytes, or with a suffix K, M, G), else 80% of the free device memory.
The pooled blocks of all pairs are computed in batches of image pairs that fit the budget;
a solver's passes read them from device memory where they take at most half of it
(:func:`held_blocks`).
"""

import os

import numpy as np

from ._validation import check_choice

DEVICES = ("cpu", "cuda")

_module = None
_import_error = None
_tried = False

_BUILD_HINT = ("rebuild dccnn with its CUDA kernels (pip install . "
               "-Ccmake.define.DCCNN_USE_CUDA=ON, needs nvcc) or use device='cpu'")


def _load():
    global _module, _import_error, _tried
    if not _tried:
        _tried = True
        try:
            from . import _cuda as module
        except ImportError as exc:
            _import_error = exc
        else:
            _module = module
    return _module


def cuda_built():
    """True when this installation has the CUDA extension ``dccnn._cuda``."""
    return _load() is not None


def cuda_available():
    """True when ``device="cuda"`` can run: the CUDA extension is built and a GPU is present."""
    module = _load()
    return module is not None and module.device_count() > 0


def get_cuda():
    """The ``dccnn._cuda`` module; RuntimeError naming ``device`` when it cannot be used."""
    module = _load()
    if module is None:
        raise RuntimeError(
            "device='cuda': this dccnn was built without CUDA support (dccnn._cuda could not be "
            f"imported: {_import_error}); {_BUILD_HINT}")
    if module.device_count() == 0:
        raise RuntimeError(
            f"device='cuda': no usable CUDA GPU ({module.unavailable_reason()}); "
            "use device='cpu'")
    return module


def device_info():
    """Name, compute capability, multiprocessors, clock and memory of the current GPU."""
    return get_cuda().device_info()


def check_device(device, backend="auto"):
    """Validate ``device`` ("cpu" | "cuda") against the CPU ``backend`` choice."""
    check_choice(device, "device", DEVICES)
    if device == "cuda" and backend != "auto":
        raise ValueError(
            f"backend: {backend!r} names a CPU implementation; with device='cuda' leave "
            "backend='auto'")
    return device


def _parse_bytes(text):
    text = str(text).strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    if scale != 1:
        text = text[:-1]
    value = float(text) * scale
    if not value > 0:
        raise ValueError
    return int(value)


def resolve_device_memory(max_device_memory=None):
    """Device memory budget in bytes; 0 means "80% of the free device memory"."""
    if max_device_memory is None:
        env = os.environ.get("DCCNN_CUDA_MAX_MEMORY")
        if not env:
            return 0
        try:
            return _parse_bytes(env)
        except (ValueError, IndexError):
            raise ValueError(
                f"DCCNN_CUDA_MAX_MEMORY: expected a byte count such as 8G, got {env!r}") from None
    if isinstance(max_device_memory, bool) or not isinstance(max_device_memory, (int, float)) \
            or not max_device_memory > 0:
        raise ValueError(
            f"max_device_memory: expected a positive byte count, got {max_device_memory!r}")
    return int(max_device_memory)


def kernel_matrix(Z1, Z2, kind, gamma, degree, coef0, constant, *, max_device_memory=None):
    """Same arguments as ``dccnn._core.kernel_matrix`` (less n_threads); Z2 may be None."""
    budget = resolve_device_memory(max_device_memory)
    out, _ = get_cuda().kernel_matrix(Z1, Z2, kind, gamma, degree, coef0, constant, budget)
    return out


def pooled_kernel_blocks(Z1, Z2, position_ptr, position_window, n_windows, kind, gamma, degree,
                         coef0, constant, *, max_device_memory=None, return_stats=False,
                         discard_output=False):
    """Same arguments as ``dccnn._core.pooled_kernel_blocks`` (less n_threads).

    ``return_stats=True`` also returns a dict (device seconds, batches, batch sizes, peak
    device bytes); ``discard_output=True`` (benchmarks) computes every block on the device and
    copies nothing back (the array returned is None).
    """
    budget = resolve_device_memory(max_device_memory)
    out, stats = get_cuda().pooled_kernel_blocks(
        Z1, Z2, position_ptr, position_window, n_windows, kind, gamma, degree, coef0, constant,
        budget, bool(discard_output))
    return (out, stats) if return_stats else out


def pooled_kernel_cross(Z1, Z2, beta, position_ptr, position_window, n_windows, kind, gamma,
                        degree, coef0, constant, *, max_device_memory=None):
    """H (n1, Q, Q*K) float64, ``H[i, q, r*K + c] = sum_j beta[j, c] K_ij[q, r]``: the pooled
    blocks contracted with ``beta`` (n2, K) on the device, batch by batch, so that only H comes
    back (``features.cross_from_blocks`` of the blocks, without them)."""
    budget = resolve_device_memory(max_device_memory)
    beta = np.ascontiguousarray(beta, dtype=np.float64)
    H, _ = get_cuda().pooled_kernel_cross(Z1, Z2, position_ptr, position_window, n_windows, kind,
                                          gamma, degree, coef0, constant, beta, budget)
    return H


def pooled_kernel_traces(Z1, Z2, position_ptr, position_window, n_windows, kind, gamma, degree,
                         coef0, constant, *, max_device_memory=None):
    """(n1, n2) float64 ``tr K_ij``, the traces taken on the device batch by batch."""
    budget = resolve_device_memory(max_device_memory)
    out, _ = get_cuda().pooled_kernel_traces(Z1, Z2, position_ptr, position_window, n_windows,
                                             kind, gamma, degree, coef0, constant, budget)
    return out


def held_blocks(Z, position_ptr, position_window, n_windows, kind, gamma, degree, coef0,
                constant, *, max_device_memory=None):
    """The pooled blocks of all pairs of Z evaluated once and held in device memory, or None
    where they do not fit: when they would take more than half the device memory budget, or
    their evaluation's batches do not fit the rest of it (the reductions need some too).
    The object's ``cross(beta)`` and ``traces()`` return (result, stats) with the results of
    ``pooled_kernel_cross`` and ``pooled_kernel_traces`` with ``Z2=None``, reading the held
    blocks instead of evaluating them again."""
    budget = resolve_device_memory(max_device_memory)
    try:
        return get_cuda().held_blocks(Z, position_ptr, position_window, n_windows, kind, gamma,
                                      degree, coef0, constant, budget)
    except MemoryError:
        return None
