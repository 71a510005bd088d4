"""Numba twin of csrc/dccnn/dual_cd.cpp (dense Gram operator): same algorithm, same stopping
rule; random permutations come from NumPy's generator instead of std::mt19937_64, so the two
agree on the solution, not on the path."""

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
def _cd(gram, lin, alpha, kind, C, tol, max_epochs, shrinking, seed):
    N = alpha.shape[0]
    lower, upper, quad = _bounds(kind, C)
    for u in range(N):
        alpha[u] = _interior(kind, alpha[u], lower, upper, C)
    grad = gram @ alpha
    np.random.seed(seed)
    active = np.arange(N)
    n_active = N
    pg_max_old, pg_min_old = np.inf, -np.inf
    epochs, spread, converged = 0, 0.0, False
    while epochs < max_epochs:
        np.random.shuffle(active[:n_active])
        pg_max, pg_min = -np.inf, np.inf
        s = 0
        while s < n_active:
            u = active[s]
            g = grad[u]
            gr = _gradient(kind, g, alpha[u], lin[u], quad, C)
            if shrinking and kind != LOGISTIC:
                if (alpha[u] <= lower and gr > pg_max_old) or (alpha[u] >= upper and gr < pg_min_old):
                    active[s], active[n_active - 1] = active[n_active - 1], active[s]
                    n_active -= 1
                    continue
            pg = gr
            if alpha[u] <= lower and gr > 0:
                pg = 0.0
            if alpha[u] >= upper and gr < 0:
                pg = 0.0
            pg_max = max(pg_max, pg)
            pg_min = min(pg_min, pg)
            s += 1
            if pg == 0.0 and kind != LOGISTIC:
                continue
            a_new = _solve(kind, gram[u, u], g, alpha[u], lin[u], lower, upper, quad, C)
            delta = a_new - alpha[u]
            if delta != 0.0:
                grad += delta * gram[u]
                alpha[u] = a_new
        epochs += 1
        if n_active == 0:
            pg_max, pg_min = 0.0, 0.0
        spread = pg_max - pg_min
        if spread <= tol:
            if n_active == N:
                converged = True
                break
            n_active = N
            pg_max_old, pg_min_old = np.inf, -np.inf
            continue
        pg_max_old = np.inf if pg_max <= 0 else pg_max
        pg_min_old = -np.inf if pg_min >= 0 else pg_min
    return epochs, spread, converged


def dual_cd_dense(gram, lin, alpha, loss, C, tol, max_epochs, shrinking, seed):
    N = alpha.shape[0]
    if gram.shape != (N, N) or lin.shape != (N,):
        raise ValueError("gram: expected an (N, N) array and lin N entries, N = len(alpha)")
    if not C > 0:
        raise ValueError("C: must be > 0")
    if loss not in (SQUARED_HINGE, HINGE, LOGISTIC, SQUARED):
        raise ValueError(f"loss: unknown kind {loss}")
    return _cd(gram, lin, alpha, loss, float(C), float(tol), int(max_epochs), bool(shrinking),
               int(seed) % (2**32))
