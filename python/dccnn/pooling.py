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
        check_allocation((self.n_windows, self.n_positions), np.float64, "the pooling matrix",
                         argument="pooling", advice="pool() averages without it.")
        A = np.zeros((self.n_windows, self.n_positions))
        counts = np.diff(self.position_ptr)
        A[self.position_window, np.repeat(np.arange(self.n_positions), counts)] = 1.0
        return A / A.sum(axis=1, keepdims=True)

    def pool(self, values):
        """Window averages of per-position values: (n, P, m) -> (n, Q, m), the product with
        ``matrix()`` without forming it (a Q x P matrix is 4 GB for 150 x 150 positions and no
        pooling). The windows are those that ``grid_shape``, ``size`` and ``stride`` define
        (``check_consistent``), all of size x size positions: the sum of size^2 strided views
        of the grid."""
        n, P, m = values.shape
        if P != self.n_positions:
            raise ValueError(f"values: expected {self.n_positions} positions, got {P}")
        (H, W), (oh, ow), size, stride = self.grid_shape, self.out_shape, self.size, self.stride
        grid = values.reshape(n, H, W, m)
        out = np.zeros((n, oh, ow, m), dtype=np.result_type(values.dtype, np.float32))
        for di in range(size):
            for dj in range(size):
                out += grid[:, di:di + stride * (oh - 1) + 1:stride,
                            dj:dj + stride * (ow - 1) + 1:stride]
        out *= 1.0 / (size * size)
        return out.reshape(n, oh * ow, m)


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
