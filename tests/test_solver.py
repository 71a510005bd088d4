"""fit_layer against an independent conic solver (cvxpy), with the dual objective recomputed
here from alpha_ and the patches, plus back-end / solver agreement, warm starts and errors."""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import dccnn

cp = pytest.importorskip("cvxpy")


def patches_numpy(X, s):
    """(n, H, W) -> (n, P, s*s) by explicit slicing (independent of dccnn)."""
    n, H, W = X.shape
    out = [X[:, y:y + s, x:x + s].reshape(n, -1) for y in range(H - s + 1) for x in range(W - s + 1)]
    return np.stack(out, axis=1)


def pooled(Zp, grid, pool):
    """psi_q(x) = mean of the patches in window q (valid pooling, stride = size)."""
    n, P, d = Zp.shape
    Hp, Wp = grid
    if pool is None:
        return Zp
    Z4 = Zp.reshape(n, Hp, Wp, d)
    out = []
    for qy in range((Hp - pool) // pool + 1):
        for qx in range((Wp - pool) // pool + 1):
            out.append(Z4[:, qy * pool:(qy + 1) * pool, qx * pool:(qx + 1) * pool].mean(axis=(1, 2)))
    return np.stack(out, axis=1)


def one_vs_rest(y):
    classes = np.unique(y)
    if classes.size == 2:
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    return np.where(y[:, None] == classes[None, :], 1.0, -1.0)


def dual_value(alpha, Y, psi, loss, C, mu):
    """D(alpha_hat) from SPEC §3, computed from scratch."""
    n, Q, m = psi.shape
    K = Y.shape[1]
    beta = alpha if loss == "squared" else alpha * Y
    G = np.einsum("iqm,ic->mqc", psi, beta).reshape(m, Q * K)
    sig = np.linalg.svd(G, compute_uv=False)

    def L(a):
        if loss == "squared_hinge":
            return a.sum() - (a**2).sum() / (4 * C)
        if loss == "hinge":
            return a.sum()
        if loss == "squared":
            return (a * Y).sum() - (a**2).sum() / (4 * C)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = np.where(a > 0, a * np.log(a), 0) + np.where(C - a > 0, (C - a) * np.log(C - a), 0)
        return -ent.sum() + a.size * C * np.log(C)

    assert np.all(alpha >= -1e-12) or loss == "squared"
    if loss in ("hinge", "logistic"):
        assert np.all(alpha <= C + 1e-12)
    if mu == 0:
        return L(alpha / max(1.0, sig.max()))
    return L(alpha) - (np.maximum(sig - 1, 0) ** 2).sum() / (2 * mu)


def cvxpy_optimum(psi, Y, loss, C, mu):
    n, Q, m = psi.shape
    K = Y.shape[1]
    A = cp.Variable((m, Q * K))
    F = sum(psi[:, q, :] @ A[:, q * K:(q + 1) * K] for q in range(Q))
    if loss == "squared_hinge":
        data = cp.sum(cp.pos(1 - cp.multiply(Y, F)) ** 2)
    elif loss == "hinge":
        data = cp.sum(cp.pos(1 - cp.multiply(Y, F)))
    elif loss == "logistic":
        data = cp.sum(cp.logistic(-cp.multiply(Y, F)))
    else:
        data = cp.sum_squares(F - Y)
    obj = cp.normNuc(A) + (mu / 2) * cp.sum_squares(A) + C * data
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return prob.value


# 24 problems: every loss, mu = 0 and mu > 0, K = 1..3, pooling on and off.
CASES = [
    (loss, mu, K, pool, seed)
    for seed, (loss, mu, K, pool) in enumerate(
        [(l, mu, K, pool) for l in ("squared_hinge", "hinge", "logistic", "squared")
         for mu, K, pool in ((0.0, 1, 2), (0.0, 3, None), (0.0, 2, 2), (0.3, 2, None),
                             (0.3, 3, 2), (1.0, 1, None))])
]


def make_problem(loss, K, seed, n=36, side=5):
    rng = np.random.default_rng(seed)
    X = rng.random((n, side, side))
    if loss == "squared":
        y = rng.normal(size=(n, K)) if K > 1 else rng.normal(size=n)
    else:
        classes = 2 if K == 1 else K
        y = rng.integers(0, classes, n)
        y[:classes] = np.arange(classes)
    return X, y


@pytest.mark.parametrize("loss,mu,K,pool,seed", CASES)
def test_matches_cvxpy(loss, mu, K, pool, seed):
    X, y = make_problem(loss, K, seed)
    C = 0.5
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=pool, kernel="linear", C=C, mu=mu,
                            loss=loss, features="exact", tol=1e-7, max_iter=5000,
                            random_state=seed)
    psi = pooled(patches_numpy(X, 3), (3, 3), pool)
    Y = y.reshape(len(y), -1) if loss == "squared" else one_vs_rest(y)
    ref = cvxpy_optimum(psi, Y, loss, C, mu)
    assert layer.gap_ <= 1e-7
    assert abs(layer.primal_objective_ - ref) <= 1e-5 * abs(ref)
    D = dual_value(layer.alpha_, Y, psi, loss, C, mu)
    assert abs(D - ref) <= 1e-5 * abs(ref)
    assert D <= ref * (1 + 1e-9) + 1e-9  # weak duality, checked independently
    assert abs(D - layer.dual_objective_) <= 1e-8 * abs(ref)


@pytest.mark.parametrize("loss", ["hinge", "logistic"])
def test_dual_solver_converges_when_C_is_below_its_inner_tolerance(loss):
    """L-BFGS-B's projected gradient is at most the box width C: with C = 0.05 an absolute
    inner tolerance of 0.1 stopped every inner solve at once (gap 0.85 / 0.40 for ever)."""
    X, y = make_problem(loss, 2, 3)
    X = 20 * X  # large features: A = 0 is far from optimal even at this small C
    C = 0.05
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, kernel="linear", C=C, loss=loss,
                            features="exact", solver="dual", tol=1e-6, max_iter=200)
    psi = pooled(patches_numpy(X, 3), (3, 3), 2)
    ref = cvxpy_optimum(psi, one_vs_rest(y), loss, C, 0.0)
    assert layer.solver_gap_ <= 1e-6
    assert abs(layer.primal_objective_ - ref) <= 1e-5 * abs(ref)
    trivial = C * len(y) * (np.log(2) if loss == "logistic" else 1.0)  # P(0), one output
    assert ref < trivial - 1e-3


@pytest.mark.parametrize("features,loss,after", [("exact", "hinge", "dual"),
                                                ("nystroem", "squared_hinge", "factored")])
def test_auto_hands_a_stalled_admm_over_to_another_solver(features, loss, after):
    """ADMM's iterations grow with C ||psi||^2: on inputs scaled 20x it stalls near 6e-4, so
    solver="auto" hands its points to the ALM dual (or the factored primal) after
    HANDOVER_ITER iterations."""
    X, y = make_problem(loss, 2, 3)
    X = 20 * X
    common = dict(patch_size=3, pool_size=2, kernel="linear", C=1.0, loss=loss,
                  features=features, solver="auto", tol=1e-6)
    layer = dccnn.fit_layer(X, y, **common)
    assert layer.solver == f"admm, then {after}"
    assert layer.solver_gap_ <= 1e-6 and layer.gap_ <= 1e-6
    psi = pooled(patches_numpy(X, 3), (3, 3), 2)
    ref = cvxpy_optimum(psi, one_vs_rest(y), loss, 1.0, 0.0)
    assert abs(layer.primal_objective_ - ref) <= 1e-5 * abs(ref)
    # at unit scale ADMM finishes alone
    assert dccnn.fit_layer(X / 20, y, **common).solver == "admm"


def test_exact_and_nystroem_agree_with_all_patches_as_landmarks():
    rng = np.random.default_rng(3)
    X = rng.random((25, 5, 5))
    y = rng.integers(0, 3, 25)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.5, C=0.5, tol=1e-8,
                  max_iter=5000, random_state=0)
    exact = dccnn.fit_layer(X, y, features="exact", **common)
    nys = dccnn.fit_layer(X, y, features="nystroem", n_components=25 * 9, **common)
    assert nys.feature_map_.landmarks_.shape[0] == 25 * 9
    assert abs(exact.primal_objective_ - nys.primal_objective_) <= 1e-6 * exact.primal_objective_
    np.testing.assert_allclose(exact.decision_function(X), nys.decision_function(X), atol=1e-4)


@pytest.mark.parametrize("solver", ["primal", "factored", "admm"])
@pytest.mark.parametrize("loss,mu", [("squared_hinge", 0.0), ("logistic", 0.0), ("squared", 0.2)])
def test_dual_and_primal_solvers_agree(loss, mu, solver):
    X, y = make_problem(loss, 2, 11)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.3, C=1.0, mu=mu, loss=loss,
                  features="random_fourier", n_components=40, random_state=5, tol=1e-7,
                  max_iter=20000)
    dual = dccnn.fit_layer(X, y, solver="dual", **common)
    primal = dccnn.fit_layer(X, y, solver=solver, **common)
    assert dual.gap_ <= 1e-7 and primal.gap_ <= 1e-7
    assert abs(dual.primal_objective_ - primal.primal_objective_) <= 2e-7 * primal.primal_objective_
    np.testing.assert_allclose(dual.decision_function(X), primal.decision_function(X), atol=2e-3)


def assert_certificate_recomputes(psi, A, alpha, Y, lossobj, mu, cert, rel):
    """P(A) and D(alpha_hat) of a solver's certificate, recomputed from the explicit A (m, T),
    alpha and the features psi (n, Q, m); the certificate's gap at most 1e-5."""
    from dccnn.certificate import dual_objective, primal_objective
    n, Q, m = psi.shape
    F = np.einsum("iqm,mqc->ic", psi, A.reshape(m, Q, -1))
    primal = primal_objective(np.linalg.svd(A, compute_uv=False) ** 2, F, Y, lossobj, mu)
    beta = alpha * Y if lossobj.margin else alpha
    G = np.einsum("iqm,ic->mqc", psi, beta).reshape(m, -1)
    dual_value, scale = dual_objective(alpha, Y, np.linalg.svd(G, compute_uv=False) ** 2, lossobj,
                                       mu)
    assert primal == pytest.approx(cert.primal, rel=rel)
    assert dual_value == pytest.approx(cert.dual, rel=rel)
    assert scale == pytest.approx(cert.dual_scale, rel=1e-12)
    assert cert.gap <= 1e-5


@pytest.mark.parametrize("loss,mu", [("hinge", 0.0), ("hinge", 0.1), ("squared_hinge", 0.0)])
def test_admm_agrees_with_the_dual_solver_for_every_loss_and_certifies_its_points(loss, mu):
    """The ADMM's inner coordinate descent handles the hinge loss, which the primal solvers do
    not; its certificate is recomputed here from the returned A and alpha."""
    from dccnn.features import ExplicitFeatures
    from dccnn.losses import get_loss
    from dccnn.solvers.admm import admm
    X, y = make_problem(loss, 3, 4)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.3, C=1.0, mu=mu, loss=loss,
                  features="random_fourier", n_components=30, random_state=2, tol=1e-6,
                  max_iter=20000)
    dual = dccnn.fit_layer(X, y, solver="dual", **common)
    layer = dccnn.fit_layer(X, y, solver="admm", **common)
    assert dual.gap_ <= 1e-6 and layer.gap_ <= 1e-6
    assert abs(dual.primal_objective_ - layer.primal_objective_) <= 2e-6 * dual.primal_objective_

    psi = layer.feature_map_.transform(patches_numpy(X, 3)).astype(np.float64)
    lossobj = get_loss(loss, 1.0)
    Y = np.where(y[:, None] == np.unique(y)[None, :], 1.0, -1.0)
    Y = Y[:, 1:] if Y.shape[1] == 2 else Y
    A, alpha, cert, _, _ = admm(ExplicitFeatures(psi), Y, lossobj, mu, tol=1e-5, random_state=0)
    assert_certificate_recomputes(psi, A, alpha, Y, lossobj, mu, cert, rel=1e-10)


@pytest.mark.parametrize("loss,mu,K", [("squared_hinge", 0.0, 3), ("hinge", 0.0, 2),
                                       ("logistic", 0.1, 1), ("squared", 0.0, 2)])
def test_admm_on_the_exact_back_end_agrees_with_the_dual_and_certifies_its_points(loss, mu, K):
    """ADMM's iterates on the exact back-end are kernel expansions carrying their inner
    products with the training features; with the linear kernel the test turns the returned A
    into an explicit matrix and recomputes the certificate from it and from alpha."""
    from dccnn.features import exact_features
    from dccnn.kernels import resolve_kernel
    from dccnn.losses import get_loss
    from dccnn.pooling import make_pooling
    from dccnn.solvers.admm import admm
    X, y = make_problem(loss, K, 8)
    common = dict(patch_size=3, pool_size=2, kernel="linear", C=0.5, mu=mu, loss=loss,
                  features="exact", tol=1e-6, max_iter=20000, random_state=1)
    dual = dccnn.fit_layer(X, y, solver="dual", **common)
    layer = dccnn.fit_layer(X, y, solver="admm", **common)
    assert dual.gap_ <= 1e-6 and layer.gap_ <= 1e-6
    assert abs(dual.primal_objective_ - layer.primal_objective_) <= 2e-6 * dual.primal_objective_
    np.testing.assert_allclose(layer.decision_function(X), dual.decision_function(X), atol=2e-3)

    Z = patches_numpy(X, 3)
    psi = pooled(Z, (3, 3), 2)  # (n, Q, d): the linear kernel's features
    lossobj = get_loss(loss, 0.5)
    Y = y.reshape(len(y), -1) if loss == "squared" else one_vs_rest(y)
    feats = exact_features(Z, make_pooling((3, 3), 2, None), resolve_kernel("linear", 9))
    A, alpha, cert, _, _ = admm(feats, Y, lossobj, mu, tol=1e-5, random_state=0)
    n, Q, d = psi.shape
    A_explicit = psi.reshape(n * Q, d).T @ A.coef  # (d, T)
    assert_certificate_recomputes(psi, A_explicit, alpha, Y, lossobj, mu, cert, rel=1e-9)


def test_decision_function_of_explicit_layer_is_psi_times_A():
    X, y = make_problem("squared_hinge", 3, 2)
    layer = dccnn.fit_layer(X, y, patch_size=3, pool_size=2, kernel="linear",
                            features="nystroem", tol=1e-7, random_state=0)
    psi = pooled(patches_numpy(X, 3), (3, 3), 2)
    K = 3
    F = sum(psi[:, q, :] @ layer.A_[:, q * K:(q + 1) * K] for q in range(psi.shape[1]))
    np.testing.assert_allclose(layer.decision_function(X), F, rtol=1e-10, atol=1e-10)


def test_warm_start_along_a_path_of_C():
    X, y = make_problem("squared_hinge", 3, 4)
    common = dict(patch_size=3, pool_size=2, kernel="linear", tol=1e-7, random_state=0)
    first = dccnn.fit_layer(X, y, C=0.5, **common)
    cold = dccnn.fit_layer(X, y, C=0.6, **common)
    warm = dccnn.fit_layer(X, y, C=0.6, warm_start=first, **common)
    assert warm.gap_ <= 1e-7 and cold.gap_ <= 1e-7
    assert abs(warm.primal_objective_ - cold.primal_objective_) <= 1e-6 * cold.primal_objective_
    # the work is the inner evaluations (dual operators); the outer iterations are few either way
    assert warm.inner_epochs_ < 0.9 * cold.inner_epochs_ and warm.n_iter_ <= cold.n_iter_


@pytest.mark.parametrize("features", ["exact", "random_fourier"])
def test_admm_warm_start_along_a_path_of_C(features):
    """ADMM starts from the previous layer's A (the explicit matrix, or on the exact back-end
    the expansion G(beta) F W of the recovered network) and dual point alpha (its multiplier
    U = G(alpha) / rho). At the same C that is a solution; along the path it starts 10x closer
    but, ADMM's tail being linear, does not end much sooner (bench/README.md)."""
    X, y = make_problem("squared_hinge", 3, 4)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.3, features=features,
                  n_components=30, solver="admm", tol=1e-6, random_state=0)
    first = dccnn.fit_layer(X, y, C=0.5, **common)
    again = dccnn.fit_layer(X, y, C=0.5, warm_start=first, **common)
    assert again.n_iter_ == 1 and again.gap_ <= 1e-6
    cold = dccnn.fit_layer(X, y, C=0.6, **common)
    warm = dccnn.fit_layer(X, y, C=0.6, warm_start=first, **common)
    assert warm.gap_ <= 1e-6 and cold.gap_ <= 1e-6
    assert abs(warm.primal_objective_ - cold.primal_objective_) <= 2e-6 * cold.primal_objective_
    assert warm.history_[0][1] < 0.1 * cold.history_[0][1]


def test_smoothed_dual_warm_start_at_its_own_solution_stops_at_once():
    """mu > 0: the smoothed dual's solution lies outside M(alpha) <= I, where the default start
    is scaled; a warm start is kept as it is, so at the same C it is already optimal."""
    X, y = make_problem("squared_hinge", 3, 4)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.3, features="exact",
                  solver="dual", mu=0.1, C=0.5, tol=1e-6, random_state=0)
    first = dccnn.fit_layer(X, y, **common)
    again = dccnn.fit_layer(X, y, warm_start=first, **common)
    assert first.n_iter_ > 5 and again.n_iter_ == 1 and again.gap_ <= 1e-6


@pytest.mark.parametrize("solver", ["admm", "factored", "primal"])
def test_warm_start_from_another_feature_map_starts_from_its_dual_point(solver):
    """A layer fitted with 20 Nystroem components warm-starts a fit with 30: its A (20 x T)
    cannot start this fit's primal (once a crash deep in the solver), so the solver starts
    from its dual point alone and reaches the cold fit's optimum."""
    X, y = make_problem("squared_hinge", 3, 4)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.3, features="nystroem",
                  solver=solver, C=0.5, tol=1e-6, random_state=0)
    first = dccnn.fit_layer(X, y, n_components=20, **common)
    cold = dccnn.fit_layer(X, y, n_components=30, **common)
    warm = dccnn.fit_layer(X, y, n_components=30, warm_start=first, **common)
    assert first.A_.shape[0] == 20 and warm.A_.shape == cold.A_.shape
    assert warm.gap_ <= 1e-6 and cold.gap_ <= 1e-6
    assert abs(warm.primal_objective_ - cold.primal_objective_) <= 2e-6 * cold.primal_objective_


@pytest.mark.parametrize("features,solver", [("exact", "dual"), ("exact", "admm"),
                                             ("nystroem", "dual")])
def test_warm_start_from_other_data_is_rejected_naming_it(features, solver):
    X, y = make_problem("squared_hinge", 3, 4)
    common = dict(patch_size=3, pool_size=2, kernel="rbf", gamma=0.3, features=features,
                  n_components=20, solver=solver, C=0.5, tol=1e-4, random_state=0)
    first = dccnn.fit_layer(X[:30], y[:30], **common)
    with pytest.raises(ValueError, match="warm_start: the layer was fitted on 30 images with "
                                         "3 outputs; this fit has 36 images and 3 outputs"):
        dccnn.fit_layer(X, y, warm_start=first, **common)
    two = np.where(y == 0, 0, 1)  # two classes: one output
    with pytest.raises(ValueError, match="this fit has 30 images and 1 outputs"):
        dccnn.fit_layer(X[:30], two[:30], warm_start=first, **common)
    with pytest.raises(TypeError, match="warm_start: expected a fitted ConvexLayer"):
        dccnn.fit_layer(X, y, warm_start=first.alpha_, **common)


def test_max_iter_warns_with_the_gap():
    X, y = make_problem("squared_hinge", 3, 5)
    with pytest.warns(ConvergenceWarning, match="duality gap"):
        layer = dccnn.fit_layer(X, y, patch_size=3, kernel="linear", max_iter=2, tol=1e-12)
    assert layer.gap_ > 1e-12 and np.isfinite(layer.gap_)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(C=0.0), ValueError, "C"),
    (dict(C=-1.0), ValueError, "C"),
    (dict(mu=-0.1), ValueError, "mu"),
    (dict(loss="huber"), ValueError, "loss"),
    (dict(kernel="sigmoid"), ValueError, "kernel"),
    (dict(features="svd"), ValueError, "features"),
    (dict(solver="newton"), ValueError, "solver"),
    (dict(solver="primal"), ValueError, "solver"),
    (dict(features="random_fourier", kernel="linear"), ValueError, "features"),
    (dict(features="nystroem", solver="primal", loss="hinge"), ValueError, "solver"),
    (dict(tol=0.0), ValueError, "tol"),
    (dict(backend="fortran"), ValueError, "backend"),
    # numpy's own messages before, or (0) silently the default
    (dict(features="nystroem", n_components=-5), ValueError, "n_components"),
    (dict(features="nystroem", n_components=0), ValueError, "n_components"),
    (dict(features="nystroem", n_components=2.5), TypeError, "n_components"),
    (dict(random_state="a"), TypeError, "random_state"),
    (dict(random_state=-1), ValueError, "random_state"),
    (dict(callback=5), TypeError, "callback"),
])
def test_bad_parameters(kwargs, exc, match):
    X, y = make_problem("squared_hinge", 3, 6, n=12)
    with pytest.raises(exc, match=match):
        dccnn.fit_layer(X, y, patch_size=3, **kwargs)


def test_a_legacy_random_state_seeds_the_fit():
    # scikit-learn's convention: a RandomState draws the seed, so equal states give equal fits
    X, y = make_problem("squared_hinge", 3, 6, n=12)
    fits = [dccnn.fit_layer(X, y, patch_size=3, features="nystroem", n_components=10,
                            solver="admm", tol=1e-3, random_state=np.random.RandomState(4))
            for _ in range(2)]
    np.testing.assert_array_equal(fits[0].decision_function(X), fits[1].decision_function(X))


def test_bad_targets():
    X, y = make_problem("squared_hinge", 3, 7, n=12)
    with pytest.raises(ValueError, match="y"):
        dccnn.fit_layer(X, y[:-1], patch_size=3)
    with pytest.raises(ValueError, match="y"):
        dccnn.fit_layer(X, np.zeros(12, dtype=int), patch_size=3)
    with pytest.raises(ValueError, match="y"):
        dccnn.fit_layer(X, y[:, None, None], patch_size=3)
    with pytest.raises(ValueError, match="y"):
        dccnn.fit_layer(X, np.full((12, 2), 0.5), patch_size=3)  # 2-d margin targets must be +-1
    with pytest.raises(ValueError, match="y"):
        dccnn.fit_layer(X, np.r_[np.nan, np.ones(11)], patch_size=3, loss="squared")
    Xbad = X.copy()
    Xbad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="X"):
        dccnn.fit_layer(Xbad, y, patch_size=3)


@pytest.mark.parametrize("K", [1, 3])
def test_dual_operators_of_both_back_ends_match_explicit_loops(K):
    # M(beta) = G^T G and the scores of A = G(beta) S, written out with loops over the
    # definitions (SPEC §2), against the explicit back-end (through G) and the exact back-end
    # on the Gram blocks of the same features (through cross)
    from dccnn.features import ExactFeatures, ExplicitFeatures

    rng = np.random.default_rng(K)
    n, Q, m = 7, 3, 5
    T = Q * K
    psi = rng.standard_normal((n, Q, m))
    beta = rng.standard_normal((n, K))
    S = rng.standard_normal((T, T))
    G = np.zeros((m, T))
    for q in range(Q):
        for c in range(K):
            G[:, q * K + c] = sum(beta[i, c] * psi[i, q] for i in range(n))
    A = G @ S
    scores = np.array([[sum(A[:, q * K + c] @ psi[i, q] for q in range(Q)) for c in range(K)]
                       for i in range(n)])
    blocks = np.einsum("iqm,jrm->ijqr", psi, psi)
    for feats in (ExplicitFeatures(psi), ExactFeatures(blocks)):
        op = feats.dual_operator(beta)
        np.testing.assert_allclose(op.M, G.T @ G, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(op.scores(S), scores, rtol=1e-12, atol=1e-12)


def test_float32_images_reach_the_float64_certificate_on_the_exact_back_end():
    # digits / 16 is exact in float32, so both dtypes pose the same problem; the blocks are
    # float64 for both (float32 sums of n terms once stalled the solver near a gap of 1e-4)
    from sklearn.datasets import load_digits
    digits = load_digits()
    X, y = digits.images[:60] / 16.0, digits.target[:60] % 3
    common = dict(patch_size=3, pool_size=2, C=1.0, features="exact", solver="dual", tol=1e-6,
                  random_state=0)
    l64 = dccnn.fit_layer(X, y, **common)
    l32 = dccnn.fit_layer(X.astype(np.float32), y, **common)
    assert l32.solver_gap_ <= 1e-6 and l64.solver_gap_ <= 1e-6
    assert l32.primal_objective_ == pytest.approx(l64.primal_objective_, rel=1e-12)


@pytest.mark.parametrize("loss,mu", [("squared_hinge", 0.0), ("squared", 0.2)])
def test_factored_certificates_match_a_fresh_certificate_of_the_returned_A(loss, mu):
    """The factored solver certifies its iterates from the scores and G of its last
    evaluation; the certificate it returns must be that of its A and alpha, recomputed here
    from the explicit features (P from scratch, D with dual_value)."""
    from dccnn.features import ExplicitFeatures
    from dccnn.losses import get_loss
    from dccnn.solvers.factored import factored_primal

    rng = np.random.default_rng(3)
    n, Q, m, K = 80, 4, 12, 2
    psi = rng.standard_normal((n, Q, m))
    Y = np.where(rng.random((n, K)) < 0.5, -1.0, 1.0)
    if loss == "squared":
        Y = Y + 0.1 * rng.standard_normal((n, K))
    C = 0.7
    A, alpha, cert, n_iter, _ = factored_primal(ExplicitFeatures(psi), Y, get_loss(loss, C), mu,
                                                tol=1e-6, max_iter=3000, random_state=0)
    F = np.einsum("iqm,mqc->ic", psi, A.reshape(m, Q, K))
    residual = (F - Y) if loss == "squared" else np.maximum(0.0, 1.0 - Y * F)
    primal = (np.linalg.svd(A, compute_uv=False).sum() + 0.5 * mu * (A**2).sum()
              + C * (residual**2).sum())
    assert n_iter > 10 and cert.gap <= 1e-6
    assert abs(cert.primal - primal) <= 1e-10 * primal
    assert abs(cert.dual - dual_value(alpha, Y, psi, loss, C, mu)) <= 1e-10 * primal


@pytest.mark.parametrize("shape", [(7, 5), (0, 12), (3, 0), (40, 9)])
def test_admm_linear_combination_of_iterates(shape):
    """ADMM's one-pass sums c1 E1 + c2 E2 + c3 E3 (BLAS axpys into one copy) against numpy's
    expression, for explicit iterates (arrays, m = 0 included) and kernel expansions, with a
    non-contiguous and a float32 term."""
    from dccnn.solvers.admm_spaces import KernelExpansion, KernelSpace, linear_combination

    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    y = np.asfortranarray(rng.standard_normal(shape))
    z = rng.standard_normal(shape).astype(np.float32)
    got = linear_combination((1.5, x), (-0.25, y), (2.0, z))
    assert got.dtype == np.float64 and got.shape == shape
    np.testing.assert_allclose(got, 1.5 * x - 0.25 * y + 2.0 * z.astype(np.float64),
                               rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(linear_combination((3.0, x)), 3.0 * x)
    E = [KernelExpansion(rng.standard_normal(shape), rng.standard_normal(shape))
         for _ in range(3)]
    C = KernelSpace.combine((1.0, E[0]), (0.5, E[1]), (-2.0, E[2]))
    np.testing.assert_allclose(C.coef, E[0].coef + 0.5 * E[1].coef - 2.0 * E[2].coef,
                               rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(C.img, E[0].img + 0.5 * E[1].img - 2.0 * E[2].img,
                               rtol=1e-15, atol=1e-15)
