"""dccnn: dual convexified convolutional neural networks.

Two-layer CNNs relaxed to a convex problem (Zhang, Liang, Wainwright 2017), trained through
the convex dual and recovered as networks (Bai, Ke, Honorio 2024).
"""

__version__ = "0.1.0"

from ._backend import get_backend, has_compiled_core
from .estimators import DCCNNClassifier, DCCNNRegressor
from .layer import ConvexLayer, fit_layer
from .network import LayerSpec, Network
from .persistence import load, save
from .kernels import kernel_matrix, pooled_kernel_blocks, resolve_kernel
from .patches import ZCAWhitening, extract_patches, patch_grid_shape
from .pooling import Pooling, make_pooling

__all__ = [
    "__version__",
    "ConvexLayer",
    "DCCNNClassifier",
    "DCCNNRegressor",
    "LayerSpec",
    "Network",
    "Pooling",
    "fit_layer",
    "ZCAWhitening",
    "extract_patches",
    "get_backend",
    "has_compiled_core",
    "kernel_matrix",
    "load",
    "make_pooling",
    "patch_grid_shape",
    "pooled_kernel_blocks",
    "resolve_kernel",
    "save",
]
