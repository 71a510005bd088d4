"""dccnn.plot draws what the fit holds (the data behind each artist is checked)."""

import numpy as np
import pytest

import dccnn

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import dccnn.plot  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.random((60, 8, 8))
    y = (X[:, 2:5, 2:5].mean(axis=(1, 2)) > 0.5).astype(int)
    spec = dccnn.LayerSpec(patch_size=3, pool_size=2, gamma="median", C=1.0,
                           features="nystroem", n_components=40, solver="auto", tol=1e-4)
    return dccnn.DCCNNClassifier([spec], random_state=0).fit(X, y), X


def test_gap_curve_is_the_history(fitted):
    clf, _ = fitted
    ax = dccnn.plot.plot_gap(clf, ax=plt.figure().gca())
    history = np.array(clf.network_.layers_[0].history_)
    t, gap = ax.lines[0].get_data()
    np.testing.assert_array_equal(t, history[:, 2])
    np.testing.assert_array_equal(gap, history[:, 1])


def test_singular_values_are_those_of_the_linear_weights(fitted):
    clf, _ = fitted
    ax = dccnn.plot.plot_singular_values(clf, ax=plt.figure().gca())
    layer = clf.network_.layers_[0]
    W = layer.linear_weights_.reshape(layer.n_filters_, -1)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.linalg.svd(W, compute_uv=False), rtol=1e-12)


def test_response_maps_are_the_transform(fitted):
    clf, X = fitted
    fig = dccnn.plot.plot_filter_responses(clf, X, n_images=2, max_filters=3)
    layer = clf.network_.layers_[0]
    r = min(3, layer.n_filters_)
    axes = np.array(fig.axes).reshape(2, r + 1)
    maps = layer.transform(X[:2])
    for i in range(2):
        np.testing.assert_array_equal(axes[i, 0].images[0].get_array(), X[i])
        for l in range(r):
            np.testing.assert_array_equal(axes[i, l + 1].images[0].get_array(), maps[i, l])


def test_plot_rejects_an_unfitted_object():
    with pytest.raises(ValueError, match="obj"):
        dccnn.plot.plot_gap(object())
