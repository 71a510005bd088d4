"""Issue 3 benchmark: with Sigma = I and explicit features, the inner problem of the saddle form
is an L2-loss linear SVM per output (one-vs-rest). Time dccnn's C++ dual coordinate descent
(`dual_cd_linear`) against LIBLINEAR (`liblinear-official`, `-s 1`) on the same features, in
one process, and compare the primal objectives reached:

    P_c(w) = 1/2 ||w||^2 + C sum_i max(0, 1 - y_ic w.x_i)^2

Features: pooled Nystroem features of scikit-learn's digits (3x3 patches, padding 1, 2x2
pooling, rbf with the median heuristic), flattened to (n, Q*m). Both solvers start from zero and
stop on their own projected-gradient rules; LIBLINEAR's `-e` is relative to the initial
projected gradient, dccnn's `tol` absolute, so each is run at two tolerances and the primal
objectives say how far each got.

    python bench/liblinear_compare.py [--m 100] [--C 0.1] [--small]
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

import dccnn
from dccnn._backend import get_backend
from dccnn.feature_maps import NystroemMap
from dccnn.kernels import resolve_kernel
from dccnn.layer import median_heuristic_gamma

SQUARED_HINGE = 0


def digits_features(m, n):
    X, y = load_digits(return_X_y=True)
    images = X[:n].reshape(-1, 8, 8) / 16.0
    Z = dccnn.extract_patches(images, 3, 1, 1)
    pooling = dccnn.make_pooling(dccnn.patch_grid_shape((8, 8), 3, 1, 1), 2, 2)
    params = resolve_kernel("rbf", Z.shape[2], gamma=median_heuristic_gamma(Z, 0))
    psi = NystroemMap(pooling, params, m, random_state=0).fit(Z).transform(Z)
    return np.ascontiguousarray(psi.reshape(n, -1), dtype=np.float64), y[:n]


def primal(w, Xs, C):
    """Xs: rows y_i x_i."""
    return 0.5 * w @ w + C * np.sum(np.maximum(0.0, 1.0 - Xs @ w) ** 2)


def run_dccnn(X, Y, C, tol):
    """All K one-vs-rest problems in one call on one thread (LIBLINEAR runs on one)."""
    core = get_backend("cpp")
    N, K = Y.shape
    alpha = np.zeros((N, K))
    W = np.zeros((K, X.shape[1]))
    start = time.perf_counter()
    epochs, _, _ = core.dual_cd_linear(np.ascontiguousarray(X), np.ascontiguousarray(Y),
                                       -np.ones((N, K)), alpha, W, SQUARED_HINGE, C, tol, 100000,
                                       True, 0, 1)
    elapsed = time.perf_counter() - start
    objectives = [primal(W[c], X * Y[:, c:c + 1], C) for c in range(K)]
    return elapsed, objectives, epochs


def run_liblinear(X, y, Y, C, eps):
    from liblinear.liblinearutil import parameter, problem, train
    prob = problem(y.astype(float), X)  # converted once, outside the timing
    start = time.perf_counter()
    model = train(prob, parameter(f"-s 1 -c {C} -e {eps} -B -1 -q"))
    elapsed = time.perf_counter() - start
    labels = list(model.get_labels())
    W = np.array([[model.get_decfun_coef(j + 1, labels.index(c)) for j in range(X.shape[1])]
                  for c in range(Y.shape[1])])
    objectives = [primal(W[c], X * Y[:, c:c + 1], C) for c in range(Y.shape[1])]
    return elapsed, objectives


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=100)
    ap.add_argument("--C", type=float, default=0.1)
    ap.add_argument("--n", type=int, default=1297)
    ap.add_argument("--small", action="store_true", help="smoke run (seconds)")
    args = ap.parse_args()
    if args.small:
        args.m, args.n = 20, 200
    X, y = digits_features(args.m, args.n)
    Y = np.where(y[:, None] == np.arange(10)[None, :], 1.0, -1.0)
    print(f"features {X.shape}, C = {args.C}, 10 one-vs-rest L2-loss SVMs")
    print("| solver | tolerance | seconds | sum of primal objectives | epochs |")
    print("|---|---|---|---|---|")
    rows = []
    for tol in (1e-2, 1e-4):
        t, obj, ep = run_dccnn(X, Y, args.C, tol)
        rows.append(("dccnn dual_cd_linear", f"tol {tol:g}", t, sum(obj), ep))
    for eps in (1e-2, 1e-4):
        t, obj = run_liblinear(X, y, Y, args.C, eps)
        rows.append(("LIBLINEAR -s 1", f"-e {eps:g}", t, sum(obj), "-"))
    best = min(r[3] for r in rows)
    for name, tol, t, obj, ep in rows:
        print(f"| {name} | {tol} | {t:.3f} | {obj:.8g} (+{(obj - best) / best:.1e}) | {ep} |")


if __name__ == "__main__":
    main()
