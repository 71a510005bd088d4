"""Average pooling windows on the grid of patch positions (SPEC §1)."""

from dataclasses import dataclass

import numpy as np

from ._memory import check_allocation
from ._validation import check_int


@dataclass(frozen=True, eq=False)
class Pooling:
    """Windows S_1..S_Q over a ``grid_shape`` grid of positions, stored as "which windows
    contain position p" (CSR: ``position_ptr``, ``position_window``), the form the kernels use.
    """

    grid_shape: tuple
    size: int
    stride: int
    out_shape: tuple
    position_ptr: np.ndarray
    position_window: np.ndarray

    @property
    def n_positions(self):
        return self.grid_shape[0] * self.grid_shape[1]

    @property
    def n_windows(self):
        return self.out_shape[0] * self.out_shape[1]

    def check_consistent(self):
        """Raise ValueError unless the CSR arrays are exactly the windows that ``grid_shape``,
        ``size`` and ``stride`` define. The compiled kernels index memory with them, so a
        Pooling that did not come from :func:`make_pooling` (a loaded file) is checked."""
        expected = make_pooling(self.grid_shape, self.size, self.stride)
        for name in ("out_shape", "position_ptr", "position_window"):
            have, want = getattr(self, name), getattr(expected, name)
            if isinstance(want, np.ndarray):
                same = (isinstance(have, np.ndarray) and have.dtype == want.dtype
                        and np.array_equal(have, want))
            else:
                same = have == want
            if not same:
                raise ValueError(f"pooling: {name} does not match a {self.size}x{self.size} "
                                 f"pooling with stride {self.stride} on a {self.grid_shape} grid")

    def matrix(self):
        """Dense (Q, P) averaging matrix: row q holds 1/|S_q| on the members of S_q."""
        A = np.zeros((self.n_windows, self.n_positions))
        for p in range(self.n_positions):
            for m in range(self.position_ptr[p], self.position_ptr[p + 1]):
                A[self.position_window[m], p] = 1.0
        return A / A.sum(axis=1, keepdims=True)


def make_pooling(grid_shape, size=None, stride=None):
    """Windows of ``size x size`` positions every ``stride`` positions (valid pooling).

    ``size=None`` means no pooling (every position is its own window); ``stride=None`` means
    ``stride = size``.
    """
    if isinstance(grid_shape, (str, bytes)) or not hasattr(grid_shape, "__len__"):
        raise TypeError(f"grid_shape: expected a pair (rows, cols), got {grid_shape!r}")
    if len(grid_shape) != 2:
        raise ValueError(f"grid_shape: expected (rows, cols), got {grid_shape!r}")
    Hp, Wp = (check_int(s, "grid_shape", minimum=1) for s in grid_shape)
    if size is None:
        size, stride = 1, 1
    size = check_int(size, "pool_size", minimum=1)
    stride = size if stride is None else check_int(stride, "pool_stride", minimum=1)
    if size > Hp or size > Wp:
        raise ValueError(f"pool_size: a {size}x{size} window does not fit the {Hp}x{Wp} grid")
    Hq, Wq = (Hp - size) // stride + 1, (Wp - size) // stride + 1
    # One (position, window) pair per member of every window: the index grids, the pairs and
    # their sort take about six int64 arrays of that many entries, plus the CSR pointers. A
    # huge grid must fail here, before any of it is built.
    members = Hq * Wq * size * size
    check_allocation((Hp * Wp + 1 + 6 * members,), np.int64, "make_pooling",
                     argument="grid_shape", advice="Use a smaller grid of patch positions.")
    qy, qx, dy, dx = np.meshgrid(np.arange(Hq), np.arange(Wq), np.arange(size),
                                 np.arange(size), indexing="ij", sparse=True)
    position = ((qy * stride + dy) * Wp + qx * stride + dx).ravel()
    window = np.broadcast_to(qy * Wq + qx, (Hq, Wq, size, size)).ravel()
    # CSR by position; each position's windows in increasing order
    order = np.lexsort((window, position))
    ptr = np.zeros(Hp * Wp + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(position, minlength=Hp * Wp))
    win = window[order].astype(np.int32)
    return Pooling((Hp, Wp), size, stride, (Hq, Wq), ptr, win)
