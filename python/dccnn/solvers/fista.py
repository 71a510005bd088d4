"""Primal baseline (SPEC §5): accelerated proximal gradient with singular value thresholding
on explicit features (the CCNN-style way), with adaptive restart and the same certificate as
the dual solver: dual points come from the KKT conditions alpha = -C loss'(f)."""

import time

import numpy as np
import scipy.linalg

from ..certificate import Certificate, dual_objective, primal_objective

# Lipschitz constants of d loss / d f for the smooth losses.
LOSS_CURVATURE = {"squared_hinge": 2.0, "logistic": 0.25, "squared": 2.0}


def operator_norm_sq(feats, K, n_iter=50, seed=0):
    """Largest eigenvalue of scores^T scores (power iteration)."""
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(feats.n, K))
    lam = 0.0
    for _ in range(n_iter):
        A = feats.scores_adjoint(R)
        R = feats.scores(A)
        lam_new = np.linalg.norm(R)
        R /= max(lam_new, 1e-300)
        if abs(lam_new - lam) <= 1e-6 * lam_new:
            lam = lam_new
            break
        lam = lam_new
    return lam * 1.01


def svt(A, t):
    """Prox of t ||.||_*: singular values shrunk by t."""
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesdd")
    s = np.maximum(s - t, 0.0)
    keep = s > 0
    return (U[:, keep] * s[keep]) @ Vt[keep], s[keep]


def certify(feats, A, Y, loss, mu, F=None, G=None):
    """Certificate of A, with the dual point its KKT conditions give. A caller that already
    has the scores F of A and G of that dual point passes them: they are the two passes
    over the features that a certificate costs."""
    F = feats.scores(A) if F is None else F
    s = scipy.linalg.svdvals(A)
    primal = primal_objective(s**2, F, Y, loss, mu)
    alpha = loss.kkt_alpha(F, Y)
    if G is None:
        G = feats.G(loss.beta(alpha, Y))
    dual, scale = dual_objective(alpha, Y, scipy.linalg.svdvals(G) ** 2, loss, mu)
    return Certificate(primal, dual, scale), alpha


def fista(feats, Y, loss, mu=0.0, *, tol=1e-6, max_iter=5000, A0=None, check_every=10,
          callback=None):
    """Minimise ||A||_* + mu/2 ||A||_F^2 + C sum loss(f(A), Y) over explicit A (m, Q*K).

    Returns (A, alpha, certificate, n_iter, history) where history holds
    (iteration, gap, seconds).
    """
    if loss.name not in LOSS_CURVATURE:
        raise ValueError(f"solver: the primal solver needs a smooth loss, got loss={loss.name!r}"
                         " (use solver='dual')")
    K = Y.shape[1]
    T = feats.Q * K
    Lip = loss.C_max * LOSS_CURVATURE[loss.name] * operator_norm_sq(feats, K) + mu
    # Lip = 0: all-zero features and mu = 0, where the loss does not depend on A; any step
    # then leads to the solution A = 0
    step = 1.0 / Lip if Lip > 0 else 1.0
    A = np.zeros((feats.m, T)) if A0 is None else np.array(A0, dtype=np.float64)
    Z, t = A.copy(), 1.0
    start = time.perf_counter()
    history = []
    cert, alpha = certify(feats, A, Y, loss, mu)
    it = 0
    for it in range(1, max_iter + 1):
        F = feats.scores(Z)
        # C d loss / d f = -beta(alpha_kkt): the gradient is -G(beta) + mu Z
        grad = mu * Z - feats.G(loss.beta(loss.kkt_alpha(F, Y), Y))
        A_new, _ = svt(Z - step * grad, step)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        # adaptive restart (O'Donoghue & Candes): drop momentum when it points uphill
        if np.vdot(Z - A_new, A_new - A) > 0:
            t_new, Z = 1.0, A_new.copy()
        else:
            Z = A_new + ((t - 1.0) / t_new) * (A_new - A)
        A, t = A_new, t_new
        if it % check_every == 0 or it == max_iter:
            cert, alpha = certify(feats, A, Y, loss, mu)
            history.append((it, cert.gap, time.perf_counter() - start))
            if callback is not None:
                callback(it, cert.gap, time.perf_counter() - start)
            if cert.gap <= tol:
                break
    return A, alpha, cert, it, history
