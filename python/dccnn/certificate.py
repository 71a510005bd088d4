"""Primal and dual objectives and the duality-gap certificate (SPEC §2-3)."""

from dataclasses import dataclass

import numpy as np


def dual_objective(alpha, Y, M_eigvals, loss, mu):
    """D at the feasible point the certificate uses, and that point's scale.

    mu = 0: alpha_hat = alpha / max(1, sigma_max), D = L(alpha_hat) (feasible for every loss).
    mu > 0: D = L(alpha) - 1/(2 mu) sum max(0, sigma_j - 1)^2, no rescaling.
    """
    sigma = np.sqrt(np.maximum(M_eigvals, 0.0))
    if mu == 0:
        scale = max(1.0, float(sigma.max(initial=0.0)))
        return loss.dual_term(alpha / scale, Y), scale
    return loss.dual_term(alpha, Y) - float((np.maximum(0.0, sigma - 1.0) ** 2).sum()) / (2 * mu), 1.0


def primal_objective(AtA_eigvals, F, Y, loss, mu):
    """P(A) = ||A||_* + mu/2 ||A||_F^2 + sum_i C_i loss(F_i, Y_i) from the eigenvalues of A^T A
    (C_i = C, or C times sample i's weight)."""
    ev = np.maximum(AtA_eigvals, 0.0)
    return float(np.sqrt(ev).sum() + 0.5 * mu * ev.sum() + loss.cost(F, Y))


@dataclass
class Certificate:
    primal: float
    dual: float
    dual_scale: float  # alpha_hat = alpha / dual_scale

    @property
    def gap(self):
        return max(self.primal - self.dual, 0.0) / max(1.0, abs(self.primal))

    @property
    def signed_gap(self):
        return (self.primal - self.dual) / max(1.0, abs(self.primal))
