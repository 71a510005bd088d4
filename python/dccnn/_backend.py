"""Choice between the compiled core (``dccnn._core``) and its Numba twin (``dccnn._numba``).

Both expose the same routines with the same arguments, so callers never branch on the
back-end: they ask ``get_backend(name)`` for a module and call it.
"""

from ._validation import check_choice

BACKENDS = ("auto", "cpp", "numba")

try:
    from . import _core
except ImportError as _exc:  # the package still works, on the Numba twin
    _core = None
    _core_import_error = _exc
else:
    _core_import_error = None


def has_compiled_core():
    return _core is not None


def get_backend(backend="auto"):
    """Return the module implementing the kernels for ``backend``."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "cpp" or (backend == "auto" and _core is not None):
        if _core is None:
            raise ImportError(
                "backend: the compiled core dccnn._core is not available "
                f"({_core_import_error}); use backend='numba'"
            )
        return _core
    from . import _numba

    return _numba
