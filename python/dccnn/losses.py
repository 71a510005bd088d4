"""Losses of the primal (SPEC §2) and the matching dual terms L(alpha) (SPEC §3).

Dual variables alpha (n, K); beta = alpha * y for the margin losses and beta = alpha for
"squared". Each loss knows its value, its dual term, the box alpha lives in, and the dual
point its KKT conditions give for scores f (alpha = -C * d loss / d f, in beta units).
"""

import numpy as np
from scipy.special import expit, xlogy

LOSSES = ("squared_hinge", "hinge", "logistic", "squared")
MARGIN_LOSSES = ("squared_hinge", "hinge", "logistic")


class Loss:
    name = None
    margin = True  # y in {-1, +1} and beta = alpha * y

    def __init__(self, C):
        self.C = float(C)

    def value(self, F, Y):
        """sum over samples and outputs of loss(f, y) (without the factor C)."""
        raise NotImplementedError

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

    def value(self, F, Y):
        return float(np.sum(np.maximum(0.0, 1.0 - Y * F) ** 2))

    def dual_term(self, alpha, Y):
        return float(alpha.sum() - (alpha**2).sum() / (4.0 * self.C))

    def bounds(self):
        return 0.0, None

    def kkt_alpha(self, F, Y):
        return 2.0 * self.C * np.maximum(0.0, 1.0 - Y * F)


class Hinge(Loss):
    name = "hinge"

    def value(self, F, Y):
        return float(np.sum(np.maximum(0.0, 1.0 - Y * F)))

    def dual_term(self, alpha, Y):
        return float(alpha.sum())

    def bounds(self):
        return 0.0, self.C

    def kkt_alpha(self, F, Y):
        return np.where(Y * F < 1.0, self.C, 0.0)


class Logistic(Loss):
    name = "logistic"

    def value(self, F, Y):
        return float(np.sum(np.logaddexp(0.0, -Y * F)))

    def dual_term(self, alpha, Y):
        C = self.C
        a = np.clip(alpha, 0.0, C)
        return float(-(xlogy(a, a) + xlogy(C - a, C - a)).sum() + a.size * C * np.log(C))

    def bounds(self):
        return 0.0, self.C

    def kkt_alpha(self, F, Y):
        return self.C * expit(-Y * F)


class Squared(Loss):
    name = "squared"
    margin = False

    def value(self, F, Y):
        return float(np.sum((F - Y) ** 2))

    def dual_term(self, alpha, Y):
        return float((alpha * Y).sum() - (alpha**2).sum() / (4.0 * self.C))

    def bounds(self):
        return None, None

    def kkt_alpha(self, F, Y):
        return 2.0 * self.C * (Y - F)


_LOSS_CLASSES = {cls.name: cls for cls in (SquaredHinge, Hinge, Logistic, Squared)}


def get_loss(name, C):
    if not isinstance(name, str) or name not in _LOSS_CLASSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {name!r}")
    return _LOSS_CLASSES[name](C)
