"""Numba twin of the compiled core (csrc/dccnn): same routines, same arguments.

Used where the compiled core is not available and by the parity tests, which pair each
routine here with its C++ namesake.
"""

from .dual_cd import dual_cd_dense, dual_cd_linear
from .kernel_blocks import kernel_matrix, pooled_kernel_blocks, tile_engine
from .patches import extract_patches, normalize_patches

__all__ = ["extract_patches", "normalize_patches", "kernel_matrix", "pooled_kernel_blocks",
           "tile_engine",
           "dual_cd_dense", "dual_cd_linear"]
