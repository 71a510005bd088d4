"""The inner problem of the saddle form (SPEC §3) for a fixed multiplier Sigma:

    max_alpha  L(alpha) - 1/2 tr(Sigma M(alpha))

a kernel machine over the n*K dual coordinates, solved by the C++ dual coordinate descent
(LIBSVM style on the contracted Gram for kernel blocks, LIBLINEAR style on explicit features).
"""

import numpy as np

from .._backend import get_backend

LOSS_CODES = {"squared_hinge": 0, "hinge": 1, "logistic": 2, "squared": 3}


class InnerSolver:
    """Warm-started dual coordinate descent; holds alpha between calls."""

    def __init__(self, feats, Y, loss, alpha0=None, seed=0, backend="auto"):
        self.feats, self.Y, self.loss = feats, Y, loss
        n, K = Y.shape
        self.sign = (Y if loss.margin else np.ones_like(Y)).reshape(-1).astype(np.float64)
        if loss.name == "squared":
            self.lin = -Y.reshape(-1).astype(np.float64)
        elif loss.name == "logistic":
            self.lin = np.zeros(n * K)
        else:
            self.lin = -np.ones(n * K)
        if alpha0 is None:
            # logistic needs an interior start; the others start at zero (LIBLINEAR's choice)
            alpha0 = np.full((n, K), 1e-3 * loss.C) if loss.name == "logistic" else np.zeros((n, K))
        self.alpha = np.ascontiguousarray(loss.project(np.asarray(alpha0, dtype=np.float64)).reshape(-1))
        self.seed = seed
        self.epochs = 0
        self.core = get_backend(backend)

    def solve(self, Sigma, tol, max_epochs=2000):
        """alpha maximising the inner problem for ``Sigma``; returns (alpha (n, K), converged)."""
        K = self.Y.shape[1]
        code = LOSS_CODES[self.loss.name]
        self.seed += 1
        gram = self.feats.contracted_gram(Sigma, K)
        gram *= np.outer(self.sign, self.sign)
        epochs, _, converged = self.core.dual_cd_dense(
            gram, self.lin, self.alpha, code, self.loss.C, tol, max_epochs, True, self.seed)
        self.epochs += epochs
        return self.alpha.reshape(self.Y.shape), converged

