"""The exact back-end under a memory budget: the kernel blocks of the images that fit are kept,
the others are evaluated again on each pass of the solver. The products the solvers use and
whole fits must be those of all blocks kept."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import dccnn
from dccnn.features import exact_features
from dccnn.kernels import resolve_kernel
from dccnn.pooling import make_pooling

N, SIZE, PATCH, POOL = 24, 7, 3, 2
GRID = (SIZE - PATCH + 1,) * 2


def blocks_by_loop(Z, gamma):
    """K_ij[q, q'] = mean over p in S_q, p' in S_q' of exp(-gamma |z_ip - z_jp'|^2), with the
    2x2 windows (stride 2) of the 5x5 position grid written out here."""
    windows = [[(y * GRID[1] + x) for y in range(2 * a, 2 * a + 2) for x in range(2 * b, 2 * b + 2)]
               for a in range(2) for b in range(2)]
    n, Q = Z.shape[0], len(windows)
    out = np.empty((n, n, Q, Q))
    for i in range(n):
        for j in range(n):
            k = np.exp(-gamma * cdist(Z[i], Z[j], "sqeuclidean"))
            for q, Sq in enumerate(windows):
                for r, Sr in enumerate(windows):
                    out[i, j, q, r] = k[np.ix_(Sq, Sr)].mean()
    return out


@pytest.fixture(scope="module")
def patches():
    X = np.random.default_rng(0).standard_normal((N, SIZE, SIZE))
    return dccnn.extract_patches(X, PATCH)


# budget in rows of blocks -> rows kept, rows per batch evaluated again: a batch takes a
# quarter of the budget (at least one row), the kept rows the rest, unless all rows fit
@pytest.mark.parametrize("budget_rows,n_kept,batch_rows", [
    (1, 0, 1), (4, 3, 1), (8, 6, 2), (N - 1, 18, 5), (N, N, None)])
def test_rows_kept_under_a_budget_give_the_products_of_all_blocks(patches, budget_rows, n_kept,
                                                                  batch_rows):
    Z = patches
    pooling = make_pooling(GRID, POOL, None)
    Q = pooling.n_windows
    feats = exact_features(Z, pooling, resolve_kernel("rbf", Z.shape[2], gamma=0.1),
                           max_memory=budget_rows * N * Q * Q * 8)
    assert (feats.n_kept, feats.batch_rows) == (n_kept, batch_rows)
    ref = blocks_by_loop(Z, 0.1)
    beta = np.random.default_rng(1).standard_normal((N, 3))
    H = feats.cross(beta)
    # H[j, q, r*K + c] = sum_i beta[i, c] K_ji[q, r]
    H_ref = np.einsum("ic,jiqr->jqrc", beta, ref).reshape(N, Q, Q * 3)
    np.testing.assert_allclose(H, H_ref, rtol=1e-12, atol=1e-12)
    # a pass evaluates the pairs among the images not kept, in batches of rows against the
    # images from the batch on (the rest are transposes)
    per_pass = sum(min(batch_rows, N - s) * (N - s) for s in range(n_kept, N, batch_rows or 1))
    assert feats.pairs_evaluated == per_pass
    np.testing.assert_allclose(feats.trace_gram(), np.trace(ref, axis1=2, axis2=3),
                               rtol=1e-12, atol=1e-12)
    assert feats.pairs_evaluated == 2 * per_pass


@pytest.mark.parametrize("solver", ["admm", "dual"])
def test_a_fit_that_keeps_few_blocks_matches_the_fit_that_keeps_all(patches, solver, capsys):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((N, SIZE, SIZE))
    y = np.where(X[:, 2:5, 2:5].sum(axis=(1, 2)) > 0, 1, -1)
    spec = dict(patch_size=PATCH, pool_size=POOL, gamma=0.1, C=1.0, features="exact",
                solver=solver, tol=1e-7, random_state=0)
    full = dccnn.fit_layer(X, y, **spec)
    # blocks: 24^2 * 4^2 * 8 bytes = 72 KiB; ADMM's expansions and trace Gram (20 arrays of
    # 24 * 4 * 4 numbers, 24^2 numbers): 64.5 KiB; one row of blocks: 3 KiB
    budget = 68 * 2**10
    with pytest.warns(UserWarning, match="blocks of 17 of 24 images are kept") as record:
        part = dccnn.fit_layer(X, y, max_memory=budget, verbose=1, **spec)
    # the ALM's warning says what ADMM would need: 20 * 24 * 4 * 4 + 24^2 numbers, 0.06 MiB
    assert ("whose kernel expansions need 0.1 MiB" in str(record[0].message)) == (solver == "dual")
    out = capsys.readouterr().out
    assert "blocks of 17 of 24 images kept" in out
    assert full.gap_ <= 1e-7 and part.gap_ <= 1e-7
    # both certified within 1e-7 of the same optimum
    assert part.primal_objective_ == pytest.approx(full.primal_objective_, rel=2e-7)
    assert part.n_filters_ == full.n_filters_
    if solver == "admm":
        # its path is the same up to rounding, so is its point
        assert part.n_iter_ == full.n_iter_
        np.testing.assert_allclose(part.alpha_, full.alpha_, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(part.decision_function(X), full.decision_function(X),
                                   rtol=1e-7, atol=1e-9)
    else:
        # rounding may move the ALM's stop by one outer iteration
        np.testing.assert_allclose(part.decision_function(X), full.decision_function(X),
                                   atol=1e-3)


def test_a_budget_below_one_row_of_blocks_is_refused(patches):
    X = np.random.default_rng(3).standard_normal((N, SIZE, SIZE))
    y = np.arange(N) % 2
    # no pooling: one image's row of blocks is 24 * 25^2 * 8 bytes = 117 KiB, over the budget,
    # while its patches (24 * 25 * 9 * 8 bytes = 42 KiB) fit
    with pytest.raises(MemoryError, match="max_memory: one batch of kernel block rows"):
        dccnn.fit_layer(X, y, patch_size=PATCH, features="exact", solver="dual",
                        max_memory=100 * 2**10)
