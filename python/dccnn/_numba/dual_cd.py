"""Numba twin of csrc/dccnn/dual_cd.cpp (dense Gram and feature-row operators): same
algorithm, same per-output stopping rule; random permutations come from NumPy's generator
instead of std::mt19937_64, so the two agree on the solution, not on the path."""

import numba
import numpy as np

SQUARED_HINGE, HINGE, LOGISTIC, SQUARED = 0, 1, 2, 3


@numba.njit(cache=True)
def _bounds(kind, C):
    lower = -np.inf if kind == SQUARED else 0.0
    upper = C if (kind == HINGE or kind == LOGISTIC) else np.inf
    quad = 0.5 / C if (kind == SQUARED_HINGE or kind == SQUARED) else 0.0
    return lower, upper, quad


@numba.njit(cache=True)
def _interior(kind, a, lower, upper, C):
    if kind != LOGISTIC:
        return min(max(a, lower), upper)
    m = 1e-12 * C
    return min(max(a, m), C - m)


@numba.njit(cache=True)
def _gradient(kind, g, a, lin, quad, C):
    d = g + lin + quad * a
    if kind == LOGISTIC:
        d += np.log(a / (C - a))
    return d


@numba.njit(cache=True)
def _solve(kind, q, g, a, lin, lower, upper, quad, C):
    if kind != LOGISTIC:
        curv = q + quad
        if curv <= 0:
            return a
        return min(max(a - _gradient(kind, g, a, lin, quad, C) / curv, lower), upper)
    lo, hi, z = 0.0, C, a
    for _ in range(60):
        phi = q * (z - a) + g + lin + np.log(z / (C - z))
        if phi > 0:
            hi = z
        else:
            lo = z
        nxt = z - phi / (q + C / (z * (C - z)))
        if not (lo < nxt < hi):
            nxt = 0.5 * (lo + hi)
        if abs(nxt - z) <= 1e-15 * C:
            z = nxt
            break
        z = nxt
    return _interior(kind, z, lower, upper, C)


@numba.njit(cache=True)
def _cd(rows, dense, sign, lin, alpha, state, kind, row_C, tol, max_epochs, shrinking, seed,
        c0, c1, epochs_out, spread_out, converged_out):
    """Outputs [c0, c1) of one problem over ``rows``: a dense Gram (``dense``; state[c] =
    Gram (sign[:, c] * alpha[:, c]) kept) or feature rows X (state[c] = sum_i sign[i, c]
    alpha[i, c] X[i] kept), row i with its own C, row_C[i]. A step on row i adds a multiple
    of rows[i] to the state."""
    N, K = alpha.shape
    shrink = shrinking and kind != LOGISTIC
    for i in range(N):
        C = row_C[i]
        lower, upper, quad = _bounds(kind, C)
        for c in range(c0, c1):
            a = _interior(kind, alpha[i, c], lower, upper, C)
            if a != alpha[i, c]:
                state[c] += (a - alpha[i, c]) * sign[i, c] * rows[i]
                alpha[i, c] = a
    diag = np.empty(N)
    for i in range(N):
        diag[i] = rows[i, i] if dense else rows[i] @ rows[i]
    n_out = c1 - c0
    shrunk = np.zeros((N, n_out), dtype=np.bool_)
    n_active = np.full(n_out, N)
    pg_max_old = np.full(n_out, np.inf)
    pg_min_old = np.full(n_out, -np.inf)
    pg_max = np.empty(n_out)
    pg_min = np.empty(n_out)
    done = np.zeros(n_out, dtype=np.bool_)
    np.random.seed(seed)
    order = np.arange(N)
    n_open = n_out
    epoch = 0
    while epoch < max_epochs and n_open > 0:
        epoch += 1
        np.random.shuffle(order)
        pg_max[:] = -np.inf
        pg_min[:] = np.inf
        for s in range(N):
            i = order[s]
            C = row_C[i]
            lower, upper, quad = _bounds(kind, C)
            for k in range(n_out):
                c = c0 + k
                if done[k] or shrunk[i, k]:
                    continue
                g = sign[i, c] * (state[c, i] if dense else state[c] @ rows[i])
                a = alpha[i, c]
                gr = _gradient(kind, g, a, lin[i, c], quad, C)
                if shrink and ((a <= lower and gr > pg_max_old[k]) or
                               (a >= upper and gr < pg_min_old[k])):
                    shrunk[i, k] = True
                    n_active[k] -= 1
                    continue
                pg = gr
                if a <= lower and gr > 0:
                    pg = 0.0
                if a >= upper and gr < 0:
                    pg = 0.0
                pg_max[k] = max(pg_max[k], pg)
                pg_min[k] = min(pg_min[k], pg)
                if pg == 0.0 and kind != LOGISTIC:
                    continue
                a_new = _solve(kind, diag[i], g, a, lin[i, c], lower, upper, quad, C)
                delta = a_new - a
                if delta != 0.0:
                    state[c] += (delta * sign[i, c]) * rows[i]
                    alpha[i, c] = a_new
        for k in range(n_out):
            if done[k]:
                continue
            epochs_out[c0 + k] += 1
            if n_active[k] == 0:
                pg_max[k] = pg_min[k] = 0.0
            spread = pg_max[k] - pg_min[k]
            spread_out[c0 + k] = spread
            if spread <= tol:
                if n_active[k] == N:
                    converged_out[c0 + k] = True
                    done[k] = True
                    n_open -= 1
                    continue
                shrunk[:, k] = False
                n_active[k] = N
                pg_max_old[k], pg_min_old[k] = np.inf, -np.inf
                continue
            pg_max_old[k] = np.inf if pg_max[k] <= 0 else pg_max[k]
            pg_min_old[k] = -np.inf if pg_min[k] >= 0 else pg_min[k]


def _check(loss, C):
    if not C > 0:
        raise ValueError("C: must be > 0")
    if loss not in (SQUARED_HINGE, HINGE, LOGISTIC, SQUARED):
        raise ValueError(f"loss: unknown kind {loss}")


def _row_C(row_C, C, N):
    if row_C is None:
        return np.full(N, float(C))
    row_C = np.asarray(row_C, dtype=np.float64)
    if row_C.shape != (N,):
        raise ValueError("row_C: expected None or an (N,) array")
    if not (np.all(row_C > 0) and np.all(np.isfinite(row_C))):
        raise ValueError("row_C: every entry must be > 0 and finite")
    return row_C


def _run(rows, dense, sign, lin, alpha, state, loss, C, tol, max_epochs, shrinking, seed,
         row_C):
    _check(loss, C)
    N, K = alpha.shape
    row_C = _row_C(row_C, C, N)
    sign = np.ones((N, K)) if sign is None else np.asarray(sign, dtype=np.float64)
    epochs, spread = np.zeros(K, dtype=np.int64), np.zeros(K)
    converged = np.zeros(K, dtype=np.bool_)
    # every output runs on its own state, so the core's split of outputs over threads does
    # not change them: here they run as one group
    _cd(rows, dense, sign, lin, alpha, state, loss, row_C, float(tol), int(max_epochs),
        bool(shrinking), int(seed) % (2**32), 0, K, epochs, spread, converged)
    return int(epochs.max(initial=0)), float(spread.max(initial=0.0)), bool(converged.all())


def dual_cd_dense(gram, sign, lin, alpha, G, loss, C, tol, max_epochs, shrinking, seed,
                  n_threads, row_C=None):
    """The core's dual_cd_dense; ``n_threads`` as in ``dual_cd_linear``."""
    N, K = alpha.shape
    if gram.shape != (N, N) or G.shape != (K, N) or lin.shape != (N, K):
        raise ValueError("gram: expected an (N, N) array with lin, alpha (N, K) and G (K, N)")
    return _run(gram, True, sign, lin, alpha, G, loss, C, tol, max_epochs, shrinking, seed,
                row_C)


def dual_cd_linear(X, sign, lin, alpha, W, loss, C, tol, max_epochs, shrinking, seed,
                   n_threads, row_C=None):
    """The core's dual_cd_linear; ``n_threads`` is accepted for the same signature (the
    outputs run one after the other, with the same result)."""
    N, K = alpha.shape
    if X.ndim != 2 or X.shape[0] != N or W.shape != (K, X.shape[1]) or lin.shape != (N, K):
        raise ValueError("X: expected (N, D) rows with lin, alpha (N, K) and W (K, D)")
    return _run(X.astype(np.float64, copy=False), False, sign, lin, alpha, W, loss, C, tol,
                max_epochs, shrinking, seed, row_C)
