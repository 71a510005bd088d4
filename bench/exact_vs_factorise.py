"""Exact kernel back-end vs "factorise the kernel matrix, then solve the primal" (issue 3).

The CCNN way to train with an exact kernel is to factorise the nP x nP patch kernel matrix
(here: eigendecomposition, i.e. Nystroem with every training patch as a landmark, keeping the
eigenvalues above 1e-10 of the largest), then to solve the primal on the resulting explicit
features. The dual needs only the pooled blocks K_ij (n^2 Q^2 values) and never the nP x nP
matrix. Both solve the same problem, so their optimal objectives must agree.

Each (method, n) runs in its own subprocess, which reports its peak RSS. Data: scikit-learn
digits, binary task "digit < 5" (K = 1), 3x3 patches (P = 36), 2x2 pooling with stride 2
(Q = 9), rbf with gamma = 1/9, squared hinge, C = 1; the exact blocks are solved with the ALM
dual and with ADMM, the factorised features with the factored primal (the fastest primal
solver here), all to the same certified gap.

    PYTHONPATH=python python bench/exact_vs_factorise.py
    PYTHONPATH=python python bench/exact_vs_factorise.py --n 50 100 --tol 1e-3 --methods exact-admm
    PYTHONPATH=python python bench/exact_vs_factorise.py --n 600 --methods exact-admm --budget 1 0.5 0.1

``--budget`` below 1 gives the exact back-end a ``max_memory`` of that fraction of its blocks:
it holds the upper triangle of the blocks, or as much of it as fits, and evaluates the rest
again on each pass.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits

from dccnn._threads import scipy_blas_single_thread
from dccnn.feature_maps import NystroemMap
from dccnn.features import ExplicitFeatures, exact_features
from dccnn.kernels import resolve_kernel
from dccnn.losses import get_loss
from dccnn.patches import extract_patches, patch_grid_shape
from dccnn.pooling import make_pooling
from dccnn.solvers.admm import admm
from dccnn.solvers.dual import solve_dual
from dccnn.solvers.factored import factored_primal


def problem(n):
    digits = load_digits()
    X = digits.images[:n, None] / 16.0
    Y = np.where(digits.target[:n] < 5, 1.0, -1.0)[:, None]
    Z = extract_patches(X, 3, 1, 0)
    pooling = make_pooling(patch_grid_shape(X.shape[2:], 3, 1, 0), 2, 2)
    return Z, pooling, resolve_kernel("rbf", Z.shape[2]), Y


def worker(method, n, tol, budget):
    Z, pooling, params, Y = problem(n)
    loss = get_loss("squared_hinge", 1.0)
    start = time.perf_counter()
    held = ""
    if method in ("exact-alm", "exact-admm"):
        blocks_bytes = n * n * pooling.n_windows**2 * 8
        feats = exact_features(Z, pooling, params,
                               max_memory=None if budget >= 1 else int(budget * blocks_bytes))
        setup = time.perf_counter() - start
        held = f"{feats.held_share:.0%}"
        if method == "exact-alm":
            cert = solve_dual(feats, Y, loss, tol=tol, max_iter=100).certificate
        else:
            _, _, cert, _, _ = admm(feats, Y, loss, tol=tol, max_iter=20000)
        dims = f"blocks {n}x{n}x{pooling.n_windows}^2"
    else:
        fmap = NystroemMap(pooling, params, None).fit(Z)
        feats = ExplicitFeatures(fmap.transform(Z).astype(np.float64))
        setup = time.perf_counter() - start
        _, _, cert, _, _ = factored_primal(feats, Y, loss, tol=tol, max_iter=20000)
        dims = f"K {n * Z.shape[1]}^2, rank {fmap.n_components}"
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(method=method, n=n, setup=setup, total=total, peak_mib=peak, gap=cert.gap,
                primal=cert.primal, dims=dims, held=held)


LABELS = {"exact-alm": "exact blocks + ALM dual", "exact-admm": "exact blocks + ADMM",
          "factorise": "factorise + factored primal"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", default=[50, 100, 200, 300])
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--methods", nargs="*", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--budget", type=float, nargs="*", default=[1.0],
                        help="max_memory of the exact back-end as fractions of its blocks' "
                             "size: below 1 it holds their upper triangle, or as much of it as "
                             "fits, and evaluates the rest again on each pass")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "BUDGET"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        # as in fit_layer: scipy's vendored BLAS (ADMM's axpys, L-BFGS-B) on one thread, or
        # its spinning workers and numpy's take the cores from each other (5x slower here)
        with warnings.catch_warnings(), scipy_blas_single_thread():
            warnings.simplefilter("ignore")
            print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.tol,
                                    float(args.worker[2]))))
        return 0
    print(f"tol = {args.tol:g}; threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("| n | method | sizes | image pairs whose blocks are held | kernel / factorisation s | "
          "total s | peak RSS MiB | gap | primal objective |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        for method in args.methods:
            for budget in args.budget if method.startswith("exact") else [1.0]:
                out = subprocess.run([sys.executable, __file__, "--tol", str(args.tol),
                                      "--worker", method, str(n), str(budget)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {n} | {LABELS[method]} | {r['dims']} | {r['held']} | "
                      f"{r['setup']:.2f} | {r['total']:.2f} | {r['peak_mib']:.0f} | "
                      f"{r['gap']:.1e} | {r['primal']:.6f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
