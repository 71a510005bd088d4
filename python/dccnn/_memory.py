"""Memory estimates before large allocations: fail early with advice, not with the OOM killer."""

import os

import numpy as np

from ._validation import check_float

# Fraction of the available memory a single allocation may take when no budget is given.
DEFAULT_FRACTION = 0.5


def format_bytes(nbytes):
    """``nbytes`` in the largest binary unit that keeps it at 1 or more: "512 B", "3.2 KiB"."""
    value, unit = float(nbytes), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:g} B" if unit == "B" else f"{value:.3g} {unit}"


def available_memory():
    """Bytes of memory available to this process (MemAvailable on Linux), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(max_memory=None):
    """The byte budget of one allocation: ``max_memory``, or else half of the memory available
    now (None where that cannot be read)."""
    if max_memory is not None:
        # NaN compared as "never over budget", a string failed inside a comparison
        return check_float(max_memory, "max_memory", minimum=0, exclusive=True)
    avail = available_memory()
    return None if avail is None else int(avail * DEFAULT_FRACTION)


def check_allocation(shape, dtype, what, *, max_memory=None, advice="", argument="max_memory"):
    """Raise MemoryError when an array of ``shape`` and ``dtype`` would exceed the budget.

    ``max_memory`` is a byte count; None means half of the memory available now. The message
    starts with ``argument``, the argument the caller can change (like every error of
    ``dccnn._validation``).
    """
    nbytes = int(np.prod([int(s) for s in shape], dtype=object)) * np.dtype(dtype).itemsize
    budget = memory_budget(max_memory)
    if budget is not None and nbytes > budget:
        raise MemoryError(
            f"{argument}: {what} would take {format_bytes(nbytes)} (shape {tuple(shape)}, "
            f"{np.dtype(dtype)}), over the budget of {format_bytes(budget)}. {advice}".rstrip()
        )
    return nbytes
