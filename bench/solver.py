"""The certified dual solver against the FISTA primal baseline (issue 3).

Both solvers run in one process on the same features; the table gives iterations (FISTA) or
inner evaluations (dual: cross products), seconds, the relative gap reached and the time ratio
dual / FISTA. Problems: scikit-learn digits (8x8), 3x3 patches, 2x2 average pooling with
stride 2 (Q = 9), rbf kernel with gamma = 1/9, C = 1.

    OMP_NUM_THREADS=1 PYTHONPATH=python python bench/solver.py            # every row
    OMP_NUM_THREADS=1 PYTHONPATH=python python bench/solver.py --only 0 3  # some rows
"""

import argparse
import sys
import time

import numpy as np
from sklearn.datasets import load_digits

from dccnn.feature_maps import LinearMap, NystroemMap, RandomFourierMap
from dccnn.features import ExplicitFeatures, exact_features
from dccnn.kernels import resolve_kernel
from dccnn.losses import get_loss
from dccnn.patches import extract_patches, patch_grid_shape
from dccnn.pooling import make_pooling
from dccnn.solvers.dual import solve_dual
from dccnn.solvers.fista import fista

FISTA_MAX_ITER = 30000

# (features, n, K, m, loss, tol); K = number of digit classes used (one-vs-rest)
PROBLEMS = [
    ("nystroem", 200, 3, 32, "squared_hinge", 1e-6),
    ("nystroem", 500, 10, 64, "squared_hinge", 1e-6),
    ("nystroem", 1000, 10, 100, "squared_hinge", 1e-6),
    ("random_fourier", 200, 3, 64, "squared_hinge", 1e-6),
    ("random_fourier", 1000, 10, 100, "squared_hinge", 1e-6),
    ("linear", 200, 3, None, "squared_hinge", 1e-6),
    ("nystroem", 200, 3, 32, "logistic", 1e-6),
    ("nystroem", 200, 3, 32, "squared", 1e-6),
    ("nystroem", 200, 3, 32, "hinge", 1e-6),
    ("exact", 300, 10, None, "squared_hinge", 1e-4),
    ("exact", 300, 10, None, "squared_hinge", 1e-6),
]


def digits_features(kind, n, K, m, seed=0):
    digits = load_digits()
    keep = digits.target < K
    X = digits.images[keep][:n, None] / 16.0
    labels = digits.target[keep][:n]
    Y = np.where(labels[:, None] == np.arange(K)[None], 1.0, -1.0)
    pooling = make_pooling(patch_grid_shape(X.shape[2:], 3, 1, 0), 2, 2)
    Z = extract_patches(X, 3, 1, 0)
    params = resolve_kernel("linear" if kind == "linear" else "rbf", Z.shape[2])
    if kind == "exact":
        return exact_features(Z, pooling, params), Y
    if kind == "nystroem":
        fmap = NystroemMap(pooling, params, m, random_state=seed)
    elif kind == "random_fourier":
        fmap = RandomFourierMap(pooling, params.gamma, m, random_state=seed)
    else:
        fmap = LinearMap(pooling)
    return ExplicitFeatures(fmap.fit(Z).transform(Z).astype(np.float64)), Y


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(problem):
    kind, n, K, m, loss_name, tol = problem
    feats, Y = digits_features(kind, n, K, m)
    loss = get_loss(loss_name, 1.0)
    label = f"{kind}{'' if m is None else f' m={feats.m}'}, n={n}, K={K}, {loss_name}, tol {tol:g}"
    rows = []
    fista_seconds = None
    if kind != "exact" and loss_name != "hinge":
        (_, _, cert, it, _), fista_seconds = timed(
            lambda: fista(feats, Y, loss, tol=tol, max_iter=FISTA_MAX_ITER))
        rows.append((label, "FISTA (primal)", it, fista_seconds, cert.gap))
    res, seconds = timed(lambda: solve_dual(feats, Y, loss, tol=tol))
    rows.append((label, f"ALM dual ({res.n_iter} outer)", res.inner_epochs, seconds,
                 res.certificate.gap))
    for label, method, work, secs, gap in rows:
        ratio = "" if fista_seconds is None else f"{secs / fista_seconds:.2f}"
        print(f"| {label} | {method} | {work} | {secs:.2f} | {gap:.1e} | {ratio} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="*", help="row numbers of PROBLEMS to run")
    args = parser.parse_args(argv)
    chosen = range(len(PROBLEMS)) if not args.only else args.only
    print("| problem | method | iterations / evaluations | seconds | gap | time / FISTA |")
    print("|---|---|---|---|---|---|")
    for index in chosen:
        run(PROBLEMS[index])


if __name__ == "__main__":
    sys.exit(main())
