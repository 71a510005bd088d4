"""Augmented Lagrangian on the matrix inequality M(alpha) <= I (mu = 0), with the multiplier
Sigma (T x T, PSD) updated in closed form:

    psi_k(alpha) = L(alpha) - (||[Sigma_k + (c/2)(M(alpha) - I)]_+||_F^2 - ||Sigma_k||_F^2) / (2c)
    alpha_{k+1}  = argmax psi_k over the loss's box           (L-BFGS-B, warm started)
    Sigma_{k+1}  = [Sigma_k + (c/2)(M(alpha_{k+1}) - I)]_+

The update puts mass back wherever M exceeds I, so directions of Sigma that are zero grow back
(what the alternating scheme of SPEC §7 lacks). grad psi = L'(alpha) - y * f(G(beta) Sigma_+):
one cross product per evaluation. It is smooth even for the hinge loss, whose inner problem
for a fixed Sigma is not strongly concave.
"""

import numpy as np
import scipy.linalg
import scipy.optimize

from ..certificate import dual_objective, primal_objective
from ..features import gram_M, scores_from_cross

# Penalty parameter for features scaled to unit mean squared norm (flat optimum 3e2..3e3
# measured on random explicit problems; see bench/README.md).
PENALTY = 1e3
LOGISTIC_MARGIN = 1e-12


def _dual_term_gradient(loss, alpha, Y):
    C = loss.C
    if loss.name == "squared_hinge":
        return 1.0 - alpha / (2 * C)
    if loss.name == "hinge":
        return np.ones_like(alpha)
    if loss.name == "logistic":
        return np.log((C - alpha) / alpha)
    return Y - alpha / (2 * C)


def _box(loss, size):
    lo, hi = loss.bounds()
    if loss.name == "logistic":
        lo, hi = LOGISTIC_MARGIN * loss.C, (1 - LOGISTIC_MARGIN) * loss.C
    if lo is None and hi is None:
        return None
    return [(lo, hi)] * size


def alm_dual(feats, Y, loss, tracker, *, tol, max_iter, alpha0=None, Sigma0=None,
             after_outer=None):
    """Runs until the tracker's gap <= tol or max_iter outer iterations; returns (alpha, Sigma,
    outer iterations)."""
    n, K = Y.shape
    T = feats.Q * K
    sign = Y if loss.margin else np.ones_like(Y)
    scale = float(np.einsum("iqq->", feats.diag_blocks())) / (n * feats.Q)
    c = PENALTY / max(scale, 1e-300)
    bounds = _box(loss, n * K)
    if alpha0 is None:
        alpha0 = 0.5 * loss.kkt_alpha(np.zeros((n, K)), Y) + 1e-3 * loss.C
    alpha = np.asarray(alpha0, dtype=np.float64).copy()
    if bounds is not None:
        alpha = np.clip(alpha, bounds[0][0], bounds[0][1])
    Sigma = np.zeros((T, T)) if Sigma0 is None else np.array(Sigma0, dtype=np.float64)
    I = np.eye(T)
    last = {}

    def negative_psi(x):
        a = x.reshape(n, K)
        beta = loss.beta(a, Y)
        H = feats.cross(beta)
        M = gram_M(H, beta)
        w, V = scipy.linalg.eigh(Sigma + 0.5 * c * (M - I))
        wp = np.maximum(w, 0.0)
        Sp = (V * wp) @ V.T
        F = scores_from_cross(H, Sp)
        value = loss.dual_term(a, Y) - (np.sum(wp**2) - np.sum(Sigma**2)) / (2 * c)
        grad = _dual_term_gradient(loss, a, Y) - sign * F
        last.update(H=H, M=M, Sp=Sp, F=F, beta=beta)
        return -value, -grad.ravel()

    gtol = 1e-1
    k = 0
    for k in range(1, max_iter + 1):
        res = scipy.optimize.minimize(negative_psi, alpha.ravel(), jac=True, method="L-BFGS-B",
                                      bounds=bounds,
                                      options={"maxiter": 500, "gtol": gtol, "ftol": 0.0,
                                               "maxcor": 20})
        alpha = res.x.reshape(n, K)
        negative_psi(alpha.ravel())
        H, M, Sp, F, beta = (last[key] for key in ("H", "M", "Sp", "F", "beta"))
        Sigma = Sp
        AtA = Sp @ M @ Sp
        primal = primal_objective(scipy.linalg.eigvalsh(0.5 * (AtA + AtA.T)), F, Y, loss, 0.0)
        candidates = [(alpha, M), (loss.project(loss.kkt_alpha(F, Y)), None)]
        for cand, Mc in candidates:
            if Mc is None:
                bc = loss.beta(cand, Y)
                Mc = gram_M(feats.cross(bc), bc)
            dual, sc = dual_objective(cand, Y, scipy.linalg.eigvalsh(Mc), loss, 0.0)
            tracker.update(primal, beta, Sp, dual, cand, sc)
        if after_outer is not None:
            after_outer()
        if tracker.certificate().gap <= tol:
            break
        gtol = max(0.1 * gtol, 1e-12)
    return alpha, Sigma, k
