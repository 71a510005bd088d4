"""Augmented Lagrangian on the matrix inequality M(alpha) <= I (mu = 0), with the multiplier
Sigma (T x T, PSD) updated in closed form:

    psi_k(alpha) = L(alpha) - (||[Sigma_k + (c/2)(M(alpha) - I)]_+||_F^2 - ||Sigma_k||_F^2) / (2c)
    alpha_{k+1}  = argmax psi_k over the loss's box           (L-BFGS-B, warm started)
    Sigma_{k+1}  = [Sigma_k + (c/2)(M(alpha_{k+1}) - I)]_+

The update puts mass back wherever M exceeds I, so directions of Sigma that are zero grow back
(what the alternating scheme of SPEC §7 lacks). grad psi = L'(alpha) - y * f(G(beta) Sigma_+):
one ``dual_operator`` per evaluation (M and these scores). It is smooth even for the hinge
loss, whose inner problem for a fixed Sigma is not strongly concave.

The penalty c trades outer for inner iterations: the outer (multiplier) error shrinks by a
factor that grows with c, while the inner problem's condition number is about
c * C * ||Psi||^2, ||Psi||^2 the largest eigenvalue of the kernel operator beta -> scores of
G(beta) (the Lipschitz constant FISTA uses). Fixing that product (PENALTY_CONDITION) makes the
choice independent of the feature scale and of n (bench/README.md, issue 3).
"""

import numpy as np
import scipy.linalg
import scipy.optimize

from ..certificate import dual_objective, primal_objective

# c * C * ||Psi||^2. Digits/Nystroem, n=200, K=3, gap 1e-6: 1e4 / 1e5 / 1e6 / 1e7 took
# 9687 / 2038 / 871 / 1835 evaluations; at n=500, K=10, 1e7 was still at gap 0.86 after 1500
# (bench/README.md).
PENALTY_CONDITION = 1e6
LOGISTIC_MARGIN = 1e-12
INNER_MAX_ITER = 2000
POWER_ITERATIONS = 30
# inner stopping rule: projected gradient <= INNER_TOL_PER_GAP * (current certified gap)
INNER_TOL_PER_GAP = 1.0
INNER_TOL_MAX = 0.1
LINE_SEARCH_FAILED = 2  # scipy's L-BFGS-B status "ABNORMAL"
SMALL_MEMORY, LARGE_MEMORY, LARGE_MEMORY_FLOPS = 20, 100, 5e4


def dual_term_gradient(loss, alpha, Y):
    C = loss.C
    if loss.name == "squared_hinge":
        return 1.0 - alpha / (2 * C)
    if loss.name == "hinge":
        return np.ones_like(alpha)
    if loss.name == "logistic":
        return np.log((C - alpha) / alpha)
    return Y - alpha / (2 * C)


def box_bounds(loss, shape):
    """L-BFGS-B's box for alpha of ``shape`` (n, K), flattened (None: unbounded)."""
    lo, hi = loss.bounds()
    if loss.name == "logistic":
        lo, hi = LOGISTIC_MARGIN * loss.C, (1 - LOGISTIC_MARGIN) * loss.C
    if lo is None and hi is None:
        return None
    return scipy.optimize.Bounds(
        np.broadcast_to(-np.inf if lo is None else lo, shape).ravel(),
        np.broadcast_to(np.inf if hi is None else hi, shape).ravel())


def dual_start(loss, Y, alpha0, bounds):
    """The dual solvers' first point: alpha0 (None: half the KKT point of f = 0, inside the
    box), clipped to the box."""
    if alpha0 is None:
        alpha0 = 0.5 * loss.kkt_alpha(np.zeros(Y.shape), Y) + 1e-3 * loss.C
    alpha = np.asarray(alpha0, dtype=np.float64).copy()
    if bounds is not None:
        alpha = np.clip(alpha, bounds.lb.reshape(alpha.shape), bounds.ub.reshape(alpha.shape))
    return alpha


def into_feasible_set(feats, Y, loss, alpha):
    """alpha scaled into M(alpha) <= I (a ball in the scale of alpha: M is quadratic in it).
    The solvers' penalties of M's excess over I grow with its square: at kernel values near
    1e120 the smoothed dual's first penalty from the unscaled start (about 1e240) overflowed
    L-BFGS-B's products (bench/fuzz.py)."""
    beta = loss.beta(alpha, Y)
    return alpha / max(1.0, np.sqrt(scipy.linalg.eigvalsh(feats.dual_operator(beta).M)[-1]))


def lbfgs_memory(feats, K):
    """L-BFGS-B's memory for the inner solves over n K variables: 100 pairs where an
    evaluation (one ``dual_operator``) costs at least LARGE_MEMORY_FLOPS per variable, else 20.
    More pairs save evaluations (a quarter to a third at 100), but L-BFGS-B's own work per
    iteration grows with variables x pairs^2. Measured on digits (bench/README.md): exact
    blocks, 77k-153k flops per variable, 16-19% faster at 100; Nystroem features, 2k-25k
    flops per variable, slower at 50 and 100. (The smoothed solver for mu > 0 keeps 20: on the
    exact blocks 100 saved 16% of its evaluations but took 5% longer.)"""
    per_variable = feats.dual_operator_flops(K) / max(feats.n * K, 1)
    return LARGE_MEMORY if per_variable >= LARGE_MEMORY_FLOPS else SMALL_MEMORY


def kernel_operator_norm(feats, K, seed=0):
    """Largest eigenvalue of beta -> scores of G(beta) (Sigma = I), by power iteration with the
    back-end's dual operator; 1% accuracy is enough to set a penalty."""
    rng = np.random.default_rng(seed)
    beta = rng.standard_normal((feats.n, K))
    eye = np.eye(feats.Q * K)
    lam = 0.0
    for _ in range(POWER_ITERATIONS):
        beta /= np.linalg.norm(beta)
        image = feats.dual_operator(beta).scores(eye)
        lam_new = float(np.vdot(beta, image))
        # scaled by its largest entry first: with kernel values near 1e160 the squared norm
        # of the image itself overflows
        beta = image / max(float(np.abs(image).max()), 1e-300)
        if abs(lam_new - lam) <= 1e-3 * lam_new:
            return lam_new
        lam = lam_new
    return lam


def alm_dual(feats, Y, loss, tracker, *, tol, max_iter, alpha0=None, Sigma0=None,
             after_outer=None):
    """Runs until the tracker's gap <= tol or max_iter outer iterations; returns (alpha, Sigma,
    outer iterations, inner evaluations)."""
    n, K = Y.shape
    T = feats.Q * K
    sign = Y if loss.margin else np.ones_like(Y)
    c = PENALTY_CONDITION / (loss.C_max * max(kernel_operator_norm(feats, K), 1e-300))
    bounds = box_bounds(loss, (n, K))
    # L-BFGS-B measures the projected gradient as the step to the box, at most its width C:
    # an absolute tolerance above C would stop the inner solves at once (digits, hinge,
    # C = 0.1: stuck at gap 0.975 for 200 outer iterations)
    box_scale = 1.0 if loss.bounds()[1] is None else min(1.0, loss.C_min)
    memory = lbfgs_memory(feats, K)
    # with a large c, psi at a far infeasible point is so large that L-BFGS-B's line search
    # loses the change in psi to rounding
    alpha = into_feasible_set(feats, Y, loss, dual_start(loss, Y, alpha0, bounds))
    Sigma = np.zeros((T, T)) if Sigma0 is None else np.array(Sigma0, dtype=np.float64)
    I = np.eye(T)
    last = {}
    evaluations = 0

    def negative_psi(x):
        nonlocal evaluations
        evaluations += 1
        a = x.reshape(n, K)
        beta = loss.beta(a, Y)
        op = feats.dual_operator(beta)
        M = op.M
        w, V = scipy.linalg.eigh(Sigma + 0.5 * c * (M - I))
        wp = np.maximum(w, 0.0)
        Sp = (V * wp) @ V.T
        F = op.scores(Sp)
        value = loss.dual_term(a, Y) - (np.sum(wp**2) - np.sum(Sigma**2)) / (2 * c)
        grad = dual_term_gradient(loss, a, Y) - sign * F
        last.update(M=M, Sp=Sp, F=F, beta=beta)
        return -value, -grad.ravel()

    def certify():
        """Feeds the tracker the primal A = G(beta) Sigma_+ and two dual points (alpha and the
        one the primal's KKT conditions give) of the last evaluation; returns Sigma_+."""
        M, Sp, F, beta = (last[key] for key in ("M", "Sp", "F", "beta"))
        AtA = Sp @ M @ Sp
        primal = primal_objective(scipy.linalg.eigvalsh(0.5 * (AtA + AtA.T)), F, Y, loss, 0.0)
        candidates = [(alpha, M), (loss.project(loss.kkt_alpha(F, Y)), None)]
        for cand, Mc in candidates:
            if Mc is None:
                bc = loss.beta(cand, Y)
                Mc = feats.dual_operator(bc).M
            dual, sc = dual_objective(cand, Y, scipy.linalg.eigvalsh(Mc), loss, 0.0)
            tracker.update(primal, beta, Sp, dual, cand, sc)
        return Sp

    # the start's own certificate sets the first inner tolerance, so that a warm start close to
    # the optimum is not re-solved from a loose one
    negative_psi(alpha.ravel())
    certify()
    k = 0
    for k in range(1, max_iter + 1):
        gap = tracker.certificate().gap
        if gap <= tol:
            k -= 1
            break
        gtol = min(INNER_TOL_MAX, max(INNER_TOL_PER_GAP * gap, 1e-12)) * box_scale
        res = scipy.optimize.minimize(negative_psi, alpha.ravel(), jac=True, method="L-BFGS-B",
                                      bounds=bounds,
                                      options={"maxiter": INNER_MAX_ITER, "gtol": gtol,
                                               "ftol": 0.0, "maxcor": memory})
        if res.status == LINE_SEARCH_FAILED:
            # psi too stiff for the line search at this accuracy: any c > 0 is a valid ALM
            c /= 10
        alpha = res.x.reshape(n, K)
        negative_psi(alpha.ravel())
        Sigma = certify()
        if after_outer is not None:
            after_outer()
    return alpha, Sigma, k, evaluations
