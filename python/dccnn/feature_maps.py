"""Explicit feature maps of patches (SPEC §5): fitted on training patches, applied to any
patches, each followed by average pooling. ``LinearMap`` is the linear kernel's own map,
``NystroemMap`` the Nystroem approximation of any kernel (landmarks drawn uniformly or by
k-means++), ``RandomFourierMap`` random Fourier features of the rbf kernel."""

import numpy as np
import scipy.linalg

from .kernels import kernel_matrix


class PatchFeatureMap:
    """z -> phi(z) = nonlinear(z) @ linear in R^m, then average pooling: (n, P, d) patches ->
    (n, Q, m) features. Pooling is linear, so ``linear`` (None: the identity) is applied to the
    pooled windows rather than to every patch: P / Q times fewer flops for the Nystroem
    whitening, which dominated the feature map's cost (bench/README.md)."""

    linear = None

    def __init__(self, pooling):
        self.pooling = pooling

    def nonlinear(self, Zflat):
        raise NotImplementedError

    def transform(self, Z, batch_size=256):
        n, Q = Z.shape[0], self.pooling.n_windows
        self.pooling.check_consistent()  # pool() reads the windows off the grid
        out = np.empty((n, Q, self.n_components), dtype=Z.dtype)
        for s in range(0, n, batch_size):
            Zb = Z[s:s + batch_size]
            raw = self.nonlinear(Zb.reshape(-1, Zb.shape[2])).reshape(Zb.shape[0], Zb.shape[1], -1)
            pooled = self.pooling.pool(raw)
            if self.linear is not None:
                # one GEMM over the batch's windows: a 3-d @ 2-d matmul runs one small GEMM
                # per image (16 x 500 x 500 on digits: 2.3x slower)
                pooled = (pooled.reshape(-1, raw.shape[2]) @ self.linear).reshape(
                    Zb.shape[0], Q, -1)
            out[s:s + batch_size] = pooled
        return out


class LinearMap(PatchFeatureMap):
    """The linear kernel's own feature map (+ sqrt(constant) as an extra coordinate)."""

    def __init__(self, pooling, constant=0.0):
        super().__init__(pooling)
        self.constant = constant

    def fit(self, Z):
        self.n_components = Z.shape[2] + (1 if self.constant > 0 else 0)
        return self

    def nonlinear(self, Zflat):
        if self.constant > 0:
            col = np.full((Zflat.shape[0], 1), np.sqrt(self.constant), dtype=Zflat.dtype)
            return np.hstack([Zflat, col])
        return Zflat


# How Nystroem landmarks are drawn from the training patches (SPEC §5).
LANDMARKS = ("uniform", "kmeans++")
# k-means++ seeding costs O(N m d) on N candidate patches: it draws from a uniform sample of
# at most this many (times m / 500 for more landmarks) rather than from every patch.
KMEANS_POOL = 20000


class NystroemMap(PatchFeatureMap):
    """phi(z) = K_LL^(-1/2) k_L(z) for m landmark patches (a uniform sample of the training
    patches, or k-means++ seeds among them with ``landmarks="kmeans++"``, or all of them when
    m >= their number); eigenvalues of K_LL below ``floor * largest`` are dropped."""

    landmarks = "uniform"  # (maps saved before the choice existed)

    def __init__(self, pooling, kernel_params, n_components, random_state=None, floor=1e-10,
                 n_jobs=None, backend="auto", device="cpu", landmarks="uniform"):
        super().__init__(pooling)
        self.kernel_params = kernel_params
        self.m = n_components
        self.landmarks = landmarks
        self.random_state = random_state
        self.floor = floor
        self.n_jobs = n_jobs
        self.backend = backend
        self.device = device

    def _k(self, A, B):
        p = self.kernel_params
        return kernel_matrix(A, B, p.kernel, gamma=p.gamma, degree=p.degree, coef0=p.coef0,
                             constant=p.constant, n_jobs=self.n_jobs, backend=self.backend,
                             device=self.device)

    def fit(self, Z):
        flat = Z.reshape(-1, Z.shape[2])
        rng = np.random.default_rng(self.random_state)
        if self.m is None or self.m >= flat.shape[0]:
            L = flat
        elif self.landmarks == "kmeans++":
            L = kmeans_plusplus_landmarks(flat, self.m, rng)
        else:
            L = flat[np.sort(rng.choice(flat.shape[0], self.m, replace=False))]
        KLL = self._k(L, L).astype(np.float64)
        evals, evecs = scipy.linalg.eigh(KLL)
        keep = evals > self.floor * max(evals[-1], np.finfo(float).tiny)
        self.landmarks_ = L
        self.whitening_ = (evecs[:, keep] / np.sqrt(evals[keep])).astype(Z.dtype)
        self.n_components = int(keep.sum())
        return self

    @property
    def linear(self):
        return self.whitening_

    def nonlinear(self, Zflat):
        return self._k(Zflat, self.landmarks_)


def kmeans_plusplus_landmarks(flat, m, rng):
    """m of the patches ``flat`` (N, d) chosen by k-means++ seeding (scikit-learn's
    ``kmeans_plusplus``: each next landmark drawn with probability proportional to its squared
    distance to the nearest chosen one), so that they spread over the patches' distribution
    instead of crowding where patches are dense; from a uniform pool of KMEANS_POOL * max(1,
    m / 500) patches when there are more."""
    from sklearn.cluster import kmeans_plusplus

    pool_size = int(KMEANS_POOL * max(1.0, m / 500))
    pool = flat if flat.shape[0] <= pool_size else \
        flat[np.sort(rng.choice(flat.shape[0], pool_size, replace=False))]
    _, index = kmeans_plusplus(pool, m, random_state=int(rng.integers(2**31 - 1)))
    return pool[np.sort(index)]


class RandomFourierMap(PatchFeatureMap):
    """phi(z) = sqrt(2/m) cos(z W + b), W ~ N(0, 2 gamma), b ~ U[0, 2 pi] (rbf only)."""

    def __init__(self, pooling, gamma, n_components, random_state=None, constant=0.0):
        super().__init__(pooling)
        self.gamma = gamma
        self.m = n_components
        self.random_state = random_state
        self.constant = constant

    def fit(self, Z):
        rng = np.random.default_rng(self.random_state)
        d = Z.shape[2]
        self.W_ = rng.normal(0.0, np.sqrt(2 * self.gamma), (d, self.m)).astype(Z.dtype)
        self.b_ = rng.uniform(0, 2 * np.pi, self.m).astype(Z.dtype)
        self.n_components = self.m + (1 if self.constant > 0 else 0)
        return self

    def nonlinear(self, Zflat):
        out = np.sqrt(2.0 / self.m) * np.cos(Zflat @ self.W_ + self.b_)
        if self.constant > 0:
            out = np.hstack([out, np.full((out.shape[0], 1), np.sqrt(self.constant), out.dtype)])
        return out.astype(Zflat.dtype, copy=False)
