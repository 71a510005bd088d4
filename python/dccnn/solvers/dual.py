"""Certified dual solver (SPEC §3).

mu = 0: the augmented Lagrangian on M(alpha) <= I (solvers/alm.py), for every loss.
mu > 0: the saddle form with a factored multiplier, below.

The multiplier of the matrix inequality M(alpha) <= I is written Sigma = V V^T (V: T x r), so
that (Burer-Monteiro) the problem becomes the smooth minimisation over V of

    J(V) = 1/2 ||V||_F^2 + max_alpha [ L(alpha) - 1/2 tr(Sigma_eff M(alpha)) ],
    Sigma_eff = V (I + mu V^T V)^(-1) V^T          (Sigma_eff = Sigma when mu = 0),

whose inner maximisation is a kernel machine solved by the C++ dual coordinate descent, and
whose gradient is V - M V B^-1 + mu V B^-1 V^T M V B^-1 with B = I + mu V^T V. Minimising J is
L-BFGS; when it stalls with eigenvalues of M above 1 outside the span of V (a saddle of the
factored problem) those eigenvectors are added as new columns. Every iteration yields a
primal point A = G(beta) Sigma_eff and a dual point; the certificate keeps the best of each
(both are valid bounds), so the reported gap never depends on a single iterate.
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize

from ..certificate import Certificate, dual_objective, primal_objective
from ..features import gram_M, scores_from_cross
from .alm import alm_dual
from .inner import InnerSolver


@dataclass
class DualResult:
    alpha: np.ndarray        # (n, K) dual variables whose feasible rescaling gives `dual`
    beta_primal: np.ndarray  # (n, K) and Sigma_primal (T, T): the best primal A = G(beta) Sigma
    Sigma_primal: np.ndarray
    certificate: Certificate
    V: np.ndarray            # final factor of the multiplier (warm starts)
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)  # (iteration, gap, seconds)
    inner_epochs: int = 0


def _effective_sigma(V, mu):
    if mu == 0:
        return V @ V.T, None
    Binv = scipy.linalg.inv(np.eye(V.shape[1]) + mu * (V.T @ V))
    return V @ Binv @ V.T, Binv


class _Tracker:
    """Best primal and dual bounds seen so far, and the points that gave them."""

    def __init__(self):
        self.primal, self.dual = np.inf, -np.inf
        self.alpha = self.beta_primal = self.Sigma_primal = None
        self.scale = 1.0

    def update(self, primal, beta, Sigma, dual, alpha, scale):
        if primal < self.primal:
            self.primal, self.beta_primal, self.Sigma_primal = primal, beta.copy(), Sigma.copy()
        if dual > self.dual:
            self.dual, self.alpha, self.scale = dual, alpha.copy(), scale

    def certificate(self):
        return Certificate(self.primal, self.dual, self.scale)


def solve_dual(feats, Y, loss, mu=0.0, *, tol=1e-6, max_iter=1000, alpha0=None, V0=None,
               rank=None, random_state=None, callback=None, verbose=0, backend="auto"):
    n, K = Y.shape
    T = feats.Q * K
    if mu == 0:
        return _solve_alm(feats, Y, loss, tol=tol, max_iter=max_iter, alpha0=alpha0,
                            callback=callback, verbose=verbose)
    rng = np.random.default_rng(random_state)
    inner = InnerSolver(feats, Y, loss, alpha0=alpha0, seed=int(rng.integers(2**31)),
                        backend=backend)
    if V0 is not None:
        V = np.array(V0, dtype=np.float64)
    else:
        r0 = min(T, rank or max(8, min(T, 32)))
        V = 0.1 * rng.standard_normal((T, r0))
    best = _Tracker()
    state = {"it": 0, "gap": 1.0, "H": None, "M": None}
    history = []
    start = time.perf_counter()

    def evaluate(v, r):
        Vm = v.reshape(T, r)
        Sigma, Binv = _effective_sigma(Vm, mu)
        inner_tol = min(1e-3, max(1e-10, 1e-3 * state["gap"]))
        alpha, _ = inner.solve(Sigma, inner_tol)
        beta = loss.beta(alpha, Y)
        H = feats.cross(beta)
        M = gram_M(H, beta)
        J = 0.5 * np.vdot(Vm, Vm) + loss.dual_term(alpha, Y) - 0.5 * np.vdot(Sigma, M)
        MV = M @ Vm
        grad = Vm - MV if mu == 0 else Vm - MV @ Binv + mu * Vm @ (Binv @ (Vm.T @ MV) @ Binv)
        # certificate of this iterate: primal A = G(beta) Sigma, dual alpha (rescaled for mu=0)
        AtA = Sigma @ M @ Sigma
        F = scores_from_cross(H, Sigma)
        primal = primal_objective(scipy.linalg.eigvalsh(0.5 * (AtA + AtA.T)), F, Y, loss, mu)
        dual, scale = dual_objective(alpha, Y, scipy.linalg.eigvalsh(M), loss, mu)
        best.update(primal, beta, Sigma, dual, alpha, scale)
        state.update(H=H, M=M, V=Vm.copy(), gap=best.certificate().gap)
        return J, grad.reshape(-1)

    class _Done(Exception):
        pass

    def after_iteration(_):
        state["it"] += 1
        gap = best.certificate().gap
        elapsed = time.perf_counter() - start
        history.append((state["it"], gap, elapsed))
        if callback is not None:
            callback(state["it"], gap, elapsed)
        if verbose > 1:
            print(f"  dual iter {state['it']:5d}  gap {gap:.3e}  rank {V.shape[1]}  "
                  f"{elapsed:.2f}s")
        if gap <= tol or state["it"] >= max_iter:
            raise _Done

    converged = False
    while True:
        r = V.shape[1]
        try:
            res = scipy.optimize.minimize(
                evaluate, V.reshape(-1), args=(r,), jac=True, method="L-BFGS-B",
                callback=after_iteration,
                options={"maxiter": max_iter, "maxcor": 20, "gtol": 1e-14, "ftol": 1e-16})
            V = res.x.reshape(T, r)
        except _Done:
            V = state["V"]
            converged = best.certificate().gap <= tol
            break
        if best.certificate().gap <= tol:
            converged = True
            break
        if state["it"] >= max_iter:
            break
        V = _grow(V, state["M"], rng)

    cert = best.certificate()
    return DualResult(best.alpha, best.beta_primal, best.Sigma_primal, cert, V, state["it"],
                      converged, history, inner.epochs)


def _solve_alm(feats, Y, loss, *, tol, max_iter, alpha0, callback, verbose):
    """mu = 0 through the augmented Lagrangian. (The factored form below also solves mu = 0
    for smooth losses, but its inner coordinate descent crawls for the hinge loss, whose inner
    problem is not strongly concave.)"""
    best = _Tracker()
    history = []
    start = time.perf_counter()

    def after_outer():
        gap = best.certificate().gap
        elapsed = time.perf_counter() - start
        history.append((len(history) + 1, gap, elapsed))
        if callback is not None:
            callback(len(history), gap, elapsed)
        if verbose > 1:
            print(f"  alm iter {len(history):5d}  gap {gap:.3e}  {elapsed:.2f}s")

    _, Sigma, k = alm_dual(feats, Y, loss, best, tol=tol, max_iter=min(max_iter, 200),
                           alpha0=alpha0, after_outer=after_outer)
    cert = best.certificate()
    w, U = scipy.linalg.eigh(Sigma)
    V = U * np.sqrt(np.maximum(w, 0.0))
    return DualResult(best.alpha, best.beta_primal, best.Sigma_primal, cert, V, k,
                      cert.gap <= tol, history, 0)


def _grow(V, M, rng):
    """Add the directions where M exceeds 1 outside span(V) (escape a saddle), or, if there is
    none, perturb slightly so that L-BFGS restarts with fresh curvature."""
    T, r = V.shape
    Qv, _ = np.linalg.qr(V) if r else (np.zeros((T, 0)), None)
    P = np.eye(T) - Qv @ Qv.T
    w, U = scipy.linalg.eigh(P @ M @ P)
    new = U[:, w > 1.0 + 1e-9]
    if new.shape[1] and r < T:
        k = min(new.shape[1], max(1, r // 4), T - r)
        return np.hstack([V, 1e-2 * new[:, -k:]])
    return V + 1e-8 * rng.standard_normal(V.shape)
