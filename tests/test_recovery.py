"""Weight recovery (SPEC §4, issue 4): the recovered network against kernel expansions computed
here from scratch, against the primal optimum, on a planted convolutional model, and saved."""

import json
import pickle

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist
from sklearn.svm import SVC

import dccnn


def patches_numpy(X, s):
    """(n, H, W) -> (n, P, s*s) by explicit slicing (independent of dccnn)."""
    n, H, W = X.shape
    out = [X[:, y:y + s, x:x + s].reshape(n, -1) for y in range(H - s + 1) for x in range(W - s + 1)]
    return np.stack(out, axis=1)


def pool_matrix(grid, pool):
    """(Q, P) averaging matrix of valid pooling with stride = size."""
    Hp, Wp = grid
    rows = []
    for qy in range(Hp // pool):
        for qx in range(Wp // pool):
            row = np.zeros((Hp, Wp))
            row[qy * pool:(qy + 1) * pool, qx * pool:(qx + 1) * pool] = 1.0 / pool**2
            rows.append(row.ravel())
    return np.array(rows)


def rbf_blocks(Za, Zb, Pm, gamma):
    """K_ij[q, q'] = mean over the windows of exp(-gamma ||z - z'||^2), by cdist."""
    out = np.empty((Za.shape[0], Zb.shape[0], Pm.shape[0], Pm.shape[0]))
    for i in range(Za.shape[0]):
        for j in range(Zb.shape[0]):
            out[i, j] = Pm @ np.exp(-gamma * cdist(Za[i], Zb[j], "sqeuclidean")) @ Pm.T
    return out


def labelled_images(n, seed, K=3, size=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, size, size))
    w = rng.normal(size=(K, size * size))
    y = np.argmax(X.reshape(n, -1) @ w.T + 0.5 * rng.normal(size=(n, K)), axis=1)
    return X, y


def one_vs_rest(y):
    classes = np.unique(y)
    return np.where(y[:, None] == classes[None, :], 1.0, -1.0)


@pytest.mark.parametrize("loss", ["squared_hinge", "logistic"])
def test_exact_network_equals_the_kernel_expansion_of_the_dual_solution(loss):
    X, y = labelled_images(24, 0)
    gamma, C = 0.2, 1.0
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, kernel="rbf", gamma=gamma, C=C,
                            loss=loss, features="exact", tol=1e-7, random_state=0)
    Pm = pool_matrix((4, 4), 2)
    Z = patches_numpy(X, 3)
    blocks = rbf_blocks(Z, Z, Pm, gamma)
    Y = one_vs_rest(y)
    Q, K = 4, 3
    beta = np.zeros((24, 3))
    beta[layer.support_] = layer.support_beta_
    if layer.recovery_method_ == "dual_subspace":  # the certified dual point's weights
        np.testing.assert_array_equal(beta, layer.alpha_ / layer.dual_scale_ * Y)
    # conv outputs u_q(x_i)_l = sum_t F[t, l] sum_j beta[j, c_t] K_ij[q, q_t]
    cross = np.einsum("ijqr,jc->iqrc", blocks, beta).reshape(24, Q, Q * K)
    F = layer.filter_coef_
    U = cross @ F
    Hq, Wq = 2, 2
    np.testing.assert_allclose(layer.transform(X), U.transpose(0, 2, 1).reshape(24, -1, Hq, Wq),
                               rtol=1e-8, atol=1e-10)
    f = np.einsum("iql,lqc->ic", U, layer.linear_weights_)
    np.testing.assert_allclose(layer.decision_function(X), f, rtol=1e-8, atol=1e-10)
    # the filters are orthonormal in the RKHS: F^T M(beta) F = I
    M = np.einsum("ic,iqrd->qcrd", beta, cross.reshape(24, Q, Q, K)).reshape(Q * K, Q * K)
    np.testing.assert_allclose(F.T @ M @ F, np.eye(F.shape[1]), atol=1e-7)
    # so the primal objective of the recovered network is ||W||_* + C sum loss(f)
    W = layer.linear_weights_.reshape(layer.n_filters_, -1)
    margins = Y * f
    loss_sum = (np.maximum(0, 1 - margins) ** 2).sum() if loss == "squared_hinge" else \
        np.logaddexp(0, -margins).sum()
    primal = np.linalg.svd(W, compute_uv=False).sum() + C * loss_sum
    assert primal == pytest.approx(layer.primal_objective_, rel=1e-9)
    assert layer.nuclear_norm_ == pytest.approx(np.linalg.svd(W, compute_uv=False).sum(), rel=1e-12)
    assert layer.gap_ <= 1e-7 + layer.solver_gap_
    assert 1 <= layer.n_filters_ <= Q * K


def test_hinge_network_is_recovered_from_the_exact_admm_solution():
    """The hinge loss's reduced problem is solved by ADMM: the ALM dual returned A = 0 there
    (recovered gap 0.78), and on this problem does not converge as the layer's solver either."""
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X, y = X[:60].reshape(-1, 8, 8) / 16.0, y[:60]
    layer = dccnn.fit_layer(X, y, patch_size=3, padding=1, pool_size=2, pool_stride=2,
                            gamma="median", C=0.1, loss="hinge", features="exact",
                            solver="admm", tol=1e-4, random_state=0)
    assert layer.solver_gap_ <= 1e-4 and layer.gap_ <= 1e-4
    assert layer.n_filters_ >= 1
    # the recovered network's scores give back its hinge loss part of the primal objective
    F = layer.decision_function(X)
    Y = np.where(y[:, None] == np.arange(10)[None, :], 1.0, -1.0)
    hinge = 0.1 * np.maximum(0.0, 1.0 - Y * F).sum()
    s = np.linalg.svd(layer.linear_weights_.reshape(layer.n_filters_, -1), compute_uv=False)
    assert hinge + s.sum() == pytest.approx(layer.primal_objective_, rel=1e-8)


def explicit_problem(seed, n=80, K=3):
    X, y = labelled_images(n, seed, K=K)
    common = dict(patch_size=3, pool_size=2, kernel="linear", features="nystroem", C=0.5,
                  random_state=0)
    return X, y, common


@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_recovered_network_is_the_primal_optimum(mu):
    X, y, common = explicit_problem(1)
    dual = dccnn.fit_layer(X, y, solver="dual", mu=mu, tol=1e-8, **common)
    primal = dccnn.fit_layer(X, y, solver="primal", mu=mu, tol=1e-10, max_iter=50000, **common)
    A_dual = dual.filters_ @ dual.linear_weights_.reshape(dual.n_filters_, -1)
    A_primal = primal.A_
    assert np.linalg.norm(A_dual - A_primal) <= 1e-3 * np.linalg.norm(A_primal)
    assert dual.n_filters_ == np.sum(np.linalg.svd(A_primal, compute_uv=False)
                                     > 1e-6 * np.linalg.norm(A_primal, 2))
    assert dual.primal_objective_ == pytest.approx(primal.primal_objective_, rel=1e-7)
    assert dual.gap_ <= 1e-8 + dual.solver_gap_
    # explicit filters are orthonormal vectors of the feature space
    np.testing.assert_allclose(dual.filters_.T @ dual.filters_, np.eye(dual.n_filters_), atol=1e-8)


def test_rank_is_the_number_of_unit_eigenvalues_of_M():
    """SPEC §4: at the optimum, M(alpha*) has exactly rank(A*) eigenvalues equal to 1."""
    X, y, common = explicit_problem(2)
    primal = dccnn.fit_layer(X, y, solver="primal", tol=1e-11, max_iter=100000, **common)
    Z = patches_numpy(X, 3)
    psi = np.einsum("qp,ipd->iqd", pool_matrix((4, 4), 2), Z)
    Y = one_vs_rest(y)
    f = np.einsum("iqm,mqc->ic", psi, primal.A_.reshape(-1, 4, 3))
    alpha = 2 * 0.5 * np.maximum(0, 1 - Y * f)  # KKT of the squared hinge
    G = np.einsum("iqm,ic->mqc", psi, alpha * Y).reshape(psi.shape[2], -1)
    lam = np.linalg.eigvalsh(G.T @ G)
    s = np.linalg.svd(primal.A_, compute_uv=False)
    rank = int(np.sum(s > 1e-6 * s[0]))
    assert np.sum(np.abs(lam - 1) < 1e-4) == rank
    assert primal.n_filters_ == rank


def test_max_filters_caps_the_rank_and_the_gap_shows_the_cost():
    X, y, common = explicit_problem(3)
    full = dccnn.fit_layer(X, y, tol=1e-7, **common)
    assert full.n_filters_ > 2
    capped = dccnn.fit_layer(X, y, tol=1e-7, max_filters=2, **common)
    assert capped.n_filters_ == 2
    assert capped.linear_weights_.shape == (2, 4, 3)
    assert capped.transform(X).shape == (80, 2, 2, 2)
    assert capped.primal_objective_ > full.primal_objective_
    assert capped.gap_ > full.gap_
    # the capped network is still consistent: its objective is that of its own weights
    f = capped.decision_function(X)
    Y = one_vs_rest(y)
    W = capped.linear_weights_.reshape(2, -1)
    P = np.linalg.svd(W, compute_uv=False).sum() + 0.5 * (np.maximum(0, 1 - Y * f) ** 2).sum()
    assert P == pytest.approx(capped.primal_objective_, rel=1e-9)
    primal_capped = dccnn.fit_layer(X, y, solver="primal", tol=1e-7, max_filters=2, **common)
    assert primal_capped.n_filters_ == 2
    assert primal_capped.primal_objective_ > full.primal_objective_


def planted_data(n, seed, n_filters=2, size=8):
    """A two-layer CNN with quadratic filters h_l(z) = <w_l, z>^2 on 3x3 patches, 2x2 average
    pooling and a linear output: the filters lie in the RKHS of the polynomial kernel of
    degree 2. Returns images, the network's (standardised) output and its pooled outputs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, size, size))
    w = np.linalg.qr(rng.normal(size=(9, n_filters)))[0].T  # orthonormal filters
    Pm = pool_matrix((size - 2, size - 2), 2)
    u = np.einsum("qp,ipl->iql", Pm, (patches_numpy(X, 3) @ w.T) ** 2)  # (n, Q, filters)
    a = np.random.default_rng(seed + 1000).normal(size=(n_filters, Pm.shape[0]))
    score = np.einsum("iql,lq->i", u, a)
    return X, (score - score.mean()) / score.std(), u


PLANTED = dict(patch_size=3, pool_size=2, kernel="polynomial", degree=2, coef0=1.0,
               features="nystroem", random_state=0)


def test_planted_network_is_recovered_from_its_outputs():
    """Noiseless regression on the planted network's output: two filters carry the optimum
    and they span the planted filters' pooled outputs."""
    X, score, u = planted_data(500, 0)
    layer = dccnn.fit_layer(X[:300], score[:300], loss="squared", C=10.0, n_components=100,
                            solver="primal", tol=1e-6, max_iter=20000, **PLANTED)
    pred = layer.decision_function(X[300:])[:, 0]
    assert 1 - np.mean((pred - score[300:]) ** 2) / np.var(score[300:]) > 0.99
    s = np.linalg.svd(layer.linear_weights_.reshape(layer.n_filters_, -1), compute_uv=False)
    assert np.sum(s > 1e-2 * s[0]) == 2
    top2 = layer.transform(X[300:])[:, :2].transpose(0, 2, 3, 1).reshape(-1, 2)
    assert np.max(scipy.linalg.subspace_angles(top2, u[300:].reshape(-1, 2))) < 0.2


def test_planted_network_beats_a_kernel_svm_on_its_labels():
    """Classification (labels = sign of the planted output): the nuclear norm's optimum has
    higher rank than the planted network (9 here), but its top filters align with the planted
    ones and it beats a non-convolutional kernel SVM by far."""
    X, score, u = planted_data(700, 0)
    y = (score > 0).astype(int)
    layer = dccnn.fit_layer(X[:500], y[:500], C=1.0, n_components=200, solver="primal",
                            tol=1e-6, max_iter=20000, **PLANTED)
    err = np.mean(layer.predict(X[500:]) != y[500:])
    svm = SVC(kernel="rbf", gamma="scale", C=10).fit(X[:500].reshape(500, -1), y[:500])
    svm_err = np.mean(svm.predict(X[500:].reshape(200, -1)) != y[500:])
    assert err < 0.5 * svm_err
    s = np.linalg.svd(layer.linear_weights_.reshape(layer.n_filters_, -1), compute_uv=False)
    assert layer.n_filters_ >= 2 and s[2] < 0.4 * s[1]
    top2 = layer.transform(X[500:])[:, :2].transpose(0, 2, 3, 1).reshape(-1, 2)
    angles = scipy.linalg.subspace_angles(top2, u[500:].reshape(-1, 2))
    # two random directions of this 1800-dimensional space are nearly orthogonal to it
    assert np.max(angles) < 0.5 and np.min(angles) < 0.25


@pytest.mark.parametrize("features,solver", [("exact", "dual"), ("exact", "admm"),
                                             ("nystroem", "dual"), ("random_fourier", "primal")])
def test_pickle_and_save_load_give_identical_predictions(tmp_path, features, solver):
    X, y = labelled_images(30, 4)
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.2, features=features,
                            n_components=30, solver=solver, tol=1e-5, random_state=0)
    F = layer.decision_function(X)
    again = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(again.decision_function(X), F)
    path = tmp_path / "layer.npz"
    layer.save(path)
    loaded = dccnn.load(path)
    assert isinstance(loaded, dccnn.ConvexLayer)
    np.testing.assert_array_equal(loaded.decision_function(X), F)
    np.testing.assert_array_equal(loaded.transform(X), layer.transform(X))
    np.testing.assert_array_equal(loaded.predict(X), layer.predict(X))
    assert loaded.gap_ == layer.gap_ and loaded.n_filters_ == layer.n_filters_


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="path"):
        dccnn.load(path)


def _rewrite(src, dst, edit_header=None, **replace_arrays):
    """Copy a saved file, editing its JSON header and replacing some of its arrays."""
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays.pop("__header__")))
    if edit_header:
        edit_header(header)
    arrays.update(replace_arrays)
    np.savez(dst, __header__=np.array(json.dumps(header)), **arrays)
    return dst


def _state(header):
    return dict(header["object"]["state"]["__dict__"])


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_load_refuses_a_pooling_that_would_index_out_of_bounds(tmp_path, backend):
    # the compiled kernels (Numba's unchecked) index memory with the pooling's windows, so a
    # file altered there must fail in load, not crash the interpreter in predict
    X, y = labelled_images(20, 6)
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.2, tol=1e-4,
                            backend=backend, random_state=0)
    saved = tmp_path / "layer.npz"
    layer.save(saved)
    pooling = _state(json.loads(str(np.load(saved)["__header__"])))["pooling_"]
    windows_key = dict(pooling["state"]["__dict__"])["position_window"]["__array__"]
    windows = layer.pooling_.position_window
    for bad in (np.full_like(windows, 10**6), windows[:-1], windows.astype(np.int64),
                np.where(windows == 0, -1, windows)):
        path = _rewrite(saved, tmp_path / "bad.npz", **{windows_key: bad})
        with pytest.raises(ValueError, match="path: .*position_window does not match"):
            dccnn.load(path)

    def shrink_windows(header):
        for kv in _state(header)["pooling_"]["state"]["__dict__"]:
            if kv[0] == "out_shape":
                kv[1] = {"__tuple__": [1, 1]}
    with pytest.raises(ValueError, match="path: .*out_shape does not match"):
        dccnn.load(_rewrite(saved, tmp_path / "bad.npz", edit_header=shrink_windows))
    np.testing.assert_array_equal(dccnn.load(saved).decision_function(X),
                                  layer.decision_function(X))


@pytest.mark.parametrize("features", ["exact", "nystroem"])
def test_load_refuses_arrays_whose_shapes_do_not_fit_together(tmp_path, features):
    """An altered array fails in load, naming it, not later in predict with numpy's message."""
    X, y = labelled_images(20, 6)
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.2, tol=1e-4,
                            features=features, n_components=20, random_state=0)
    saved = tmp_path / "layer.npz"
    layer.save(saved)
    state = _state(json.loads(str(np.load(saved)["__header__"])))
    names = ["linear_weights_"] + (["support_patches_", "support_beta_", "filter_coef_"]
                                   if features == "exact" else ["filters_"])
    for name in names:
        value = getattr(layer, name)
        for bad in (value[:-1], value.reshape(-1), value[..., None]):
            path = _rewrite(saved, tmp_path / "bad.npz", **{state[name]["__array__"]: bad})
            # a support image fewer is reported on the first array read against the others
            with pytest.raises(ValueError, match=f"path: .* damaged .*({'|'.join(names)}): "
                                                 "expected an array of shape"):
                dccnn.load(path)

    def other_images(header):
        for kv in header["object"]["state"]["__dict__"]:
            if kv[0] == "input_shape_":
                kv[1] = {"__tuple__": [1, 9, 9]}
    with pytest.raises(ValueError, match="path: .* damaged .*pooling_: its"):
        dccnn.load(_rewrite(saved, tmp_path / "bad.npz", edit_header=other_images))
    np.testing.assert_array_equal(dccnn.load(saved).decision_function(X),
                                  layer.decision_function(X))


def test_load_names_path_for_files_that_are_not_dccnn_files(tmp_path):
    X, y = labelled_images(20, 6)
    saved = tmp_path / "layer.npz"
    dccnn.fit_layer(X, y, patch_size=3, pool_size=2, gamma=0.2, tol=1e-4).save(saved)
    raw = saved.read_bytes()
    cases = {
        "truncated.npz": raw[: len(raw) // 2],
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "single.npy", np.arange(3))
    np.savez(tmp_path / "not_json.npz", __header__=np.array("not json {"))
    np.savez(tmp_path / "deep.npz", __header__=np.array("[" * 100000 + "]" * 100000))
    for name in [*cases, "single.npy", "not_json.npz", "deep.npz"]:
        with pytest.raises(ValueError, match=f"path: .*{name}.* is not a dccnn file"):
            dccnn.load(tmp_path / name)

    def drop_state(header):
        del header["object"]["state"]

    def only_an_array(header):
        header["object"] = {"__array__": "array_0"}
    with pytest.raises(ValueError, match="path: .* holds a damaged dccnn object"):
        dccnn.load(_rewrite(saved, tmp_path / "bad.npz", edit_header=drop_state))
    with pytest.raises(ValueError, match="path: .* holds a ndarray, not a ConvexLayer"):
        dccnn.load(_rewrite(saved, tmp_path / "bad.npz", edit_header=only_an_array))
    # memory is checked from the arrays' headers, before any is read
    with pytest.raises(MemoryError, match="max_memory: loading"):
        dccnn.load(saved, max_memory=1000)
    assert dccnn.load(saved, max_memory=10**6).n_filters_ >= 1
    with pytest.raises(ValueError, match="max_memory: must be > 0"):
        dccnn.load(saved, max_memory=-1)


def two_layer_network():
    return dccnn.Network([
        dccnn.LayerSpec(patch_size=3, padding=1, kernel="rbf", gamma=0.1, features="nystroem",
                        n_components=40, solver="primal", C=1.0, tol=1e-5, max_filters=4),
        dccnn.LayerSpec(patch_size=3, pool_size=2, kernel="rbf", features="nystroem",
                        n_components=40, solver="primal", C=1.0, tol=1e-5),
    ])


def test_two_layer_network_feeds_each_layer_the_previous_outputs(tmp_path):
    X, y = labelled_images(60, 5)
    net = two_layer_network().fit(X, y, random_state=0)
    first, second = net.layers_
    assert first.n_filters_ <= 4
    H1 = first.transform(X)
    assert H1.shape == (60, first.n_filters_, 6, 6)
    assert second.input_shape_ == H1.shape[1:]
    np.testing.assert_array_equal(net.decision_function(X), second.decision_function(H1))
    np.testing.assert_array_equal(net.predict(X), second.predict(H1))
    assert net.transform(X).shape == (60, second.n_filters_, 2, 2)
    assert np.mean(net.predict(X) == y) > 0.8
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = dccnn.load(path)
    np.testing.assert_array_equal(loaded.decision_function(X), net.decision_function(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(net)).predict(X), net.predict(X))


def test_network_rejects_bad_layers():
    with pytest.raises(ValueError, match="layers"):
        dccnn.Network([])
    with pytest.raises(ValueError, match="layers\\[0\\]"):
        dccnn.Network([{"patch": 3}])
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        dccnn.Network([dccnn.LayerSpec(), 3])
    with pytest.raises(RuntimeError, match="fit"):
        dccnn.Network([dccnn.LayerSpec()]).predict(np.zeros((2, 5, 5)))


def test_nystroem_features_are_pooled_whitened_landmark_kernels():
    """psi_q(x) = mean over window q of K_LL^(-1/2) k_L(z_p(x)) (SPEC §5), from scratch here
    (cdist, eigh); compared through the Gram psi psi^T, which the sign of each eigenvector
    does not change."""
    rng = np.random.default_rng(4)
    X = rng.random((12, 6, 6))
    y = np.arange(12) % 2
    gamma = 0.7
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, kernel="rbf", gamma=gamma,
                            features="nystroem", n_components=30, tol=1e-4, random_state=0)
    L = layer.feature_map_.landmarks_
    evals, evecs = scipy.linalg.eigh(np.exp(-gamma * cdist(L, L, "sqeuclidean")))
    keep = evals > 1e-10 * evals[-1]
    W = evecs[:, keep] / np.sqrt(evals[keep])
    Z = patches_numpy(X, 3)
    phi = np.exp(-gamma * cdist(Z.reshape(-1, 9), L, "sqeuclidean")) @ W
    psi = np.einsum("qp,ipm->iqm", pool_matrix((4, 4), 2), phi.reshape(12, 16, -1))
    got = layer.feature_map_.transform(dccnn.extract_patches(X, 3))
    assert got.shape == psi.shape
    flat, ref = got.reshape(-1, got.shape[2]), psi.reshape(-1, psi.shape[2])
    np.testing.assert_allclose(flat @ flat.T, ref @ ref.T, rtol=1e-9, atol=1e-9)
