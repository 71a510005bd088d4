"""Factored primal solver for explicit features (Burer-Monteiro).

||A||_* = min over A = U V^T of (||U||_F^2 + ||V||_F^2) / 2, so (P) becomes the smooth problem

    min_{U (m x r), V (T x r)}  (||U||^2 + ||V||^2)/2 + mu/2 ||U V^T||^2 + C sum loss(f(U V^T))

solved with L-BFGS. When r is at least the rank of an optimum, every rank-deficient local
minimum is global (Burer & Monteiro 2005); the optimum's rank is small (few filters), so a
modest r suffices, and r doubles whenever the iterate fills it without reaching ``tol``.
The smooth losses only (like FISTA). The same certificate as every solver: dual points from the
KKT conditions, rescaled to feasibility. On explicit rbf features the condition number that
slows FISTA (step 1/(C ||Psi||^2), with ||Psi|| dominated by the features' mean) does not
enter L-BFGS's curvature model the same way: measured on digits (bench/README.md).
"""

import time

import numpy as np
import scipy.optimize

from .fista import LOSS_CURVATURE, certify

# 16 rather than 32: each iteration's own work (U V^T, the two gradient products, L-BFGS-B
# on (m + T) r variables) halves, which outweighed the occasional doubling to 32 on the digits
# fits (7-27% faster; bench/README.md "The factored primal")
INITIAL_RANK = 16
CHECK_EVERY = 10
# L-BFGS-B memory: 50 pairs instead of 20 cut the passes over the features by 15-34% on four
# of five digits fits (8% more on the fifth; bench/README.md "The factored primal"); 100 cut
# them further, but its bookkeeping, single-threaded in scipy, cost more than it saved
LBFGS_MEMORY = 50


class _Done(Exception):
    pass


def factored_primal(feats, Y, loss, mu=0.0, *, tol=1e-6, max_iter=5000, A0=None, rank=None,
                    callback=None, random_state=None):
    """Minimise (P) over explicit A (m, Q*K). Returns (A, alpha, certificate, n_iter, history)
    like ``fista``."""
    if loss.name not in LOSS_CURVATURE:
        raise ValueError(f"solver: the primal solvers need a smooth loss, got loss={loss.name!r}"
                         " (use solver='dual')")
    m, K = feats.m, Y.shape[1]
    T = feats.Q * K
    r = min(m, T, rank or INITIAL_RANK)
    rng = np.random.default_rng(random_state)
    if A0 is not None:
        P, s, Rt = np.linalg.svd(np.asarray(A0, dtype=np.float64), full_matrices=False)
        k = min(r, s.size)
        U = np.zeros((m, r))
        V = np.zeros((T, r))
        U[:, :k], V[:, :k] = P[:, :k] * np.sqrt(s[:k]), Rt[:k].T * np.sqrt(s[:k])
        U += 1e-6 * rng.standard_normal(U.shape)
    else:
        U = 1e-3 * rng.standard_normal((m, r))
        V = 1e-3 * rng.standard_normal((T, r))
    start = time.perf_counter()
    history = []
    # the scores and the G of the last evaluated point: L-BFGS-B's iterates are points it
    # has just evaluated, so certifying one costs no pass over the features
    state = {"it": 0, "best": None, "last": None}

    def objective(x, r):
        Uc, Vc = x[:m * r].reshape(m, r), x[m * r:].reshape(T, r)
        A = Uc @ Vc.T
        F = feats.scores(A)
        # C d loss / d f = -beta(alpha_kkt), so d/dA of the loss term is -G(beta)
        G = feats.G(loss.beta(loss.kkt_alpha(F, Y), Y))
        state["last"] = (x.copy(), F, G)
        gA = mu * A - G
        value = (0.5 * (np.vdot(Uc, Uc) + np.vdot(Vc, Vc) + mu * np.vdot(A, A))
                 + loss.cost(F, Y))
        return value, np.concatenate([(Uc + gA @ Vc).ravel(), (Vc + gA.T @ Uc).ravel()])

    def certify_point(x):
        """Certificate of the iterate x; the best iterate so far is what the solver returns."""
        r_now = x.size // (m + T)
        A = x[:m * r_now].reshape(m, r_now) @ x[m * r_now:].reshape(T, r_now).T
        last = state["last"]
        F, G = last[1:] if last is not None and np.array_equal(last[0], x) else (None, None)
        cert, alpha = certify(feats, A, Y, loss, mu, F=F, G=G)
        if state["best"] is None or cert.gap < state["best"][2].gap:
            state["best"] = (A, alpha, cert)
        return cert

    def after_iteration(x):
        state["it"] += 1
        it = state["it"]
        if it % CHECK_EVERY and it < max_iter:
            return
        cert = certify_point(x)
        elapsed = time.perf_counter() - start
        history.append((it, cert.gap, elapsed))
        if callback is not None:
            callback(it, cert.gap, elapsed)
        if cert.gap <= tol or it >= max_iter:
            raise _Done

    x = np.concatenate([U.ravel(), V.ravel()])
    while True:
        try:
            res = scipy.optimize.minimize(objective, x, args=(r,), jac=True, method="L-BFGS-B",
                                          callback=after_iteration,
                                          options={"maxiter": max_iter, "maxcor": LBFGS_MEMORY,
                                                   "gtol": 0.0, "ftol": 0.0})
            x = res.x
        except _Done:
            break
        if res.nit == 0:
            # no step possible (e.g. rank 0 when every feature is zero): x is final
            certify_point(x)
            break
        # L-BFGS stopped short of tol: grow the rank if the iterate uses all of it
        Uc, Vc = x[:m * r].reshape(m, r), x[m * r:].reshape(T, r)
        s = np.linalg.svd(Uc @ Vc.T, compute_uv=False)
        if r < min(m, T) and np.sum(s > 1e-8 * max(s[0], 1e-300)) >= r:
            r_new = min(2 * r, m, T)
            Uc = np.hstack([Uc, 1e-6 * rng.standard_normal((m, r_new - r))])
            Vc = np.hstack([Vc, 1e-6 * rng.standard_normal((T, r_new - r))])
            r = r_new
        else:
            Uc = Uc + 1e-8 * rng.standard_normal(Uc.shape)
        x = np.concatenate([Uc.ravel(), Vc.ravel()])
        if state["it"] >= max_iter:
            break
    if state["best"] is None:
        certify_point(x)
    A, alpha, cert = state["best"]
    return A, alpha, cert, state["it"], history
