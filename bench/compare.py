"""End-to-end comparison (issue 6): dccnn against kernel SVMs and a CCNN-style baseline.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python3 bench/compare.py

One run, same data, same machine, same thread count for every method. Each method runs in its
own subprocess so that its peak resident memory (VmHWM, which sees C++ allocations, unlike
tracemalloc) is its own. Times are also given as ratios to SVC's fit time measured in the same
run on the same data: the machine is shared and noisy, ratios travel better than seconds.

Datasets: scikit-learn digits (first 1297 images train, last 500 test, pixels / 16) and
"digits-rot-noise", the same split with every image rotated by an angle drawn uniformly in
[-30, 30] degrees and laid on a random background (each pixel max(digit, 0.5 * U[0, 1])).
The exact back-end is run on the first ``--exact-n`` training images only (its kernel work and
memory grow as n^2 and its dual solve is slow beyond n ~ 300); SVC is run on the same subset
for a like-for-like error.

Writes bench/results/compare.json and bench/results/compare.md (``--results-dir``, ``--out``).
``--small`` is a seconds-long smoke version (bench/smoke.sh).
``--sgemm`` prints numpy's float32 GEMM rate in GFLOP per CPU-second of the process (the
denominator the C++ benchmarks' of_sgemm counter expects) and exits.
"""

import argparse
import dataclasses
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.ndimage

HERE = Path(__file__).resolve().parent
N_TRAIN, N_TEST = 1297, 500


# ---------------------------------------------------------------------------------------------
# data

def rotate_on_noise(images, rng, max_angle=30.0, noise=0.5):
    """Rotate each image by U[-max_angle, max_angle] degrees and lay it on a random background:
    pixel = max(digit, noise * U[0, 1]) (in the spirit of MNIST rot / back-rand)."""
    out = np.empty_like(images)
    angles = rng.uniform(-max_angle, max_angle, images.shape[0])
    for i, (img, angle) in enumerate(zip(images, angles)):
        out[i] = scipy.ndimage.rotate(img, angle, reshape=False, order=1, mode="constant")
    np.clip(out, 0.0, 1.0, out=out)
    return np.maximum(out, noise * rng.random(images.shape))


def digits_images():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).reshape(-1, 8, 8), y


def load_dataset(name, seed=0):
    """(X_train, y_train, X_test, y_test), images (n, 8, 8) float64 in [0, 1]."""
    X, y = digits_images()
    Xtr, ytr, Xte, yte = X[:N_TRAIN], y[:N_TRAIN], X[-N_TEST:], y[-N_TEST:]
    if name == "digits":
        return Xtr, ytr, Xte, yte
    if name == "digits-rot-noise":
        rng = np.random.default_rng(seed)
        return rotate_on_noise(Xtr, rng), ytr, rotate_on_noise(Xte, rng), yte
    raise ValueError(f"dataset: unknown {name!r}")


# ---------------------------------------------------------------------------------------------
# the CCNN-style baseline, written from the paper's description (CCNN-NOTES.md)

def project_l1_ball(s, radius):
    """Euclidean projection of a nonnegative vector onto {x >= 0, sum x <= radius}
    (the sort-based algorithm of Duchi et al. 2008)."""
    if s.sum() <= radius:
        return s
    u = np.sort(s)[::-1]
    css = np.cumsum(u) - radius
    rho = np.nonzero(u > css / np.arange(1, u.size + 1))[0][-1]
    return np.maximum(s - css[rho] / (rho + 1), 0.0)


def project_nuclear_ball(A, radius):
    """Projection onto {||A||_* <= radius}: SVD, then the singular values onto the l1 ball."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    return (U * project_l1_ball(s, radius)) @ Vt


class CCNNBaseline:
    """One CCNN layer as published (Zhang, Liang, Wainwright 2017): random Fourier features of
    normalised, ZCA-whitened patches, 2x2 average pooling, multinomial logistic loss with the
    last logit fixed at 0, projected SGD on {||A||_* <= R} with mini-batches, iterate averaging
    over the last ``average_last`` iterations, and at most ``max_filters`` filters (top singular
    vectors of A) in the final model. Reference MNIST settings (CCNN-NOTES.md) except the
    learning rate: with the gradient averaged over the mini-batch, the reference 0.2 underfits
    digits (validation error, first 897 / last 400 training images: 15.3% at 0.2, 4.0% at 1,
    2.0% at 3, 2.3% at 10)."""

    def __init__(self, *, patch=3, padding=1, pool=2, gamma=0.2, n_features=500, radius=200.0,
                 learning_rate=3.0, n_iter=1000, batch=50, average_last=200, max_filters=25,
                 seed=0):
        self.__dict__.update(patch=patch, padding=padding, pool=pool, gamma=gamma,
                             n_features=n_features, radius=radius, learning_rate=learning_rate,
                             n_iter=n_iter, batch=batch, average_last=average_last,
                             max_filters=max_filters, seed=seed)

    def _patches(self, X):
        """Normalised patches (n, H', W', d): subtract the mean, divide by (norm + 0.1)."""
        p = self.padding
        Xp = np.pad(X, ((0, 0), (p, p), (p, p)))
        Z = np.lib.stride_tricks.sliding_window_view(Xp, (self.patch, self.patch), axis=(1, 2))
        Z = Z.reshape(Z.shape[:3] + (-1,))
        Z = Z - Z.mean(axis=-1, keepdims=True)
        return Z / (np.linalg.norm(Z, axis=-1, keepdims=True) + 0.1)

    def _pooled_features(self, X):
        """Average-pooled random Fourier features (n, Q, m) of the whitened patches."""
        Z = self._patches(X) @ self.zca_
        phi = math.sqrt(2.0 / self.n_features) * np.cos(Z @ self.W_ + self.b_)
        n, H, W, m = phi.shape
        Hq, Wq = H // self.pool, W // self.pool
        phi = phi[:, :Hq * self.pool, :Wq * self.pool]
        pooled = phi.reshape(n, Hq, self.pool, Wq, self.pool, m).mean(axis=(2, 4))
        return pooled.reshape(n, Hq * Wq, m)

    def _scaled(self, F):
        """Centre and scale pooled features to unit mean squared row norm (training statistics)."""
        return (F - self.center_) / self.scale_

    def fit(self, X, y):
        rng = np.random.default_rng(self.seed)
        self.classes_, codes = np.unique(y, return_inverse=True)
        K = self.classes_.size
        Z = self._patches(X).reshape(-1, self.patch * self.patch)
        # ZCA whitening with eps 0.1, fitted on the training patches
        evals, evecs = np.linalg.eigh(np.cov(Z, rowvar=False))
        self.zca_ = (evecs / np.sqrt(evals + 0.1)) @ evecs.T
        d = Z.shape[1]
        self.W_ = rng.normal(0.0, math.sqrt(2 * self.gamma), (d, self.n_features))
        self.b_ = rng.uniform(0.0, 2 * math.pi, self.n_features)
        F = self._pooled_features(X)
        self.center_ = F.mean(axis=0)
        self.scale_ = math.sqrt(np.mean(np.sum((F - self.center_) ** 2, axis=(1, 2))))
        F = self._scaled(F)
        n, Q, m = F.shape
        onehot = np.eye(K)[codes][:, :K - 1]
        A = np.zeros((m, Q * (K - 1)))
        A_avg = np.zeros_like(A)
        for it in range(self.n_iter):
            idx = rng.choice(n, self.batch, replace=False)
            Fb = F[idx]
            G = self._probabilities(Fb, A)[:, :K - 1] - onehot[idx]
            grad = np.einsum("bqm,bc->mqc", Fb, G).reshape(m, -1) / self.batch
            A = project_nuclear_ball(A - self.learning_rate * grad, self.radius)
            if it >= self.n_iter - self.average_last:
                A_avg += A / self.average_last
        U, s, Vt = np.linalg.svd(A_avg, full_matrices=False)
        r = int(min(self.max_filters, np.sum(s > 1e-6 * s[0]))) if s[0] > 0 else 0
        self.n_filters_ = r
        self.A_ = (U[:, :r] * s[:r]) @ Vt[:r]
        return self

    def _probabilities(self, F, A):
        n, Q, m = F.shape
        logits = F.reshape(n, -1) @ A.reshape(m, Q, -1).transpose(1, 0, 2).reshape(Q * m, -1)
        logits = np.hstack([logits, np.zeros((n, 1))])
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        F = self._scaled(self._pooled_features(X))
        return self.classes_[np.argmax(self._probabilities(F, self.A_), axis=1)]


# ---------------------------------------------------------------------------------------------
# methods: each builds an estimator with fit / predict and says how many filters it kept

def _dccnn_layer(small, **changes):
    from dccnn.estimators import DEFAULT_LAYER
    if small:
        changes.setdefault("n_components", 50)
    return dataclasses.replace(DEFAULT_LAYER, **changes)


def _dccnn(spec):
    import dccnn
    return dccnn.DCCNNClassifier(layers=None if spec is None else [spec], random_state=0)


def _svc():
    from sklearn.svm import SVC
    return SVC(kernel="rbf", gamma="scale", C=10)


class NystroemLinearSVC:
    """LinearSVC on sklearn Nystroem features of the flattened images, gamma as SVC's "scale"."""

    def __init__(self, n_components):
        self.n_components = n_components

    def fit(self, X, y):
        from sklearn.kernel_approximation import Nystroem
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import LinearSVC
        X = X.reshape(X.shape[0], -1)
        gamma = 1.0 / (X.shape[1] * X.var())
        self.model_ = make_pipeline(
            Nystroem(kernel="rbf", gamma=gamma, n_components=self.n_components, random_state=0),
            LinearSVC(C=10, max_iter=10000, random_state=0))
        self.model_.fit(X, y)
        return self

    def predict(self, X):
        return self.model_.predict(X.reshape(X.shape[0], -1))


class FlatImages:
    """Wraps an estimator of flat feature vectors so that it takes (n, H, W) images."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        self.estimator.fit(X.reshape(X.shape[0], -1), y)
        return self

    def predict(self, X):
        return self.estimator.predict(X.reshape(X.shape[0], -1))


def build_method(name, small):
    """(estimator, whether it trains on the exact-back-end subset)."""
    m = 50 if small else 500
    builders = {
        "dccnn default": lambda: _dccnn(_dccnn_layer(small) if small else None),
        "dccnn exact + dual": lambda: _dccnn(_dccnn_layer(small, features="exact", solver="dual")),
        "dccnn exact + admm": lambda: _dccnn(_dccnn_layer(small, features="exact", solver="admm")),
        "dccnn nystroem + dual": lambda: _dccnn(_dccnn_layer(small, features="nystroem",
                                                             solver="dual")),
        "dccnn nystroem + primal (FISTA)": lambda: _dccnn(_dccnn_layer(
            small, features="nystroem", solver="primal")),
        "dccnn nystroem + admm": lambda: _dccnn(_dccnn_layer(small, features="nystroem",
                                                             solver="admm")),
        "SVC rbf": lambda: FlatImages(_svc()),
        "SVC rbf (subset)": lambda: FlatImages(_svc()),
        "Nystroem + LinearSVC": lambda: NystroemLinearSVC(m),
        "CCNN baseline (RFF + projected SGD)": lambda: CCNNBaseline(
            n_features=m, **({"n_iter": 100, "average_last": 20} if small else {})),
    }
    subset = name in ("dccnn exact + dual", "dccnn exact + admm", "SVC rbf (subset)")
    return builders[name](), subset


METHODS = ("SVC rbf", "dccnn default", "dccnn nystroem + admm", "dccnn nystroem + dual",
           "dccnn nystroem + primal (FISTA)",
           "Nystroem + LinearSVC", "CCNN baseline (RFF + projected SGD)", "dccnn exact + admm",
           "dccnn exact + dual", "SVC rbf (subset)")


# ---------------------------------------------------------------------------------------------
# one method in one process

def peak_rss_mib():
    """VmHWM of this process (peak resident set size) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def n_filters_of(est):
    if hasattr(est, "n_filters_"):
        r = est.n_filters_
        return int(r[-1] if isinstance(r, (list, tuple)) else r)
    return None


def run_worker(method, dataset, n_train, n_test, exact_n, small):
    Xtr, ytr, Xte, yte = load_dataset(dataset)
    est, subset = build_method(method, small)
    n = min(exact_n, n_train) if subset else n_train
    Xtr, ytr, Xte, yte = Xtr[:n], ytr[:n], Xte[:n_test], yte[:n_test]
    rss_before = peak_rss_mib()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), time.process_time()
        est.fit(Xtr, ytr)
        fit_time, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        pred = est.predict(Xte)
        predict_time = time.perf_counter() - t0
    result = {
        "method": method, "dataset": dataset, "n_train": n, "n_test": int(Xte.shape[0]),
        "test_error": float(np.mean(pred != yte)), "fit_time": fit_time, "fit_cpu": fit_cpu,
        "predict_time": predict_time, "peak_rss_mib": peak_rss_mib(),
        "rss_before_fit_mib": rss_before, "n_filters": n_filters_of(est),
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught}),
    }
    if hasattr(est, "gap_"):
        result["gap"] = float(est.gap_)
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# driver

def sgemm_gflops_per_cpu_second(size=2000, repeat=5):
    """numpy float32 GEMM rate, flops per CPU-second of this process (all threads)."""
    A = np.random.default_rng(0).random((size, size), dtype=np.float32)
    A @ A
    best = min(_cpu_time(lambda: A @ A) for _ in range(repeat))
    return 2 * size**3 / best / 1e9


def _cpu_time(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def machine_facts():
    """Cores, CPU model and vector flags, for the README."""
    facts = {"cpu_count": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache",
                               "L3 cache"):
                facts[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    facts["simd_flags"] = " ".join(x for x in flags if x.startswith(("avx", "fma", "sse4")))
    return facts


def worker_env(threads):
    """The environment of every method's process: the same thread count for OpenMP, BLAS and
    Numba, and OpenBLAS free to pick its own kernels (the OPENBLAS_* overrides of this machine
    would slow numpy and scikit-learn down)."""
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "python"),
                                                      env.get("PYTHONPATH")]))
    return env


def cpu_limited(seconds):
    """preexec_fn giving a child process a CPU-time budget (it dies of SIGXCPU past it): unlike
    a wall-clock timeout it holds whatever the load of the shared machine."""
    def apply():
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))
    return apply


def run_method(method, dataset, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, dataset,
           "--n-train", str(args.n_train), "--n-test", str(args.n_test),
           "--exact-n", str(args.exact_n)] + (["--small"] if args.small else [])
    try:
        proc = subprocess.run(cmd, env=worker_env(args.threads), capture_output=True, text=True,
                              timeout=args.timeout, preexec_fn=cpu_limited(args.cpu_limit))
    except subprocess.TimeoutExpired:
        return {"method": method, "dataset": dataset,
                "error": f"not finished in {args.timeout:.0f} s wall"}
    if proc.returncode == -signal.SIGXCPU:
        return {"method": method, "dataset": dataset,
                "error": f"not finished in {args.cpu_limit} CPU s"}
    if proc.returncode != 0:
        return {"method": method, "dataset": dataset,
                "error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(rows):
    lines = ["| dataset | method | n train | test error | fit s | fit / SVC fit | fit CPU s "
             "| fit CPU / SVC fit CPU | predict s | peak RSS MiB (growth in fit + predict) "
             "| filters | gap |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    svc = {r["dataset"]: r for r in rows if r["method"] == "SVC rbf" and "fit_time" in r}
    nan = float("nan")
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['method']} | | {r['error']} | | | | | | | | |")
            continue
        ref = svc.get(r["dataset"], {"fit_time": nan, "fit_cpu": nan})
        filters = "" if r["n_filters"] is None else r["n_filters"]
        gap = f"{r['gap']:.1e}" if "gap" in r else ""
        lines.append(f"| {r['dataset']} | {r['method']} | {r['n_train']} | {r['test_error']:.1%} "
                     f"| {r['fit_time']:.2f} | {r['fit_time'] / ref['fit_time']:.0f} "
                     f"| {r['fit_cpu']:.2f} | {r['fit_cpu'] / ref['fit_cpu']:.0f} "
                     f"| {r['predict_time']:.3f} "
                     f"| {r['peak_rss_mib']:.0f} ({r['peak_rss_mib'] - r['rss_before_fit_mib']:+.0f}) "
                     f"| {filters} | {gap} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="seconds-long smoke version")
    ap.add_argument("--datasets", nargs="+", default=["digits", "digits-rot-noise"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--n-test", type=int, default=N_TEST)
    ap.add_argument("--exact-n", type=int, default=300,
                    help="training images for the exact back-end (and 'SVC rbf (subset)')")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--timeout", type=float, default=1800, help="wall seconds per method")
    ap.add_argument("--cpu-limit", type=int, default=300, help="CPU seconds per method")
    ap.add_argument("--update", action="store_true",
                    help="replace the rows of this run in the existing results file, keep the rest")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    ap.add_argument("--out", help="results file stem (default: compare, compare_small with "
                    "--small)")
    ap.add_argument("--sgemm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "DATASET"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sgemm:
        print(f"{sgemm_gflops_per_cpu_second():.1f}")
        return 0
    if args.worker:
        run_worker(*args.worker, args.n_train, args.n_test, args.exact_n, args.small)
        return 0
    if args.small:
        # small enough that the default classifier (exact back-end below 500 images) takes seconds
        args.n_train, args.n_test, args.exact_n = min(args.n_train, 60), min(args.n_test, 100), \
            min(args.exact_n, 30)
    stem = args.out or ("compare_small" if args.small else "compare")
    rows = []
    for dataset in args.datasets:
        for method in args.methods:
            row = run_method(method, dataset, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    failed = any("error" in r for r in rows)
    path = args.results_dir / f"{stem}.json"
    if args.update and path.exists():
        fresh = {(r["dataset"], r["method"]) for r in rows}
        old = json.loads(path.read_text())["rows"]
        rows = [r for r in old if (r["dataset"], r["method"]) not in fresh] + rows
        order = {m: i for i, m in enumerate(METHODS)}
        rows.sort(key=lambda r: (r["dataset"] != "digits", r["dataset"], order[r["method"]]))
    table = markdown_table(rows)
    print(table)
    if not args.small:
        facts = machine_facts()
        facts["sgemm_gflops_per_cpu_second"] = sgemm_gflops_per_cpu_second()
        facts["threads"] = args.threads
    else:
        facts = {"threads": args.threads}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stem}.json").write_text(json.dumps({"machine": facts, "rows": rows},
                                                              indent=1))
    (args.results_dir / f"{stem}.md").write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
