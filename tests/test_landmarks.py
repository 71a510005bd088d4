"""Nystroem landmarks: uniform draws and k-means++ seeding among the training patches (SPEC §5)."""

import numpy as np
import pytest

import dccnn
from dccnn import feature_maps
from dccnn.feature_maps import NystroemMap, kmeans_plusplus_landmarks
from dccnn.kernels import resolve_kernel


def _clusters(rng, k=5, size=400, d=4, spread=1e-3):
    """k tight clusters of `size` points, centres 10 apart: a planted spread of the data."""
    centres = 10.0 * np.eye(k, d) if k <= d else 10.0 * rng.standard_normal((k, d))
    labels = np.repeat(np.arange(k), size)
    return centres[labels] + spread * rng.standard_normal((k * size, d)), labels


def _rows_of(L, flat):
    """Index in ``flat`` of every row of ``L`` (each must be one of its rows)."""
    match = np.all(L[:, None, :] == flat[None, :, :], axis=2)
    assert match.any(axis=1).all(), "a landmark is not one of the patches"
    return match.argmax(axis=1)


def test_kmeans_plusplus_spreads_over_planted_clusters(rng):
    """D^2 sampling: once a cluster holds a landmark, its points (1e-3 from it) have almost no
    chance against the other clusters' (10 away), so 5 landmarks land in 5 clusters. A uniform
    draw of 5 covers all 5 clusters with probability 5!/5^5 = 3.8%."""
    flat, labels = _clusters(rng)
    kmeans_covers, uniform_covers = [], []
    for seed in range(10):
        L = kmeans_plusplus_landmarks(flat, 5, np.random.default_rng(seed))
        kmeans_covers.append(len(set(labels[_rows_of(L, flat)])))
        U = flat[np.random.default_rng(seed).choice(flat.shape[0], 5, replace=False)]
        uniform_covers.append(len(set(labels[_rows_of(U, flat)])))
    assert kmeans_covers == [5] * 10
    assert max(uniform_covers) < 5


def test_kmeans_plusplus_draws_from_a_uniform_pool_of_large_inputs(rng, monkeypatch):
    monkeypatch.setattr(feature_maps, "KMEANS_POOL", 300)
    flat, labels = _clusters(rng, k=3, size=1000)
    L = kmeans_plusplus_landmarks(flat, 3, np.random.default_rng(0))
    assert L.shape == (3, 4) and len(set(labels[_rows_of(L, flat)])) == 3
    # the same seed gives the same landmarks
    np.testing.assert_array_equal(L, kmeans_plusplus_landmarks(flat, 3, np.random.default_rng(0)))


def _kernel_error(Z, gamma, m, landmarks, seed):
    kp = resolve_kernel("rbf", Z.shape[1], gamma=gamma)
    fmap = NystroemMap(None, kp, m, random_state=seed, landmarks=landmarks).fit(Z[None])
    held = Z[::7]
    Phi = fmap.nonlinear(held) @ fmap.whitening_
    K = dccnn.kernel_matrix(held, gamma=gamma)
    return np.linalg.norm(K - Phi @ Phi.T) / np.linalg.norm(K)


def test_kmeans_plusplus_approximates_the_kernel_better_on_clustered_patches(rng):
    """Eight clusters of patches of unequal sizes, 8 landmarks: k-means++ puts one in each
    cluster, a uniform draw misses some of the small ones, and the Nystroem kernel (nearly
    exact within a covered cluster) is off by the missed clusters' share."""
    sizes = [800, 400, 200, 100, 50, 25, 12, 6]
    centres = 3.0 * rng.standard_normal((8, 6))
    Z = np.concatenate([c + 0.01 * rng.standard_normal((s, 6)) for c, s in zip(centres, sizes)])
    kmeans = [_kernel_error(Z, 1.0, 8, "kmeans++", s) for s in range(5)]
    uniform = [_kernel_error(Z, 1.0, 8, "uniform", s) for s in range(5)]
    assert max(kmeans) < 0.01
    assert np.mean(uniform) > 10 * np.mean(kmeans)


def test_fit_layer_with_kmeans_plusplus_landmarks(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((30, 6, 6))
    y = (X[:, 2:4, 2:4].mean(axis=(1, 2)) > 0.5).astype(int)
    common = dict(patch_size=3, pool_size=2, gamma=0.5, features="nystroem", n_components=12,
                  tol=1e-6, random_state=0)
    layer = dccnn.fit_layer(X, y, landmarks="kmeans++", **common)
    assert layer.feature_map_.landmarks == "kmeans++"
    flat = dccnn.extract_patches(X, 3).reshape(-1, 9)
    assert len(set(_rows_of(layer.feature_map_.landmarks_, flat))) == 12
    assert layer.gap_ <= 1e-6
    uniform = dccnn.fit_layer(X, y, **common)
    assert not np.array_equal(uniform.feature_map_.landmarks_, layer.feature_map_.landmarks_)
    path = tmp_path / "layer.npz"
    layer.save(path)
    np.testing.assert_array_equal(dccnn.load(path).decision_function(X),
                                  layer.decision_function(X))
    with pytest.raises(ValueError, match="landmarks"):
        dccnn.fit_layer(X, y, landmarks="kmeans", **common)


def test_estimator_layers_take_landmarks():
    rng = np.random.default_rng(1)
    X = rng.random((40, 6, 6))
    y = (X[:, 2:4, 2:4].mean(axis=(1, 2)) > 0.5).astype(int)
    spec = dccnn.LayerSpec(patch_size=3, pool_size=2, gamma=0.5, features="nystroem",
                           n_components=10, landmarks="kmeans++", tol=1e-4)
    clf = dccnn.DCCNNClassifier(layers=[spec], random_state=0).fit(X, y)
    assert clf.network_.layers_[0].feature_map_.landmarks == "kmeans++"
