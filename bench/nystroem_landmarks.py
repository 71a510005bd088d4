"""Nystroem landmarks drawn uniformly against k-means++ seeding (SPEC §5), on digits.

    python bench/nystroem_landmarks.py                       # m = 25, 50, 100, 300; 3 seeds
    python bench/nystroem_landmarks.py --m 50 --seeds 1 --n-train 200   # smoke size

For each number m of landmarks, on the default layer's patches (3x3 with padding 1, rbf with
the median gamma) of the training images:
- the kernel approximation error ||K - Phi Phi^T||_F / ||K||_F on 2000 held-out patches of the
  training images (K their exact kernel matrix, Phi their Nystroem features),
- the test error of the default layer (C = 0.3, tol 1e-3) fitted on those features, on
  "digits" and on "digits-rot-noise" (bench/compare.py's split and data),
- the time to fit the feature map (the landmarks and K_LL^(-1/2)).
Means over the seeds (the landmark draws); both choices see the same seeds.
"""

import argparse
import sys
import time
import warnings

import numpy as np

import dccnn
from dccnn.feature_maps import NystroemMap
from dccnn.kernels import resolve_kernel
from compare import load_dataset
from _timing import machine_summary

LAYER = dict(patch_size=3, padding=1, pool_size=2, pool_stride=2, kernel="rbf", C=0.3, tol=1e-3,
             features="nystroem", solver="auto")
HELD_OUT = 2000


def approximation_error(Z, m, landmarks, gamma, seed):
    """Relative Frobenius error of the Nystroem kernel on held-out patches, and fit seconds."""
    rng = np.random.default_rng(10_000 + seed)
    flat = Z.reshape(-1, Z.shape[2])
    held = rng.choice(flat.shape[0], HELD_OUT, replace=False)
    rest = np.setdiff1d(np.arange(flat.shape[0]), held)
    kp = resolve_kernel("rbf", Z.shape[2], gamma=gamma)
    fmap = NystroemMap(None, kp, m, random_state=seed, landmarks=landmarks)
    start = time.perf_counter()
    fmap.fit(flat[rest][None])
    seconds = time.perf_counter() - start
    Zh = flat[held]
    Phi = fmap.nonlinear(Zh) @ fmap.whitening_
    K = dccnn.kernel_matrix(Zh, gamma=gamma)
    return np.linalg.norm(K - Phi @ Phi.T) / np.linalg.norm(K), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, nargs="*", default=[25, 50, 100, 300])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=None, help="first n training images")
    args = parser.parse_args(argv)
    print(machine_summary())
    data = {name: load_dataset(name) for name in ("digits", "digits-rot-noise")}
    Xtr = data["digits"][0][:args.n_train]
    Z = dccnn.extract_patches(Xtr, 3, padding=1)
    gamma = dccnn.layer.median_heuristic_gamma(Z, 0)
    print(f"{Z.shape[0] * Z.shape[1]} training patches, gamma = {gamma:.4g}")
    print("| m | landmarks | kernel error | map fit s | test error digits | "
          "test error digits-rot-noise |")
    print("|---|---|---|---|---|---|")
    for m in args.m:
        for landmarks in ("uniform", "kmeans++"):
            approx = [approximation_error(Z, m, landmarks, gamma, s) for s in range(args.seeds)]
            errors = {}
            for name, (Xa, ya, Xb, yb) in data.items():
                Xa, ya = Xa[:args.n_train], ya[:args.n_train]
                runs = []
                for seed in range(args.seeds):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # ConvergenceWarnings of tiny runs
                        layer = dccnn.fit_layer(Xa, ya, gamma=gamma, n_components=m,
                                                landmarks=landmarks, random_state=seed, **LAYER)
                    runs.append(np.mean(layer.predict(Xb) != yb))
                errors[name] = runs
            print(f"| {m} | {landmarks} | {np.mean([a for a, _ in approx]):.4f} | "
                  f"{np.mean([t for _, t in approx]):.2f} | "
                  f"{100 * np.mean(errors['digits']):.2f}% | "
                  f"{100 * np.mean(errors['digits-rot-noise']):.2f}% |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
