"""Several convexified layers trained greedily (SPEC §6, CCNN Algorithm 2).

Layer k is trained on the final labels with the pooled outputs of layer k-1's recovered filters
as its input images (r_{k-1} channels); only the last layer's linear weights predict.
"""

import time
from dataclasses import asdict, dataclass

from .layer import fit_layer
from .patches import as_images
from .persistence import save


@dataclass
class LayerSpec:
    """Settings of one layer; the fields are ``fit_layer``'s keywords of the same names.

    The solver settings default to the estimators' choice (``features="auto"``,
    ``solver="auto"``, ``tol=1e-3``: the fastest measured, bench/README.md) rather than to
    ``fit_layer``'s exact certified dual at ``tol=1e-6``, which is for studying one layer.
    """

    patch_size: int = 3
    stride: int = 1
    padding: int = 0
    pool_size: int = None
    pool_stride: int = None
    kernel: str = "rbf"
    gamma: float = None
    degree: int = 2
    coef0: float = 1.0
    constant: float = 0.0
    normalize_patches: bool = False
    C: float = 1.0
    mu: float = 0.0
    loss: str = "squared_hinge"
    features: str = "auto"
    n_components: int = None
    landmarks: str = "uniform"
    solver: str = "auto"
    tol: float = 1e-3
    max_iter: int = None
    max_filters: int = None


class Network:
    """A stack of convexified layers. ``layers``: a list of ``LayerSpec`` (or dicts of its
    fields). After ``fit``: ``layers_`` holds the fitted ``ConvexLayer`` objects."""

    def __init__(self, layers):
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError("layers: expected a non-empty list of LayerSpec")
        specs = []
        for k, spec in enumerate(layers):
            if isinstance(spec, dict):
                try:
                    spec = LayerSpec(**spec)
                except TypeError as exc:
                    raise ValueError(f"layers[{k}]: {exc}") from None
            if not isinstance(spec, LayerSpec):
                raise TypeError(f"layers[{k}]: expected a LayerSpec or a dict, got "
                                f"{type(spec).__name__}")
            specs.append(spec)
        self.layers = specs

    def fit(self, X, y, *, random_state=None, verbose=0, callback=None, backend="auto",
            n_jobs=None, max_memory=None, device="cpu", sample_weight=None):
        """Train the layers one after the other, every one with the same ``sample_weight``
        (see ``fit_layer``); returns self."""
        start = time.perf_counter()
        images = as_images(X)
        fitted = []
        for k, spec in enumerate(self.layers):
            if verbose:
                print(f"[dccnn] layer {k + 1}/{len(self.layers)}: input {images.shape[1:]}")
            layer_callback = None if callback is None else (
                lambda it, gap, t, k=k: callback(it, gap, t, layer=k))
            layer = fit_layer(images, y, **asdict(spec), random_state=random_state,
                              verbose=verbose, callback=layer_callback, backend=backend,
                              n_jobs=n_jobs, max_memory=max_memory, device=device,
                              sample_weight=sample_weight)
            fitted.append(layer)
            if k + 1 < len(self.layers):
                if layer.n_filters_ == 0:
                    raise ValueError(f"layers[{k}]: the recovered layer has no filter, so there "
                                     f"is nothing to feed layer {k + 2}; raise its C")
                images = layer.transform(images)
        self.layers_ = fitted
        self.fit_time_ = time.perf_counter() - start
        return self

    def _check_fitted(self):
        if not hasattr(self, "layers_"):
            raise RuntimeError("Network: call fit before using the network")

    def transform(self, X):
        """Pooled outputs of the last layer's conv filters, (n, r, Hq, Wq)."""
        self._check_fitted()
        images = as_images(X)
        for layer in self.layers_:
            images = layer.transform(images)
        return images

    def _last_input(self, X):
        self._check_fitted()
        images = as_images(X)
        for layer in self.layers_[:-1]:
            images = layer.transform(images)
        return images

    def decision_function(self, X):
        return self.layers_[-1].decision_function(self._last_input(X))

    def predict(self, X):
        self._check_fitted()
        return self.layers_[-1].predict(self._last_input(X))

    @property
    def n_filters_(self):
        self._check_fitted()
        return [layer.n_filters_ for layer in self.layers_]

    def save(self, path):
        """Write the fitted network to ``path`` (.npz, see ``dccnn.load``)."""
        save(self, path)
