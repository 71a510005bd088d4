"""Sample weights: sample i's loss counts C w_i in every solver and in the certificate.

The reference is independent of the weighted code paths: an integer weight w_i is the sample
repeated w_i times, fitted without weights, so both fits have the same primal problem and
must reach the same certified optimum and the same network. (Features that do not depend on
the training sample: the exact blocks, and random Fourier features drawn from the seed alone.
Nystroem landmarks and gamma="median" are drawn from the training patches, which duplicates
change.)"""

import warnings

import numpy as np
import pytest

import dccnn

from _refs import BACKENDS


def _data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 6, 6))
    y = (X[:, 2:4, 2:4].mean(axis=(1, 2)) > 0.5).astype(int)
    w = rng.integers(1, 4, n)
    return X, y, w


def _fit(X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ConvergenceWarnings of the tight tol
        return dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.5, n_components=20,
                               tol=1e-7, max_iter=20000, random_state=0, **kwargs)


CASES = [
    ("exact", "dual", "squared_hinge", 0.0),
    ("exact", "dual", "logistic", 0.0),
    ("exact", "dual", "hinge", 0.1),  # the smoothed dual
    ("exact", "admm", "hinge", 0.0),
    ("exact", "admm", "squared", 0.0),
    ("random_fourier", "factored", "squared_hinge", 0.0),
    ("random_fourier", "primal", "logistic", 0.0),
    ("random_fourier", "admm", "logistic", 0.0),
    ("random_fourier", "dual", "hinge", 0.0),
]


@pytest.mark.parametrize("features,solver,loss,mu", CASES)
def test_integer_weights_are_repeated_samples(features, solver, loss, mu):
    X, y, w = _data()
    target = 2.0 * y - 1.0 if loss == "squared" else y
    kwargs = dict(features=features, solver=solver, loss=loss, mu=mu)
    weighted = _fit(X, target, sample_weight=w, **kwargs)
    repeated = _fit(np.repeat(X, w, axis=0), np.repeat(target, w), **kwargs)
    assert weighted.gap_ <= 1e-6 and repeated.gap_ <= 1e-6
    assert weighted.primal_objective_ == pytest.approx(repeated.primal_objective_, rel=1e-6)
    F = repeated.decision_function(X)
    np.testing.assert_allclose(weighted.decision_function(X), F,
                               atol=1e-4 * max(1.0, np.abs(F).max()))
    # and not the unweighted problem: 100 times further than the tolerance above
    unweighted = _fit(X, target, **kwargs)
    assert abs(unweighted.primal_objective_ - weighted.primal_objective_) > \
        1e-4 * weighted.primal_objective_


@pytest.mark.parametrize("features", ["exact", "random_fourier"])
def test_admm_per_row_C_on_both_back_ends(backend, features):
    """ADMM's inner coordinate descent takes the per-sample C (row_C) in the core and in its
    Numba twin alike."""
    X, y, w = _data(24, seed=1)
    kwargs = dict(features=features, solver="admm", loss="hinge", backend=backend)
    weighted = _fit(X, y, sample_weight=w, **kwargs)
    repeated = _fit(np.repeat(X, w, axis=0), np.repeat(y, w), **kwargs)
    assert weighted.primal_objective_ == pytest.approx(repeated.primal_objective_, rel=1e-6)


def test_zero_weights_leave_samples_out_and_ones_change_nothing():
    X, y, w = _data()
    w[::3] = 0
    kwargs = dict(features="exact", solver="dual")
    weighted = _fit(X, y, sample_weight=w, **kwargs)
    keep = w > 0
    reference = _fit(X[keep], y[keep], sample_weight=w[keep], **kwargs)
    assert weighted.primal_objective_ == reference.primal_objective_
    np.testing.assert_array_equal(weighted.alpha_, reference.alpha_)
    ones = _fit(X, y, sample_weight=np.ones(len(y)), **kwargs)
    plain = _fit(X, y, **kwargs)
    np.testing.assert_array_equal(ones.alpha_, plain.alpha_)


def test_zero_weights_keep_the_classes_and_the_warm_starts_samples():
    X, y, w = _data()
    y3 = np.where(X[:, 0, 0] > 0.8, 2, y)
    w0 = np.where(y3 == 2, 0, w)  # class 2 only in samples left out
    layer = _fit(X, y3, sample_weight=w0, features="exact")
    np.testing.assert_array_equal(layer.classes_, [0, 1, 2])
    assert layer.decision_function(X).shape == (30, 3)
    clf = dccnn.DCCNNClassifier([dccnn.LayerSpec(patch_size=3, pool_size=2, gamma=0.5)],
                                image_shape=(6, 6)).fit(X.reshape(30, -1), y3, sample_weight=w0)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.decision_function(X.reshape(30, -1)).shape == (30, 3)
    # a warm start belongs to the same samples: the same zero weights, not others
    again = _fit(X, y3, sample_weight=w0 + (w0 > 0), features="exact", warm_start=layer)
    assert again.gap_ <= 1e-6
    other = w0.copy()
    other[np.flatnonzero(w0)[0]] = 0
    other[np.flatnonzero(w0 == 0)[0]] = 1
    for weights in (other, None):
        with pytest.raises(ValueError, match="warm_start: the layer was fitted on other samples"):
            _fit(X, y3, sample_weight=weights, features="exact", warm_start=layer)
    # the targets are checked before samples are left out
    with pytest.raises(ValueError, match="y: expected 30 labels"):
        _fit(X, y3[:29], sample_weight=w0, features="exact")


def test_a_constant_weight_scales_C():
    X, y, _ = _data()
    weighted = _fit(X, y, C=0.5, sample_weight=np.full(len(y), 3.0), features="exact")
    scaled = _fit(X, y, C=1.5, features="exact")
    assert weighted.primal_objective_ == pytest.approx(scaled.primal_objective_, rel=1e-7)


def test_estimators_take_sample_weight():
    X, y, w = _data(40, seed=2)
    flat = X.reshape(len(X), -1)
    spec = [dccnn.LayerSpec(patch_size=3, pool_size=2, gamma=0.5, C=1.0, features="exact",
                            solver="dual", tol=1e-7)]
    clf = dccnn.DCCNNClassifier(spec, image_shape=(6, 6), random_state=0)
    weighted = clf.fit(flat, y, sample_weight=w).decision_function(flat)
    repeated = dccnn.DCCNNClassifier(spec, image_shape=(6, 6), random_state=0).fit(
        np.repeat(flat, w, axis=0), np.repeat(y, w)).decision_function(flat)
    np.testing.assert_allclose(weighted, repeated, atol=1e-4)
    # the regressor's normalize_y centres and scales with the weights too
    target = X[:, 1:3, 1:3].sum(axis=(1, 2))
    reg = dccnn.DCCNNRegressor(spec, image_shape=(6, 6), random_state=0)
    reg.fit(flat, target, sample_weight=w)
    np.testing.assert_allclose(reg.y_mean_, [np.repeat(target, w).mean()], rtol=1e-12)
    np.testing.assert_allclose(reg.y_scale_, [np.repeat(target, w).std()], rtol=1e-12)
    again = dccnn.DCCNNRegressor(spec, image_shape=(6, 6), random_state=0).fit(
        np.repeat(flat, w, axis=0), np.repeat(target, w))
    np.testing.assert_allclose(reg.predict(flat), again.predict(flat), atol=1e-4)


@pytest.mark.parametrize("sample_weight,error,match", [
    (np.ones(29), ValueError, r"sample_weight: expected shape \(30,\)"),
    (np.r_[np.ones(29), -1.0], ValueError, "sample_weight: every weight must be finite"),
    (np.r_[np.ones(29), np.nan], ValueError, "sample_weight: every weight must be finite"),
    (np.zeros(30), ValueError, "sample_weight: every weight is zero"),
    (["a"] * 30, TypeError, "sample_weight"),
    (np.full(30, 1e15), ValueError, "sample_weight: C times the weights"),
])
def test_bad_sample_weights_are_named(sample_weight, error, match):
    X, y, _ = _data()
    with pytest.raises(error, match=match):
        dccnn.fit_layer(X, y, patch_size=3, sample_weight=sample_weight)
