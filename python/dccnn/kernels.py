"""Patch kernels: kernel matrices and pooled kernel blocks (SPEC §1)."""

from dataclasses import dataclass

import numpy as np

from . import _cuda_backend
from ._backend import get_backend
from ._memory import check_allocation
from ._threads import n_threads_from_n_jobs
from ._validation import as_float_array, check_choice, check_float, check_int, common_dtype
from .pooling import Pooling

# Kernel names and the codes the compiled core and the Numba twin use for them.
KERNELS = {"rbf": 0, "inverse_polynomial": 1, "polynomial": 2, "linear": 3}
MAX_DEGREE = 100  # the core's kMaxDegree (csrc/dccnn/kernel_spec.hpp)


@dataclass(frozen=True)
class KernelParams:
    """A kernel with every parameter resolved (gamma=None already replaced by 1/d)."""

    kernel: str
    gamma: float
    degree: int
    coef0: float
    constant: float

    def core_args(self):
        return (KERNELS[self.kernel], self.gamma, self.degree, self.coef0, self.constant)


def resolve_kernel(kernel, d, *, gamma=None, degree=2, coef0=1.0, constant=0.0):
    check_choice(kernel, "kernel", KERNELS)
    gamma = 1.0 / d if gamma is None else check_float(gamma, "gamma", minimum=0, exclusive=True)
    degree = check_int(degree, "degree", minimum=1, maximum=MAX_DEGREE)
    coef0 = check_float(coef0, "coef0")
    constant = check_float(constant, "constant", minimum=0)
    return KernelParams(kernel, gamma, degree, coef0, constant)


def max_patch_norm(Z):
    """Largest Euclidean norm of the rows of Z (..., d), a Python float (inf beyond float64):
    the rows are scaled first so that their squares cannot overflow."""
    scale = float(np.abs(Z).max()) if Z.size else 0.0
    if scale == 0:
        return 0.0
    return scale * float(np.sqrt(np.square(Z / scale, dtype=np.float64).sum(axis=-1).max()))


def check_kernel_inputs(params, dtype, arrays):
    """Refuse parameters and inputs that overflow ``dtype`` inside the kernel evaluation.

    The core evaluates in ``dtype``: gamma, coef0 and constant must be representable in it, and
    squared row norms must leave room for ``|z|^2 + |z'|^2 - 2 <z, z'>`` (<= 4 max |z|^2);
    beyond that the rbf kernel gives NaN (inf - inf) and the others inf. ``arrays`` maps
    argument names to (..., d) arrays.
    """
    largest = float(np.finfo(dtype).max)
    for name in ("gamma", "coef0", "constant"):
        value = getattr(params, name)
        if abs(value) > largest:
            raise ValueError(f"{name}: {value:g} overflows {np.dtype(dtype).name}, the dtype of "
                             f"the patches; pass float64 patches or a smaller {name}")
    norm_bound = np.sqrt(largest / 4)
    for name, Z in arrays.items():
        norm = max_patch_norm(Z)
        if norm > norm_bound:
            raise ValueError(f"{name}: patch norms up to {norm:.3g} overflow the kernel "
                             f"evaluation in {np.dtype(dtype).name} (they must stay below "
                             f"{norm_bound:.3g}); rescale the patches"
                             + (" or pass float64" if dtype == np.float32 else ""))


def check_kernel_values(out, params):
    """The polynomial kernel can still overflow ((<z, z'> + coef0)^degree), and the linear one
    by its constant: say so instead of returning inf. Once ``check_kernel_inputs`` has passed,
    rbf values lie in [c, 1 + c] and inverse polynomial ones in [1/3 + c, 1 + c] (c the
    constant), so their results skip this pass, which cost a third of the time of a large rbf
    kernel_matrix (bench/README.md)."""
    if params.kernel in ("polynomial", "linear") and not np.isfinite(out).all():
        raise ValueError(f"kernel: the {params.kernel} kernel overflows {out.dtype.name} on these "
                         f"patches (degree={params.degree}, coef0={params.coef0:g}, "
                         f"constant={params.constant:g}); lower the degree or rescale the patches")
    return out


def kernel_matrix(Z1, Z2=None, kernel="rbf", *, gamma=None, degree=2, coef0=1.0, constant=0.0,
                  backend="auto", n_jobs=None, max_memory=None, device="cpu"):
    """Kernel values between the rows of ``Z1`` (n1, d) and ``Z2`` (n2, d) -> (n1, n2).

    ``Z2=None`` means ``Z2 = Z1``. Kernels: ``rbf`` exp(-gamma |z - z'|^2) (gamma=None: 1/d),
    ``inverse_polynomial`` 1/(2 - <z, z'>) (every row must have norm <= 1), ``polynomial``
    (<z, z'> + coef0)^degree (degree 1 to 100) and ``linear``; ``constant`` is added to every value. The result
    is float32 when both inputs are float32, float64 otherwise.

    ``device="cuda"`` evaluates it on the GPU (needs the CUDA build, see
    :mod:`dccnn._cuda_backend`); ``"cpu"`` (default) uses ``backend``.
    """
    _cuda_backend.check_device(device, backend)
    Z1 = as_float_array(Z1, "Z1", ndims={2})
    Z2 = Z1 if Z2 is None else as_float_array(Z2, "Z2", ndims={2})
    if Z2.shape[1] != Z1.shape[1]:
        raise ValueError(f"Z2: expected {Z1.shape[1]} columns like Z1, got {Z2.shape[1]}")
    dtype = common_dtype(Z1, Z2)
    Z1, Z2 = Z1.astype(dtype, copy=False), Z2.astype(dtype, copy=False)
    params = resolve_kernel(kernel, Z1.shape[1], gamma=gamma, degree=degree, coef0=coef0,
                            constant=constant)
    check_kernel_inputs(params, dtype, {"Z1": Z1, "Z2": Z2})
    check_allocation((Z1.shape[0], Z2.shape[0]), dtype, "kernel_matrix", max_memory=max_memory,
                     advice="Evaluate it in row blocks.")
    if device == "cuda":
        return check_kernel_values(_cuda_backend.kernel_matrix(Z1, Z2, *params.core_args()),
                                   params)
    return check_kernel_values(get_backend(backend).kernel_matrix(
        Z1, Z2, *params.core_args(), n_threads_from_n_jobs(n_jobs)), params)


def pooled_kernel_blocks(Z1, Z2=None, *, pooling, kernel="rbf", gamma=None, degree=2, coef0=1.0,
                         constant=0.0, backend="auto", n_jobs=None, max_memory=None,
                         device="cpu"):
    """Pooled kernel blocks of image pairs: ``out[i, j] = K_ij`` (Q x Q), where
    ``K_ij[q, q'] = mean_{p in S_q, p' in S_q'} k(Z1[i, p], Z2[j, p'])``.

    ``Z1`` (n1, P, d) and ``Z2`` (n2, P, d) are patches (``extract_patches``); ``pooling`` is a
    :class:`~dccnn.pooling.Pooling` over the P positions. ``Z2=None`` means ``Z2 = Z1`` and
    only half of the pairs are evaluated. Result: (n1, n2, Q, Q).

    ``device="cuda"`` computes the blocks on the GPU in batches of image pairs that fit the
    device memory budget (see :mod:`dccnn._cuda_backend`); ``"cpu"`` (default) uses ``backend``.
    """
    _cuda_backend.check_device(device, backend)
    if not isinstance(pooling, Pooling):
        raise TypeError(f"pooling: expected a dccnn.Pooling, got {type(pooling).__name__}")
    Z1 = as_float_array(Z1, "Z1", ndims={3})
    Z2_arr = None if Z2 is None else as_float_array(Z2, "Z2", ndims={3})
    if Z1.shape[1] != pooling.n_positions:
        raise ValueError(f"Z1: has {Z1.shape[1]} positions, pooling expects {pooling.n_positions}")
    if Z2_arr is not None and Z2_arr.shape[1:] != Z1.shape[1:]:
        raise ValueError(f"Z2: expected shape (n2, {Z1.shape[1]}, {Z1.shape[2]}), got {Z2_arr.shape}")
    dtype = common_dtype(Z1) if Z2_arr is None else common_dtype(Z1, Z2_arr)
    Z1 = Z1.astype(dtype, copy=False)
    if Z2_arr is not None:
        Z2_arr = Z2_arr.astype(dtype, copy=False)
    n2 = Z1.shape[0] if Z2_arr is None else Z2_arr.shape[0]
    Q = pooling.n_windows
    check_allocation((Z1.shape[0], n2, Q, Q), dtype, "pooled_kernel_blocks",
                     max_memory=max_memory,
                     advice="Use explicit features (features='nystroem') or fewer images.")
    params = resolve_kernel(kernel, Z1.shape[2], gamma=gamma, degree=degree, coef0=coef0,
                            constant=constant)
    check_kernel_inputs(params, dtype, {"Z1": Z1} if Z2_arr is None else {"Z1": Z1, "Z2": Z2_arr})
    if device == "cuda":
        blocks = _cuda_backend.pooled_kernel_blocks(
            Z1, Z2_arr, pooling.position_ptr, pooling.position_window, Q, *params.core_args())
    else:
        blocks = get_backend(backend).pooled_kernel_blocks(
            Z1, Z2_arr, pooling.position_ptr, pooling.position_window, Q, *params.core_args(),
            n_threads_from_n_jobs(n_jobs))
    return check_kernel_values(blocks, params)
