"""scikit-learn estimators over a ``Network`` of convexified layers (issue 5).

Images come as (n, C, H, W), (n, H, W), or flat (n, C*H*W) with ``image_shape`` so that
pipelines and grid searches work. ``layers=None`` is the library's default architecture
(``default_layers``), which adapts its patch and pooling sizes to small images.
"""

import contextlib
import dataclasses
import functools
import math
import warnings

import numpy as np
from scipy.special import log_expit, logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from threadpoolctl import threadpool_limits

from ._threads import n_threads_from_n_jobs
from ._validation import check_float, check_int, check_sample_weight
from .losses import MARGIN_LOSSES
from .network import LayerSpec, Network

# The default architecture, chosen by measurement on scikit-learn's digits (validation split
# of the training images; bench/README.md "Defaults"): 3x3 patches with padding 1 matter, C is
# flat over 0.1..10 and 0.3 converges fastest with the fewest filters; a second layer ties.
DEFAULT_LAYER = LayerSpec(patch_size=3, padding=1, pool_size=2, pool_stride=2, kernel="rbf",
                          gamma="median", C=0.3, n_components=500)


def default_layers(image_shape):
    """One layer of ``DEFAULT_LAYER`` with its patch and pooling windows shrunk to fit the
    image (a 1-pixel strip gets 1x1 patches and no pooling)."""
    H, W = image_shape[-2:]
    spec = DEFAULT_LAYER
    patch = min(spec.patch_size, max(1, min(H, W)))
    padding = spec.padding if patch == spec.patch_size else 0
    grid = min(H, W) + 2 * padding - patch + 1
    pool = spec.pool_size if spec.pool_size and grid >= 2 * spec.pool_size else None
    return [dataclasses.replace(spec, patch_size=patch, padding=padding, pool_size=pool,
                                pool_stride=spec.pool_stride if pool else None)]


def _with_thread_limit(method):
    """Run ``method`` with BLAS and OpenMP limited to ``n_jobs`` threads (when given), so
    that numpy's BLAS and the core never oversubscribe each other or an outer joblib."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        n = n_threads_from_n_jobs(self.n_jobs)
        limit = threadpool_limits(limits=n) if n else contextlib.nullcontext()
        with limit:
            return method(self, *args, **kwargs)

    return wrapper


class _DCCNNBase(TransformerMixin, BaseEstimator):
    _loss_default = None

    def __init__(self, layers=None, *, image_shape=None, C=None, loss=None, tol=None,
                 max_iter=None, max_memory=None, backend="auto", device="cpu", callback=None,
                 random_state=None, n_jobs=None, verbose=0):
        self.layers = layers
        self.image_shape = image_shape
        self.C = C
        self.loss = loss
        self.tol = tol
        self.max_iter = max_iter
        self.max_memory = max_memory
        self.backend = backend
        self.device = device
        self.callback = callback
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _validate(self, X, y, sample_weight, **y_options):
        """Validated training images (n, C, H, W), targets and sample weights (or None; the
        fit leaves out the samples of weight 0); sets n_features_in_."""
        X, y = validate_data(self, X, y, reset=True, ensure_2d=False, allow_nd=True,
                             dtype=[np.float64, np.float32], ensure_min_samples=2, **y_options)
        # validate_data counts features only for 2-d input: count the values of an image
        self.n_features_in_ = math.prod(X.shape[1:])
        images = self._as_images(X)
        w = None if sample_weight is None else check_sample_weight(sample_weight, len(images))
        return images, y, w

    def _images(self, X):
        """Validated images of a fitted estimator."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, ensure_2d=False, allow_nd=True,
                          dtype=[np.float64, np.float32])
        n_features = math.prod(X.shape[1:])
        if X.ndim > 1 and n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return self._as_images(X)

    def _as_images(self, X):
        if X.ndim == 1:
            raise ValueError("X: expected images (n, C, H, W), (n, H, W) or a 2-d array of "
                             f"flattened images, got a 1-d array of shape {X.shape}. Reshape "
                             "your data with X.reshape(1, -1) for a single sample")
        if X.ndim in (3, 4):
            if self.image_shape is not None and tuple(X.shape[-2:]) != tuple(self.image_shape)[-2:]:
                raise ValueError(f"image_shape: {tuple(self.image_shape)} does not match the "
                                 f"images of X, {X.shape[1:]}")
            return X if X.ndim == 4 else X[:, None]
        if X.ndim != 2:
            raise ValueError(f"X: expected at most 4 dimensions, got shape {X.shape}")
        shape = self._flat_image_shape(X.shape[1])
        return X.reshape((X.shape[0],) + shape)

    def _flat_image_shape(self, n_features):
        if self.image_shape is None:
            side = math.isqrt(n_features)
            # a square image when the size allows it, else a one-row strip
            return (1, side, side) if side * side == n_features else (1, 1, n_features)
        shape = tuple(check_int(s, "image_shape") for s in np.atleast_1d(self.image_shape))
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape: expected (H, W) or (C, H, W), got {self.image_shape!r}")
        if shape[2] in (1, 3, 4) and shape[0] > shape[2] and shape[1] > shape[2]:
            warnings.warn(f"image_shape: {self.image_shape!r} is read as (C, H, W) = {shape[0]} "
                          f"channels of {shape[1]}x{shape[2]} images; channels-last images "
                          f"(H, W, C) need X.reshape(n, H, W, C).transpose(0, 3, 1, 2) and "
                          f"image_shape=(C, H, W)", UserWarning, stacklevel=4)
        if math.prod(shape) != n_features:
            raise ValueError(f"image_shape: {self.image_shape!r} holds {math.prod(shape)} "
                             f"values but X has {n_features} features")
        return shape

    def _layer_specs(self, image_shape):
        if self.layers is None:
            specs = default_layers(image_shape)
        else:
            specs = Network(self.layers).layers
        overrides = {}
        if self.C is not None:
            overrides["C"] = check_float(self.C, "C", minimum=0, exclusive=True)
        if self.tol is not None:
            overrides["tol"] = check_float(self.tol, "tol", minimum=0, exclusive=True)
        if self.max_iter is not None:
            overrides["max_iter"] = check_int(self.max_iter, "max_iter", minimum=1)
        overrides["loss"] = self.loss or self._loss_default
        return [dataclasses.replace(s, **overrides) for s in specs]

    def _fit_network(self, images, y, sample_weight):
        self.network_ = Network(self._layer_specs(images.shape[1:])).fit(
            images, y, random_state=self.random_state, verbose=self.verbose,
            callback=self.callback, backend=self.backend, n_jobs=self.n_jobs,
            max_memory=self.max_memory, device=self.device, sample_weight=sample_weight)
        last = self.network_.layers_[-1]
        self.n_filters_ = self.network_.n_filters_
        self.n_iter_ = max(layer.n_iter_ for layer in self.network_.layers_)
        self.gap_ = last.gap_
        self.fit_time_ = self.network_.fit_time_
        return self

    def get_feature_names_out(self, input_features=None):
        """Names of ``transform``'s columns: ``<estimator>_filter<k>_<row>_<col>`` for filter k
        of the last layer at pooled position (row, col)."""
        check_is_fitted(self, "network_")
        if input_features is not None:
            names_in = getattr(self, "feature_names_in_", None)
            if len(input_features) != self.n_features_in_ or (
                    names_in is not None and not np.array_equal(input_features, names_in)):
                raise ValueError("input_features: expected the names of the features seen in "
                                 f"fit ({self.n_features_in_} of them)")
        last = self.network_.layers_[-1]
        Hq, Wq = last.pooling_.out_shape
        prefix = type(self).__name__.lower()
        return np.array([f"{prefix}_filter{k}_{i}_{j}" for k in range(last.n_filters_)
                         for i in range(Hq) for j in range(Wq)], dtype=object)

    @_with_thread_limit
    def transform(self, X):
        """Pooled outputs of the last conv layer, flattened to (n, r * Hq * Wq)."""
        images = self._images(X)
        out = self.network_.transform(images)
        return out.reshape(out.shape[0], -1)

    @_with_thread_limit
    def _decision(self, X):
        images = self._images(X)
        return self.network_.decision_function(images)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def ovr_log_proba(F):
    """Log class probabilities from one-vs-rest logistic scores F, (n,) for two classes or
    (n, K): P(y = c) = sigmoid(F_c) normalised over the classes (scikit-learn's convention for
    one-vs-rest logistic regression), in log space so that scores far below zero for every
    class still give probabilities summing to 1."""
    if F.ndim == 1:
        return np.column_stack([log_expit(-F), log_expit(F)])
    L = log_expit(F)
    return L - logsumexp(L, axis=1, keepdims=True)


def _has_logistic_loss(estimator):
    if estimator.loss != "logistic":
        loss = estimator.loss or estimator._loss_default
        raise AttributeError(f"predict_proba: only a classifier fitted with loss='logistic' "
                             f"models probabilities (this one has loss={loss!r})")
    return True


class DCCNNClassifier(ClassifierMixin, _DCCNNBase):
    """Convexified CNN classifier (one-vs-rest, certified duality gap per layer).

    Parameters: ``layers`` (list of ``LayerSpec`` or dicts; None: the default architecture),
    ``image_shape`` ((H, W) or (C, H, W) for flat input), ``C``, ``tol`` and ``max_iter``
    (each overrides that setting of every layer), ``loss`` (default "squared_hinge"),
    ``max_memory`` (bytes; the automatic back-end choice and every large allocation respect
    it), ``backend``, ``device`` ("cpu" or "cuda": kernel evaluation on the GPU),
    ``callback(iteration, gap, elapsed, layer=k)``, ``random_state``, ``n_jobs``,
    ``verbose``.
    Attributes: ``classes_``, ``n_features_in_``, ``network_``, ``n_filters_`` (per layer),
    ``n_iter_`` (the most iterations of any layer's solver: ``max_iter`` bounds each),
    ``gap_`` (last layer), ``fit_time_``. ``predict_proba`` and ``predict_log_proba`` exist
    with ``loss="logistic"`` only: the margin losses model no probabilities.
    """

    _loss_default = "squared_hinge"

    @_with_thread_limit
    def fit(self, X, y, sample_weight=None):
        """Train on images X and labels y; ``sample_weight`` (n,): sample i's loss counts
        ``C * sample_weight[i]`` (0 leaves it out)."""
        images, y, w = self._validate(X, y, sample_weight)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if self.loss not in (None,) + MARGIN_LOSSES:
            raise ValueError(f"loss: a classifier needs one of {list(MARGIN_LOSSES)}, got "
                             f"{self.loss!r}")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y: needs at least two classes, got {self.classes_.size}")
        return self._fit_network(images, codes, w)

    def decision_function(self, X):
        F = self._decision(X)
        return F[:, 0] if F.shape[1] == 1 else F

    def predict(self, X):
        F = self.decision_function(X)
        idx = (F > 0).astype(int) if F.ndim == 1 else np.argmax(F, axis=1)
        return self.classes_[idx]

    @available_if(_has_logistic_loss)
    def predict_log_proba(self, X):
        """Log of ``predict_proba``: (n, n_classes), only with ``loss="logistic"``."""
        return ovr_log_proba(self.decision_function(X))

    @available_if(_has_logistic_loss)
    def predict_proba(self, X):
        """Class probabilities (n, n_classes), columns in the order of ``classes_``, only with
        ``loss="logistic"``: each class's sigmoid of its one-vs-rest score, normalised over
        the classes (two classes: sigmoid(f) and 1 - sigmoid(f))."""
        return np.exp(self.predict_log_proba(X))


class DCCNNRegressor(RegressorMixin, _DCCNNBase):
    """Convexified CNN regressor with the squared loss; ``y`` may be (n,) or (n, K).

    ``normalize_y`` (default True) fits each output centred and scaled to unit variance and
    maps the predictions back: the model has no intercept of its own, and a target in other
    units (or around another mean) would otherwise change the fit, not just its scale, and
    slow the solvers down (their conditioning grows with C |y|^2). Other parameters and
    attributes as ``DCCNNClassifier`` (no ``classes_``); ``y_mean_`` and ``y_scale_`` hold
    the normalisation (0 and 1 without it).
    """

    _loss_default = "squared"

    def __init__(self, layers=None, *, image_shape=None, C=None, loss=None, tol=None,
                 max_iter=None, normalize_y=True, max_memory=None, backend="auto", device="cpu",
                 callback=None, random_state=None, n_jobs=None, verbose=0):
        super().__init__(layers, image_shape=image_shape, C=C, loss=loss, tol=tol,
                         max_iter=max_iter, max_memory=max_memory, backend=backend,
                         device=device, callback=callback, random_state=random_state,
                         n_jobs=n_jobs, verbose=verbose)
        self.normalize_y = normalize_y

    @_with_thread_limit
    def fit(self, X, y, sample_weight=None):
        """Train on images X and targets y (n,) or (n, K); ``sample_weight`` (n,): sample
        i's loss counts ``C * sample_weight[i]`` (0 leaves it out)."""
        if self.loss not in (None, "squared"):
            raise ValueError(f"loss: a regressor has the squared loss, got {self.loss!r}; "
                             f"DCCNNClassifier has the margin losses")
        images, y, w = self._validate(X, y, sample_weight, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._single_target = y.ndim == 1
        Y = y.reshape(y.shape[0], -1)
        if self.normalize_y:  # weighted: a weight of 2 is the sample twice
            self.y_mean_ = np.average(Y, axis=0, weights=w)
            std = np.sqrt(np.average((Y - self.y_mean_) ** 2, axis=0, weights=w))
            self.y_scale_ = np.where(std > 0, std, 1.0)
        else:
            self.y_mean_, self.y_scale_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        return self._fit_network(images, (Y - self.y_mean_) / self.y_scale_, w)

    def predict(self, X):
        F = self._decision(X) * self.y_scale_ + self.y_mean_
        return F[:, 0] if self._single_target else F

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
