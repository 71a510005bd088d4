"""Losses of the primal (SPEC §2) and the matching dual terms L(alpha) (SPEC §3).

Dual variables alpha (n, K); beta = alpha * y for the margin losses and beta = alpha for
"squared". Each loss knows its value, its dual term, the box alpha lives in, and the dual
point its KKT conditions give for scores f (alpha = -C * d loss / d f, in beta units).

With sample weights w, sample i's loss counts C w_i: ``C`` is then an (n, 1) array, which
every formula below broadcasts against the (n, K) arrays of scores and dual variables.
"""

import numpy as np
from scipy.special import expit, xlogy

LOSSES = ("squared_hinge", "hinge", "logistic", "squared")
MARGIN_LOSSES = ("squared_hinge", "hinge", "logistic")


class Loss:
    name = None
    margin = True  # y in {-1, +1} and beta = alpha * y

    def __init__(self, C, sample_weight=None):
        self.C = float(C) if sample_weight is None else \
            float(C) * np.asarray(sample_weight, dtype=np.float64).reshape(-1, 1)

    @property
    def C_max(self):
        return float(np.max(self.C))

    @property
    def C_min(self):
        return float(np.min(self.C))

    def row_C(self):
        """The C of every sample (n,) where they differ, else None."""
        return None if np.ndim(self.C) == 0 else np.ascontiguousarray(self.C[:, 0])

    def elementwise(self, F, Y):
        """loss(f, y) of every sample and output (without the factor C)."""
        raise NotImplementedError

    def cost(self, F, Y):
        """The primal's loss term: sum over samples and outputs of C_i loss(f, y)."""
        return float(np.sum(self.C * self.elementwise(F, Y)))

    def dual_term(self, alpha, Y):
        """L(alpha) = -C sum loss*(-alpha / C)."""
        raise NotImplementedError

    def bounds(self):
        """(lower, upper) box for alpha (None: unbounded)."""
        raise NotImplementedError

    def kkt_alpha(self, F, Y):
        """alpha given by the optimality conditions at scores F."""
        raise NotImplementedError

    def beta(self, alpha, Y):
        return alpha * Y if self.margin else alpha

    def project(self, alpha):
        lo, hi = self.bounds()
        return np.clip(alpha, lo, hi) if (lo is not None or hi is not None) else alpha


class SquaredHinge(Loss):
    name = "squared_hinge"

    def elementwise(self, F, Y):
        return np.maximum(0.0, 1.0 - Y * F) ** 2

    def dual_term(self, alpha, Y):
        return float(np.sum(alpha - alpha**2 / (4.0 * self.C)))

    def bounds(self):
        return 0.0, None

    def kkt_alpha(self, F, Y):
        return 2.0 * self.C * np.maximum(0.0, 1.0 - Y * F)


class Hinge(Loss):
    name = "hinge"

    def elementwise(self, F, Y):
        return np.maximum(0.0, 1.0 - Y * F)

    def dual_term(self, alpha, Y):
        return float(alpha.sum())

    def bounds(self):
        return 0.0, self.C

    def kkt_alpha(self, F, Y):
        return np.where(Y * F < 1.0, self.C, 0.0)


class Logistic(Loss):
    name = "logistic"

    def elementwise(self, F, Y):
        return np.logaddexp(0.0, -Y * F)

    def dual_term(self, alpha, Y):
        C = self.C
        a = np.clip(alpha, 0.0, C)
        return float(np.sum(xlogy(C, C) - xlogy(a, a) - xlogy(C - a, C - a)))

    def bounds(self):
        return 0.0, self.C

    def kkt_alpha(self, F, Y):
        return self.C * expit(-Y * F)


class Squared(Loss):
    name = "squared"
    margin = False

    def elementwise(self, F, Y):
        return (F - Y) ** 2

    def dual_term(self, alpha, Y):
        return float(np.sum(alpha * Y - alpha**2 / (4.0 * self.C)))

    def bounds(self):
        return None, None

    def kkt_alpha(self, F, Y):
        return 2.0 * self.C * (Y - F)


_LOSS_CLASSES = {cls.name: cls for cls in (SquaredHinge, Hinge, Logistic, Squared)}


def get_loss(name, C, sample_weight=None):
    if not isinstance(name, str) or name not in _LOSS_CLASSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {name!r}")
    return _LOSS_CLASSES[name](C, sample_weight)
