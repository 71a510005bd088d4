"""The exact back-end under a memory budget: the upper triangle of the kernel blocks, by batches of
rows, as much of it as fits held and the rest evaluated again on each pass of the solver. The
products the solvers use and whole fits must be those of all blocks held."""

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import dccnn
from dccnn import features
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


# budget in rows of blocks (N blocks each) -> rows per batch (N / TRIANGLE_BATCHES rounded up,
# at most a quarter of the budget, at least one row), leading batches of the upper triangle
# held: batch [s, s + m) holds m (N - s) blocks, and the held ones must leave room for the next
# batch, evaluated on each pass. E.g. one row per batch, 12 rows = 288 blocks: rows 0-17 hold
# 24 + 23 + ... + 7 = 279 blocks, beside which the next (6) fits, while a 19th would leave
# 285 + 5 > 288; 13 rows hold the whole triangle (300), which 13 full rows could not. With 4
# batches at least (batches of up to 6 rows), 13 rows and batches of 3: 72 + 63 + 54 + 45 +
# 36 = 270 held, the next (27) fits beside them, a sixth would leave 315 + 18 > 312; 14 rows
# hold the triangle (324 with the blocks among a batch's own rows twice). N rows hold all.
@pytest.mark.parametrize("budget_rows,min_batches,batch_rows,n_cached", [
    (1, 32, 1, 0), (4, 32, 1, 3), (8, 32, 1, 8), (12, 32, 1, 18), (13, 32, 1, 24),
    (8, 4, 2, 3), (13, 4, 3, 5), (14, 4, 3, 8), (23, 4, 5, 5), (N, 32, None, 0)])
def test_blocks_held_under_a_budget_give_the_products_of_all_blocks(patches, monkeypatch,
                                                                     budget_rows, min_batches,
                                                                     batch_rows, n_cached):
    monkeypatch.setattr(features, "TRIANGLE_BATCHES", min_batches)
    Z = patches
    pooling = make_pooling(GRID, POOL, None)
    Q = pooling.n_windows
    budget = budget_rows * N * Q * Q * 8
    feats = exact_features(Z, pooling, resolve_kernel("rbf", Z.shape[2], gamma=0.1),
                           max_memory=budget)
    assert (feats.batch_rows, len(feats.cached)) == (batch_rows, n_cached)
    assert (feats.blocks is not None) == (budget_rows == N)
    starts = range(0, N, batch_rows or N)
    streamed = batch_rows is not None and n_cached < len(starts)
    assert feats.streamed == streamed
    held_bytes = sum(rows.nbytes for rows in feats.cached)
    next_batch = (min(batch_rows, N - starts[n_cached]) * (N - starts[n_cached]) * Q * Q * 8
                  if streamed else 0)
    assert held_bytes + next_batch <= budget
    ref = blocks_by_loop(Z, 0.1)
    for k, rows in enumerate(feats.cached):
        s = starts[k]
        np.testing.assert_allclose(rows, ref[s:s + batch_rows, s:], rtol=1e-12, atol=1e-12)
    beta = np.random.default_rng(1).standard_normal((N, 3))
    H = feats.cross(beta)
    # H[j, q, r*K + c] = sum_i beta[i, c] K_ji[q, r]
    H_ref = np.einsum("ic,jiqr->jqrc", beta, ref).reshape(N, Q, Q * 3)
    np.testing.assert_allclose(H, H_ref, rtol=1e-12, atol=1e-12)
    # a pass evaluates the batches not held, rows against the images from the batch on
    per_pass = sum(min(batch_rows, N - s) * (N - s) for s in starts[n_cached:]) if streamed else 0
    assert feats.pairs_evaluated == per_pass
    np.testing.assert_allclose(feats.trace_gram(), np.trace(ref, axis1=2, axis2=3),
                               rtol=1e-12, atol=1e-12)
    assert feats.pairs_evaluated == 2 * per_pass


# 2x2 pooling: blocks 24^2 * 4^2 * 8 bytes = 72 KiB, their upper triangle in batches of 5 rows
# 43 KiB, held whole under 68 KiB; ADMM's expansions and trace Gram (20 arrays of 24 * 4 * 4
# numbers, 24^2 numbers) take 64.5 KiB. No pooling: a row of blocks is 24 * 25^2 * 8 bytes =
# 117 KiB; 500 KiB (batches of one row) hold rows 0-2 of the triangle, 69 of the 300 pairs
# (23%) beside the next row, and evaluate the rest again on each pass (only the ALM fits).
@pytest.mark.parametrize("solver,pool,budget_kib,held", [
    ("admm", POOL, 68, None), ("dual", POOL, 68, None), ("dual", None, 500, "23%")])
def test_a_fit_under_a_memory_budget_matches_the_fit_that_holds_all_blocks(solver, pool,
                                                                             budget_kib, held,
                                                                             capsys):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((N, SIZE, SIZE))
    y = np.where(X[:, 2:5, 2:5].sum(axis=(1, 2)) > 0, 1, -1)
    spec = dict(patch_size=PATCH, pool_size=pool, gamma=0.1, C=1.0, features="exact",
                solver=solver, tol=1e-7, random_state=0)
    full = dccnn.fit_layer(X, y, **spec)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        part = dccnn.fit_layer(X, y, max_memory=budget_kib * 2**10, verbose=1, **spec)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    out = capsys.readouterr().out
    if held is None:
        assert messages == []
        assert "the upper triangle of the blocks held by batches of rows" in out
    else:
        assert len(messages) == 1
        assert f"the blocks of {held} of the image pairs are held" in messages[0]
        # the ALM's warning says what ADMM would need: 20 * 24 * 25 * 25 + 24^2 numbers
        assert "whose kernel expansions need 2.29 MiB" in messages[0]
        assert f"the blocks of {held} of the image pairs are held, the rest evaluated" in out
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


def test_passes_that_evaluate_blocks_run_numpy_blas_on_one_thread(patches):
    # numpy's BLAS workers busy-wait after each GEMM and would take the cores from the
    # core's OpenMP threads evaluating the next batch (bench/README.md)
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    pooling = make_pooling(GRID, POOL, None)
    Q = pooling.n_windows
    params = resolve_kernel("rbf", patches.shape[2], gamma=0.1)
    beta = np.ones((N, 2))
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert 2 in before
        seen = []
        streamed = exact_features(patches, pooling, params, max_memory=4 * N * Q * Q * 8)
        evaluate = streamed.evaluate_rows
        streamed.evaluate_rows = lambda start, stop: seen.append(blas_threads()) or evaluate(
            start, stop)
        streamed.cross(beta)
        streamed.trace_gram()
        assert seen and all(threads == [1] * len(threads) for threads in seen)
        assert blas_threads() == before  # restored after the pass
