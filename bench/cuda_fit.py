"""Whole fits of the exact back-end on the GPU (device="cuda") against the CPU core (issue 7).

    python bench/cuda_fit.py                                  # n = 300, 1000; budgets 1, 0.25
    python bench/cuda_fit.py --n 2000 --budget 0.25 --devices cuda

Data: the first n scikit-learn digits (the rest are the test set), the default layer's
architecture (3x3 patches with padding 1, 2x2 pooling: Q = 16; rbf with the median gamma;
C = 0.3, tol 1e-3, squared hinge), ``features="exact"``, ``solver="auto"`` (ADMM). On the
CPU the blocks are evaluated once and kept in host memory; on the GPU ("cuda") they are
evaluated once and held in device memory where they take at most half its budget, and every
pass reduces them there (only their products with the dual weights come back). The device
"cuda-each-pass" runs the GPU path for blocks that are not held: every pass evaluates them
again. The rest of the solver runs on the CPU in every case. The predict column times
`predict` on the remaining digits (on the GPU: the same reduction against the support
images).

``--budget F`` sets ``max_memory`` to F times the size of the blocks (n^2 Q^2 float64): below
1 the CPU's exact back-end keeps the blocks of fewer images and evaluates the others again on
each pass of the solver (bench/README.md: the blocks run about 200x faster on an H100 than on
the 2-core CPU core; the GPU holds no blocks in host memory at any budget, and ``max_memory``
does not bound device memory). ``solver="auto"`` takes
ADMM only where its kernel expansions (20 n Q T float64, T = 160 here) fit ``max_memory`` too,
else the ALM dual, which makes about ten times more passes (the solver column says which ran):
at budget 0.25 that holds from n = 1000 on. The rows of both devices come from one process on
the same data; a device that cannot run says why.
"""

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits

import dccnn
from dccnn import _cuda_backend, features
from _timing import machine_summary

LAYER = dict(patch_size=3, padding=1, pool_size=2, pool_stride=2, kernel="rbf", gamma="median",
             C=0.3, tol=1e-3, features="exact", solver="auto", random_state=0)
Q = 16


def fit(n, budget, device, n_jobs=None):
    if device == "cuda-each-pass":
        held_blocks = features._cuda_backend.held_blocks
        features._cuda_backend.held_blocks = lambda *args, **kwargs: None
        try:
            return fit(n, budget, "cuda", n_jobs)
        finally:
            features._cuda_backend.held_blocks = held_blocks
    digits = load_digits()
    X, y = digits.images / 16.0, digits.target
    max_memory = None if budget >= 1 else int(budget * n * n * Q * Q * 8)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the memory-budget warning is what is measured here
        layer = dccnn.fit_layer(X[:n], y[:n], max_memory=max_memory, device=device,
                                 n_jobs=n_jobs, **LAYER)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    error = float(np.mean(layer.predict(X[n:]) != y[n:]))
    return seconds, time.perf_counter() - start, error, layer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="*", default=[300, 1000])
    parser.add_argument("--budget", type=float, nargs="*", default=[1.0, 0.25])
    parser.add_argument("--devices", nargs="*", default=["cpu", "cuda"],
                        choices=["cpu", "cuda", "cuda-each-pass"])
    parser.add_argument("--cpu-jobs", type=int, nargs="*", default=[0],
                        help="threads of the CPU rows, one row each (0: all cores); e.g. 2 0 "
                             "compares the GPU with the 2-core machines of bench/README.md too")
    args = parser.parse_args(argv)
    print(machine_summary())
    if any(d != "cpu" for d in args.devices) and not _cuda_backend.cuda_available():
        print("cuda: skipped:", "no dccnn._cuda in this build" if not _cuda_backend.cuda_built()
              else "no CUDA GPU visible")
        args.devices = [d for d in args.devices if d == "cpu"]
    print("| n | budget / blocks | device | fit s | predict s | solver | iterations | test error | "
          "gap | filters |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        for budget in args.budget:
            runs = [(d, j) for d in args.devices for j in (args.cpu_jobs if d == "cpu" else [0])]
            for device, jobs in runs:
                seconds, predict_seconds, error, layer = fit(n, budget, device, jobs or None)
                label = f"{device}, {jobs} threads" if jobs else device
                print(f"| {n} | {budget:g} | {label} | {seconds:.2f} | {predict_seconds:.2f} | "
                      f"{layer.solver} | "
                      f"{layer.n_iter_} | {100 * error:.1f}% | {layer.gap_:.1e} | "
                      f"{layer.n_filters_} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
