"""The dual coordinate descent of the core (csrc/dccnn/dual_cd.cpp) and its Numba twin, against
an independent solve of the same box-constrained problem with scipy's L-BFGS-B:

    minimise 1/2 sum_c ||sum_i s_ic a_ic x_i||^2 + sum_ic h(a_ic)

(h: the loss's part, SPEC §3, with a linear coefficient lin_ic), and against each other."""

import numpy as np
import pytest
import scipy.optimize

from _refs import requires_core

LOSSES = {"squared_hinge": 0, "hinge": 1, "logistic": 2, "squared": 3}


def _backends():
    import dccnn._numba as nb
    mods = [pytest.param(nb, id="numba")]
    try:
        from dccnn import _core
        mods.insert(0, pytest.param(_core, id="cpp"))
    except ImportError:
        pass
    return mods


def _problem(seed, N=30, D=6, K=3, loss="squared_hinge"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    sign = np.where(rng.random((N, K)) < 0.5, -1.0, 1.0) if loss != "squared" else None
    lin = -1.0 + 0.5 * rng.standard_normal((N, K))
    return X, sign, lin


def _objective(X, sign, lin, a, loss, C):
    s = np.ones_like(a) if sign is None else sign
    W = (s * a).T @ X
    value = 0.5 * np.sum(W**2) + np.sum(lin * a)
    grad = s * (X @ W.T) + lin
    if loss in ("squared_hinge", "squared"):
        value += np.sum(a**2 / (4 * C))
        grad = grad + a / (2 * C)
    if loss == "logistic":
        value += np.sum(a * np.log(a) + (C - a) * np.log(C - a))
        grad = grad + np.log(a / (C - a))
    return value, grad


def _reference(X, sign, lin, loss, C):
    """C: a number, or one per row (N, 1)."""
    N, K = lin.shape
    Cu = np.broadcast_to(np.asarray(C, dtype=np.float64), (N, K)).ravel()
    lo, hi = {"squared_hinge": (0, None), "hinge": (0, Cu), "logistic": (1e-12 * Cu, Cu - 1e-12 * Cu),
              "squared": (None, None)}[loss]
    x0 = 0.5 * Cu if loss in ("hinge", "logistic") else np.zeros(N * K)
    box = scipy.optimize.Bounds(-np.inf if lo is None else lo, np.inf if hi is None else hi)

    def f(x):
        v, g = _objective(X, sign, lin, x.reshape(N, K), loss, C)
        return v, g.ravel()

    res = scipy.optimize.minimize(f, x0, jac=True, method="L-BFGS-B", bounds=box,
                                  options={"maxiter": 20000, "ftol": 0.0, "gtol": 1e-11})
    return res.x.reshape(N, K), res.fun


@pytest.mark.parametrize("mod", _backends())
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_linear_cd_reaches_the_optimum_of_an_independent_solve(mod, loss, seed):
    C = 0.7
    X, sign, lin = _problem(seed, loss=loss)
    if loss == "logistic":
        lin = 0.5 * lin  # logistic has no "-1": any shift of the margins is a linear term
    N, K = lin.shape
    alpha = np.zeros((N, K))
    W = np.zeros((K, X.shape[1]))
    epochs, spread, converged = mod.dual_cd_linear(X, sign, lin, alpha, W, LOSSES[loss], C, 1e-10,
                                                   100000, True, 3, 0)
    assert converged and spread <= 1e-10
    _, ref_value = _reference(X, sign, lin, loss, C)
    value, _ = _objective(X, sign, lin, alpha, loss, C)
    assert value == pytest.approx(ref_value, rel=1e-9, abs=1e-9)
    s = np.ones_like(alpha) if sign is None else sign
    np.testing.assert_allclose(W, (s * alpha).T @ X, atol=1e-10)  # W kept equal to its sum


@pytest.mark.parametrize("mod", _backends())
@pytest.mark.parametrize("loss", list(LOSSES))
def test_dense_cd_on_the_rows_gram_reaches_the_same_optimum_and_keeps_its_state(mod, loss):
    C = 2.0
    X, sign, lin = _problem(5, K=3, loss=loss)
    if loss == "logistic":
        lin = 0.5 * lin
    N, K = lin.shape
    gram = np.ascontiguousarray(X @ X.T)
    alpha, G = np.zeros((N, K)), np.zeros((K, N))
    _, _, converged = mod.dual_cd_dense(gram, sign, lin, alpha, G, LOSSES[loss], C, 1e-11,
                                        100000, True, 0, 0)
    assert converged
    _, ref_value = _reference(X, sign, lin, loss, C)
    value, _ = _objective(X, sign, lin, alpha, loss, C)
    assert value == pytest.approx(ref_value, rel=1e-9, abs=1e-9)
    s = np.ones_like(alpha) if sign is None else sign
    np.testing.assert_allclose(G, (gram @ (s * alpha)).T, atol=1e-10)  # G kept equal to its sum


@pytest.mark.parametrize("mod", _backends())
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("operator", ["linear", "dense"])
def test_cd_with_a_C_per_row_reaches_the_optimum_of_an_independent_solve(mod, loss, operator):
    """row_C (sample weights times C) replaces C row by row: box, quadratic and entropy."""
    X, sign, lin = _problem(4, loss=loss)
    if loss == "logistic":
        lin = 0.5 * lin
    N, K = lin.shape
    row_C = np.random.default_rng(9).uniform(0.2, 3.0, N)
    alpha = np.zeros((N, K))
    if operator == "dense":
        gram = np.ascontiguousarray(X @ X.T)
        _, _, converged = mod.dual_cd_dense(gram, sign, lin, alpha, np.zeros((K, N)),
                                            LOSSES[loss], 1.0, 1e-11, 100000, True, 0, 0,
                                            row_C=row_C)
    else:
        _, _, converged = mod.dual_cd_linear(X, sign, lin, alpha, np.zeros((K, X.shape[1])),
                                             LOSSES[loss], 1.0, 1e-11, 100000, True, 0, 0,
                                             row_C=row_C)
    assert converged
    _, ref_value = _reference(X, sign, lin, loss, row_C[:, None])
    value, _ = _objective(X, sign, lin, alpha, loss, row_C[:, None])
    assert value == pytest.approx(ref_value, rel=1e-9, abs=1e-9)
    if loss in ("hinge", "logistic"):
        assert np.all(alpha <= row_C[:, None]) and np.any(alpha > row_C.min())
    with pytest.raises(ValueError, match="row_C"):
        mod.dual_cd_linear(X, sign, lin, np.zeros((N, K)), np.zeros((K, X.shape[1])),
                           LOSSES[loss], 1.0, 1e-3, 10, True, 0, 0, row_C=np.r_[row_C[1:], 0.0])


@requires_core
@pytest.mark.parametrize("operator", ["linear float64", "linear float32", "dense"])
def test_cd_does_not_depend_on_threads_and_starts_warm(operator):
    from dccnn import _core
    X, sign, lin = _problem(2, N=200, D=40, K=5)
    X = X.astype(np.float32 if operator.endswith("float32") else np.float64)
    gram = np.ascontiguousarray(X.astype(np.float64) @ X.T.astype(np.float64))

    def solve(alpha, tol, max_epochs, seed, threads, state=None):
        if operator == "dense":
            state = np.ascontiguousarray((gram @ (sign * alpha)).T)
            return _core.dual_cd_dense(gram, sign, lin, alpha, state, 0, 1.0, tol, max_epochs,
                                       True, seed, threads)
        state = np.ascontiguousarray((sign * alpha).T @ X.astype(np.float64))
        return _core.dual_cd_linear(X, sign, lin, alpha, state, 0, 1.0, tol, max_epochs, True,
                                    seed, threads)

    runs = []
    for threads in (1, 2, 3):
        alpha = np.zeros((200, 5))
        solve(alpha, 1e-3, 50, 7, threads)
        runs.append(alpha)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    # a warm start at the solution of a tighter tolerance stops within two epochs
    alpha = np.zeros((200, 5))
    solve(alpha, 1e-9, 100000, 7, 0)
    epochs, _, converged = solve(alpha, 1e-6, 100000, 8, 0)
    assert converged and epochs <= 2


def _assert_core_and_numba_agree(name, rows, sign, lin, state_shape, loss_kind):
    """The C++ operator ``name`` and its Numba twin, run to 1e-12 from zero, give one alpha."""
    import dccnn._numba as nb
    from dccnn import _core
    out = []
    for mod in (_core, nb):
        alpha, state = np.zeros(lin.shape), np.zeros(state_shape)
        getattr(mod, name)(rows, sign, lin, alpha, state, loss_kind, 1.0, 1e-12, 100000, True,
                           1, 0)
        out.append(alpha)
    np.testing.assert_allclose(out[0], out[1], atol=1e-8)


@requires_core
def test_linear_cd_agrees_with_its_numba_twin_and_rejects_bad_shapes():
    from dccnn import _core
    X, sign, lin = _problem(4, N=50, D=8, K=2)
    _assert_core_and_numba_agree("dual_cd_linear", X, sign, lin, (2, 8), 0)
    with pytest.raises(ValueError, match="W"):
        _core.dual_cd_linear(X, sign, lin, np.zeros((50, 2)), np.zeros((3, 8)), 0, 1.0, 1e-3,
                             10, True, 0, 0)
    with pytest.raises(ValueError, match="sign"):
        _core.dual_cd_linear(X, sign[:, :1], lin, np.zeros((50, 2)), np.zeros((2, 8)), 0, 1.0,
                             1e-3, 10, True, 0, 0)
    with pytest.raises(ValueError, match="C"):
        _core.dual_cd_linear(X, sign, lin, np.zeros((50, 2)), np.zeros((2, 8)), 0, -1.0, 1e-3,
                             10, True, 0, 0)


@requires_core
def test_dense_cd_agrees_with_its_numba_twin_and_rejects_bad_shapes():
    from dccnn import _core
    X, sign, lin = _problem(6, N=50, D=8, K=2)
    gram = np.ascontiguousarray(X @ X.T)
    _assert_core_and_numba_agree("dual_cd_dense", gram, sign, lin, (2, 50), 1)
    with pytest.raises(ValueError, match="G"):
        _core.dual_cd_dense(gram, sign, lin, np.zeros((50, 2)), np.zeros((2, 49)), 0, 1.0, 1e-3,
                            10, True, 0, 0)
    with pytest.raises(ValueError, match="gram"):
        _core.dual_cd_dense(gram[:, :49].copy(), sign, lin, np.zeros((50, 2)), np.zeros((2, 50)),
                            0, 1.0, 1e-3, 10, True, 0, 0)
    with pytest.raises(ValueError, match="sign"):
        _core.dual_cd_dense(gram, sign[:, :1], lin, np.zeros((50, 2)), np.zeros((2, 50)), 0, 1.0,
                            1e-3, 10, True, 0, 0)
