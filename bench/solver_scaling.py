"""Certified solvers on explicit features as n grows (issue 3): time to a relative gap.

One process, same features for every solver of a row: FISTA + SVT (the CCNN-style primal
baseline), the ALM dual (`solver="dual"`) and the factored primal (`solver="factored"`). Data:
scikit-learn digits plus rotated copies (uniform angle in +-25 degrees, a fresh angle per copy),
binary task "digit < 5" (K = 1), 3x3 patches, 2x2 pooling with stride 2 (Q = 9), rbf Nystroem
features with m landmarks, squared hinge loss, C = 1.

    OMP_NUM_THREADS=1 PYTHONPATH=python python bench/solver_scaling.py
    OMP_NUM_THREADS=1 PYTHONPATH=python python bench/solver_scaling.py --n 500 1000 --tol 1e-4

Each solver gets the same iteration cap; a row whose gap is above tol says so.
"""

import argparse
import sys
import time
import warnings

import numpy as np
import scipy.ndimage
from sklearn.datasets import load_digits

from dccnn.feature_maps import NystroemMap
from dccnn.features import ExplicitFeatures
from dccnn.kernels import resolve_kernel
from dccnn.losses import get_loss
from dccnn.patches import extract_patches, patch_grid_shape
from dccnn.pooling import make_pooling
from dccnn.solvers.dual import solve_dual
from dccnn.solvers.factored import factored_primal
from dccnn.solvers.fista import fista


def rotated_digits(n, seed=0, max_angle=25.0):
    """n images: the digits first, then rotated copies of them."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    images, labels = [digits.images / 16.0], [digits.target]
    while sum(len(x) for x in images) < n:
        angles = rng.uniform(-max_angle, max_angle, len(digits.images))
        images.append(np.stack([scipy.ndimage.rotate(img, a, reshape=False, order=1)
                                for img, a in zip(digits.images / 16.0, angles)]))
        labels.append(digits.target)
    return np.concatenate(images)[:n, None], np.concatenate(labels)[:n]


def features(n, m, seed=0):
    X, labels = rotated_digits(n, seed)
    Y = np.where(labels < 5, 1.0, -1.0)[:, None]
    Z = extract_patches(X, 3, 1, 0)
    pooling = make_pooling(patch_grid_shape(X.shape[2:], 3, 1, 0), 2, 2)
    fmap = NystroemMap(pooling, resolve_kernel("rbf", Z.shape[2]), m, random_state=seed)
    return ExplicitFeatures(fmap.fit(Z).transform(Z).astype(np.float64)), Y


def timed(fn):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn()
    return out, time.perf_counter() - start


def run(n, m, tol, max_iter):
    feats, Y = features(n, m)
    loss = get_loss("squared_hinge", 1.0)
    rows = []
    (_, _, cert, it, _), secs = timed(lambda: fista(feats, Y, loss, tol=tol, max_iter=max_iter))
    rows.append(("FISTA (primal)", it, secs, cert.gap))
    res, secs = timed(lambda: solve_dual(feats, Y, loss, tol=tol, max_iter=max_iter))
    rows.append((f"ALM dual ({res.n_iter} outer)", res.inner_epochs, secs, res.certificate.gap))
    (_, _, cert, it, _), secs = timed(
        lambda: factored_primal(feats, Y, loss, tol=tol, max_iter=max_iter))
    rows.append(("factored primal (L-BFGS)", it, secs, cert.gap))
    fista_secs = rows[0][2]
    for method, work, secs, gap in rows:
        flag = "" if gap <= tol else " (not reached)"
        print(f"| {n} | {method} | {work} | {secs:.2f} | {gap:.1e}{flag} | "
              f"{secs / fista_secs:.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", default=[500, 1000, 2000, 4000])
    parser.add_argument("--m", type=int, default=32, help="Nystroem landmarks")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=20000)
    args = parser.parse_args(argv)
    print(f"m = {args.m}, tol = {args.tol:g}, iteration cap {args.max_iter}")
    print("| n | method | iterations / evaluations | seconds | gap | time / FISTA |")
    print("|---|---|---|---|---|---|")
    for n in args.n:
        run(n, args.m, args.tol, args.max_iter)


if __name__ == "__main__":
    sys.exit(main())
