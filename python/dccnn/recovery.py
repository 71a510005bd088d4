"""Weight recovery (SPEC §4): from a dual solution to a two-layer network.

A recovered network is ``A = G(beta) F W`` with
- ``F`` (T x r): filter coefficients, chosen so that the filters ``U = G(beta) F`` (vectors of
  the RKHS, one per column) are orthonormal, i.e. ``F^T M(beta) F = I``;
- ``W`` (r x T): linear weights, ``W[l, q*K + c]`` multiplies the pooled output ``u_q(x)_l``.
Because ``U`` is orthonormal, ``||A||_* = ||W||_*`` and ``||A||_F = ||W||_F``; the pooled
conv outputs of any image are ``u(x) = cross(x) @ F`` with ``cross(x)[q, t] = <G_t, psi_q(x)>``.

mu = 0: the filters span the eigenvectors of ``M(alpha*)`` whose eigenvalue is 1 (KKT); with an
approximate ``alpha`` "equal to 1" means within a tolerance that grows from ``sqrt(gap)`` (the
dual objective is locally quadratic, so an objective gap ``g`` moves alpha, and the eigenvalues
of M with it, by ``O(sqrt(g))``). Given the subspace, the linear weights solve the reduced
problem ``min_W ||W||_* + C sum loss(f(x; W))``: the original problem on the r-dimensional
explicit features ``u(x)``, solved by the library's own solvers. Its optimum can only fall as
the subspace grows, so the rank is increased until the recovered gap meets the target.
mu > 0: closed form, ``F = V_r diag(1/sigma)``, ``W = diag((sigma - 1)/mu) V_r^T`` over the
eigenvalues ``sigma^2 > 1``; the reduced problem polishes it when the closed form falls short.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .certificate import primal_objective
from .features import ExplicitFeatures, gram_M
from .solvers.admm import admm
from .solvers.factored import factored_primal
from .solvers.fista import LOSS_CURVATURE

# Eigenvalues of M below this fraction of the largest are numerically zero: their directions
# cannot be normalised into filters.
EIGENVALUE_FLOOR = 1e-10
# Singular values of W below this fraction of the largest are rounding noise of the solvers.
SINGULAR_VALUE_FLOOR = 1e-12


@dataclass
class Recovery:
    beta: np.ndarray         # (n, K) dual weights the filters expand over
    filter_coef: np.ndarray  # F (T, r)
    weights: np.ndarray      # W (r, T)
    primal: float            # P(A) of the recovered network
    scores: np.ndarray       # f(x_i) on the training images, (n, K)
    method: str              # "dual_subspace", "closed_form" or "primal_point"
    rank_candidates: tuple   # the ranks tried on the dual subspace, in order
    filters: np.ndarray = None  # explicit filters (m, r) when not given as G(beta) F


def conv_outputs(H, filter_coef):
    """Pooled conv outputs u[i, q, l] = sum_t H[i, q, t] F[t, l]."""
    return H @ filter_coef


def network_scores(U, weights, K):
    """f[i, c] = sum_q u[i, q, :] . W[:, q*K + c]."""
    r = weights.shape[0]
    Q = U.shape[1]
    return np.einsum("iql,lqc->ic", U, weights.reshape(r, Q, K), optimize=True)


def _network(H, beta, F, W, Y, loss, mu, method, candidates):
    """Rotate to the singular basis of W (filters ordered by strength), drop null filters and
    evaluate the exact primal objective of what is kept."""
    P, W, s = singular_basis(W)
    F = F @ P
    scores = network_scores(conv_outputs(H, F), W, Y.shape[1])
    return Recovery(beta, F, W, primal_objective(s**2, scores, Y, loss, mu), scores, method,
                    tuple(candidates))


def reduced_solve(U, Y, loss, mu, W0, tol, max_iter, random_state):
    """min_W ||W||_* + mu/2 ||W||_F^2 + C sum loss over the explicit features U (n, Q, r)."""
    feats = ExplicitFeatures(U)
    if loss.name in LOSS_CURVATURE:
        W, _, _, _, _ = factored_primal(feats, Y, loss, mu, tol=tol, max_iter=max_iter, A0=W0,
                                        random_state=random_state)
        return W
    # the hinge loss is not smooth: ADMM, whose inner coordinate descent handles it (the ALM
    # dual returned A = 0 on digits, n = 60, C = 0.1, where ADMM's optimum is 13.33 against 60)
    W, _, _, _, _ = admm(feats, Y, loss, mu, tol=tol, max_iter=max_iter, A0=W0,
                         random_state=random_state)
    return W


def _candidate_ranks(lam, solver_gap, max_rank):
    """Numbers of eigenvalues within 1 - tau of 1 for tau = sqrt(gap) * 10^k, increasing."""
    tau = np.sqrt(max(solver_gap, np.finfo(float).eps))
    ranks = []
    while True:
        r = min(max(1, int(np.sum(lam >= 1.0 - tau))), max_rank)
        if not ranks or r > ranks[-1]:
            ranks.append(r)
        if r >= max_rank or tau >= 1.0:
            return ranks
        tau *= 10.0


def _from_dual_subspace(H, beta, Y, loss, mu, accept, *, solver_gap, tol, max_filters,
                        max_iter, random_state):
    """SPEC §4: filters from the eigenvectors of M(alpha) at eigenvalue 1 (mu = 0) or above 1
    (mu > 0), linear weights from the reduced problem (closed form for mu > 0)."""
    T = H.shape[2]
    lam, V = scipy.linalg.eigh(gram_M(H, beta))
    lam, V = lam[::-1], V[:, ::-1]
    usable = int(np.sum(lam > EIGENVALUE_FLOOR * max(lam[0], np.finfo(float).tiny)))
    max_rank = usable if max_filters is None else min(usable, max_filters)
    if max_rank == 0:
        return _network(H, beta, np.zeros((T, 0)), np.zeros((0, T)), Y, loss, mu,
                        "dual_subspace", [0])
    W = np.zeros((0, T))
    ranks = _candidate_ranks(lam, solver_gap, max_rank)
    if mu > 0:
        sigma = np.sqrt(lam[:max_rank])
        r = max(1, int(np.sum(sigma > 1.0)))
        W = (np.maximum(sigma[:r] - 1.0, 0.0) / mu)[:, None] * V[:, :r].T
        rec = _network(H, beta, V[:, :r] / sigma[:r], W, Y, loss, mu, "closed_form", [r])
        if accept(rec):
            return rec
        ranks = [r] + [k for k in ranks if k > r]
    best, tried = None, []
    for r in ranks:
        tried.append(r)
        F = V[:, :r] / np.sqrt(lam[:r])
        W0 = np.zeros((r, T))
        W0[:W.shape[0]] = W
        W = reduced_solve(conv_outputs(H, F), Y, loss, mu, W0, 0.5 * tol, max_iter, random_state)
        rec = _network(H, beta, F, W, Y, loss, mu, "dual_subspace", tried)
        if best is None or rec.primal < best.primal:
            best = rec
        if accept(rec):
            break
    best.rank_candidates = tuple(tried)
    return best


def _from_primal_point(H, beta, Sigma, Y, loss, mu, *, tol, max_filters, max_iter,
                       random_state):
    """Factorise the solver's primal point A = G(beta) Sigma: with A^T A = Sigma M Sigma =
    R diag(s^2) R^T, the filters are G(beta) Sigma R / s and the weights diag(s) R^T."""
    T = H.shape[2]
    AtA = Sigma @ gram_M(H, beta) @ Sigma
    s2, R = scipy.linalg.eigh(0.5 * (AtA + AtA.T))
    s2, R = s2[::-1], R[:, ::-1]
    keep = s2 > SINGULAR_VALUE_FLOOR**2 * max(s2[0], 0.0)
    s, R = np.sqrt(s2[keep]), R[:, keep]
    F, W = (Sigma @ R) / s, s[:, None] * R.T
    if max_filters is not None and W.shape[0] > max_filters:
        F, W = F[:, :max_filters], W[:max_filters]
        W = reduced_solve(conv_outputs(H, F), Y, loss, mu, W, 0.5 * tol, max_iter, random_state)
    if W.shape[0] == 0:
        F, W = np.zeros((T, 0)), np.zeros((0, T))
    return _network(H, beta, F, W, Y, loss, mu, "primal_point", [])


def recover(dual_point, Y, loss, mu, dual_value, *, solver_gap, tol, primal_point=None,
            fallback=None, max_filters=None, max_iter=20000, random_state=None):
    """Recover the network from a dual solution.

    ``dual_point = (H, beta)``: the certified dual point's weights and ``H = cross(beta)``
    (n, Q, T); ``dual_value``: D(alpha_hat), the certified lower bound. The rank on the dual
    subspace grows until the relative gap ``(P - D) / max(1, |P|)`` is at most
    ``max(tol, solver_gap)``. The subspace of an approximate dual point is off by
    O(sqrt(gap)), which can cost more than ``tol`` on ill-conditioned problems; the solver's
    own primal point ``primal_point = (H, beta, Sigma)``, ``A = G(beta) Sigma``, is then
    factorised as well (or a ready ``fallback`` Recovery is taken) and the better network kept.
    """
    target = max(tol, solver_gap)

    def accept(rec):
        return (rec.primal - dual_value) / max(1.0, abs(rec.primal)) <= target

    H, beta = dual_point
    rec = _from_dual_subspace(H, beta, Y, loss, mu, accept, solver_gap=solver_gap, tol=tol,
                              max_filters=max_filters, max_iter=max_iter,
                              random_state=random_state)
    if accept(rec) or (primal_point is None and fallback is None):
        return rec
    alt = fallback if fallback is not None else _from_primal_point(
        *primal_point, Y, loss, mu, tol=tol, max_filters=max_filters, max_iter=max_iter,
        random_state=random_state)
    if alt.primal < rec.primal:
        alt.rank_candidates = rec.rank_candidates
        return alt
    return rec


def singular_basis(W):
    """W = P diag(s) Rt with the numerically zero singular values dropped.
    Returns (P (rows, r), diag(s) Rt (r, cols), s)."""
    if W.size == 0:
        return np.zeros((W.shape[0], 0)), np.zeros((0, W.shape[1])), np.zeros(0)
    P, s, Rt = scipy.linalg.svd(W, full_matrices=False)
    # relative to the largest, and absolute: when A = 0 is optimal (tiny C) the solvers
    # leave weights of rounding size, which are no filters
    keep = s > SINGULAR_VALUE_FLOOR * max(s[0], 1.0)
    return P[:, keep], s[keep, None] * Rt[keep], s[keep]
