"""ADMM on either feature back-end, with the core's dual coordinate descent as its inner solver.

The primal (SPEC §2) is split as A = B:

    A_{k+1} = argmin_A C sum loss(f(A), Y) + rho/2 ||A - Z_k||_F^2,   Z_k = B_k - U_k
    B_{k+1} = prox of (||.||_* + mu/2 ||.||_F^2) / rho at A_{k+1} + U_k   (singular values
              shrunk by 1/rho, then divided by 1 + mu/rho)
    U_{k+1} = U_k + A_{k+1} - B_{k+1}

The A-step separates over the K outputs: output c is an L2-regularised linear machine on the
rows x_i = (psi_1(x_i), ..., psi_Q(x_i)), centred at Z_k, with C/rho in place of C. Its dual
is the problem of csrc/dccnn/dual_cd.hpp, with the margins of Z_k in the linear term: on
explicit features over the rows themselves (one epoch reads them once for all K outputs), on
the exact back-end over their n x n Gram, the trace Gram tr K_ij. The back-end's space
(admm_spaces.py) holds the iterates: explicit matrices, or kernel expansions over the
training features that carry their inner products with them, so that an iteration touches
the kernel blocks once (for A - Z = G(alpha) / rho) and never factorises them.
The multipliers a of that dual give the dual point of (D): alpha = rho a, with
G(alpha) = rho (A_{k+1} - Z_k). Each iteration therefore certifies a primal point (B) and a
dual point (alpha, rescaled to feasibility), and the inner solve is warm started from the
last a, which converges to alpha* / rho.

The B- and U-steps see the over-relaxed A_relaxed = RELAX A_{k+1} + (1 - RELAX) B_k in place
of A_{k+1}, and rho is balanced between the primal residual ||A_{k+1} - B_{k+1}|| and the dual
residual rho ||B_{k+1} - B_k|| (Boyd et al. 2011, sections 3.4.1 and 3.4.3).
"""

import time

import numpy as np
import scipy.linalg

from .._backend import get_backend
from ..certificate import Certificate, dual_objective, primal_objective

LOSS_KIND = {"squared_hinge": 0, "hinge": 1, "logistic": 2, "squared": 3}
# digits, default layer (bench/README.md): 0.05 / 0.2 / 0.8 took 110 / 53 / 150+ iterations
RHO_START = 0.2
RESIDUAL_RATIO, RHO_FACTOR = 10.0, 2.0
# over-relaxation (Boyd et al. 2011, 3.4.3): on digits, 1.4 / 1.6 / 1.8 took 63 / 58 / 53
# iterations on the default problem and 171 / 168 / 150 on the hinge loss, against 83 and 202
# without it; 1.6 was the fastest in seconds over five problems (bench/README.md)
RELAX = 1.6
# the inner solve is inexact: a few epochs from the warm start, or a projected-gradient spread
INNER_TOL, INNER_MAX_EPOCHS = 0.1, 3


def penalty_change(rho, primal_residual, dual_residual):
    """The factor for rho that balances the primal residual ||A - B|| against the dual
    residual rho ||B - B_old|| (1 where neither is RESIDUAL_RATIO times the other)."""
    if primal_residual > RESIDUAL_RATIO * dual_residual:
        return RHO_FACTOR
    if dual_residual > RESIDUAL_RATIO * primal_residual:
        return 1.0 / RHO_FACTOR
    return 1.0


def inner_linear_term(loss, Y, FZ):
    """lin of the A-step's dual: the loss's linear coefficient with the margins shifted by the
    scores FZ of the centre."""
    if loss.name in ("squared_hinge", "hinge"):
        return -1.0 + Y * FZ
    if loss.name == "logistic":
        return Y * FZ
    return FZ - Y


def admm(feats, Y, loss, mu=0.0, *, tol=1e-6, max_iter=5000, A0=None, alpha0=None,
         callback=None, backend="auto", random_state=None):
    """Minimise ||A||_* + mu/2 ||A||_F^2 + C sum loss(f(A), Y) for every loss, on either
    back-end. Returns (A, alpha, certificate, n_iter, history) like ``fista``: A the best
    primal point (an element of the back-end's space, ``feats.admm_space``; A0 is one too,
    or a pair (beta, S) for A0 = G(beta) S; alpha0 a dual point, both from a previous fit), alpha
    the best dual point (its feasible rescaling is alpha / certificate.dual_scale), history
    (iteration, gap, seconds). The coordinate descent runs on OpenMP's default thread count
    (OMP_NUM_THREADS, threadpoolctl's limits), or one thread for small problems
    (``admm_spaces.cd_threads``)."""
    core = get_backend(backend)
    n, K = Y.shape
    sign = np.ascontiguousarray(Y, dtype=np.float64) if loss.margin else None
    space = feats.admm_space(sign, K)
    seed = 0 if random_state is None else int(np.random.default_rng(random_state).integers(2**31))
    rho = RHO_START
    a = np.zeros((n, K))
    U = space.zeros()
    if alpha0 is not None:
        # at a solution a = alpha / rho and U = G(alpha) / rho, the multiplier over rho
        a = np.array(alpha0, dtype=np.float64) / rho
        space.start(a)
        U = space.step(a)
    if A0 is None:
        B = space.zeros()
    else:
        B = space.expansion(*A0) if isinstance(A0, tuple) else A0
    best_primal, best_dual = np.inf, -np.inf
    best_B, best_alpha, best_scale = B, np.zeros((n, K)), 1.0
    history = []
    start = time.perf_counter()
    it = 0
    FB = space.scores(B)  # then those the primal objective took of each new B
    for it in range(1, max_iter + 1):
        # Z = B - U is never formed: the iterates are large on the exact back-end (n Q x T, two
        # arrays), so each line below is one pass (space.combine) over its terms
        lin = np.ascontiguousarray(inner_linear_term(loss, Y, FB - space.scores(U)))
        row_C = loss.row_C()
        space.solve(core, lin, a, LOSS_KIND[loss.name], loss.C_max / rho, INNER_TOL,
                    INNER_MAX_EPOCHS, seed + it, None if row_C is None else row_C / rho)
        step = space.step(a)  # A - Z, so A = B_old - U_old + step
        B_old, U_old = B, U
        # X = A_relaxed + U_old, A_relaxed = RELAX A + (1 - RELAX) B_old
        X = space.combine((1.0, B_old), (RELAX, step), (1.0 - RELAX, U_old))
        # prox of (||.||_* + mu/2 ||.||_F^2) / rho: shrink by 1 / rho, then divide by 1 + mu / rho
        B, s = space.shrink(X, 1.0 / rho)
        if mu > 0:
            B, s = B / (1.0 + mu / rho), s / (1.0 + mu / rho)
        U = space.combine((1.0, X), (-1.0, B))  # U_old + A_relaxed - B

        FB = space.scores(B)
        primal = primal_objective(s**2, FB, Y, loss, mu)
        alpha = rho * a
        dual, scale = dual_objective(alpha, Y, scipy.linalg.eigvalsh(rho * rho * space.gram(step)),
                                     loss, mu)
        if primal < best_primal:
            best_primal, best_B = primal, B
        if dual > best_dual:
            best_dual, best_alpha, best_scale = dual, alpha, scale
        cert = Certificate(best_primal, best_dual, best_scale)
        elapsed = time.perf_counter() - start
        history.append((it, cert.gap, elapsed))
        if callback is not None:
            callback(it, cert.gap, elapsed)
        if cert.gap <= tol:
            break
        # A - B = (A - X) + (X - B) = (1 - RELAX) step - (2 - RELAX) U_old + U
        primal_residual = space.combine((1.0, U), (1.0 - RELAX, step), (RELAX - 2.0, U_old))
        factor = penalty_change(rho, space.norm(primal_residual),
                                rho * space.norm(space.combine((1.0, B), (-1.0, B_old))))
        if factor != 1.0:
            # U is the multiplier over rho and a the dual point over rho: keep both points
            rho *= factor
            U = U / factor
            a /= factor
            space.rescale(factor)
    return best_B, best_alpha, Certificate(best_primal, best_dual, best_scale), it, history
