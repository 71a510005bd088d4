"""Scaling of the two feature back-ends (issue 6): fit time and peak memory versus the number of
training images n and versus the image size, with log-log slopes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python3 bench/scaling.py

Data: digits rotated in [-30, 30] degrees on a noisy background (bench/compare.py), drawn with
replacement from the 1797 digits when n is larger; for the image size, the same images
upsampled with scipy.ndimage.zoom. Layer: 3x3 patches, padding 1, 2x2 pooling, rbf with the
median-heuristic gamma, C = 0.3, squared hinge, tol 1e-3 (the default classifier's layer).

Series (each point in its own process, one thread, peak RSS from VmHWM):
- "exact: kernel blocks": ``dccnn.pooled_kernel_blocks`` of all image pairs, the exact
  back-end's O(n^2 P^2 d) kernel work and O(n^2 Q^2) memory;
- "exact + dual: fit": the whole fit (tol 1e-3), small n only;
- "nystroem + factored: fit (k iterations)": the explicit back-end (m = 500 landmarks) with a
  fixed number of solver iterations, so that the points compare equal work per pass (the
  iteration count to reach a tolerance varies with n and is not what the slope is about).
Slopes are fitted to CPU seconds (the machine is shared: wall time includes waiting).

Writes bench/results/scaling.json and bench/figures/scaling.png; ``--small`` is a seconds-long
smoke version (bench/smoke.sh).
"""

import argparse
import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.ndimage

from compare import cpu_limited, digits_images, peak_rss_mib, rotate_on_noise, worker_env

HERE = Path(__file__).resolve().parent
LAYER = dict(patch_size=3, padding=1, pool_size=2, pool_stride=2, kernel="rbf", gamma="median",
             C=0.3, tol=1e-3)
EXPLICIT_ITERATIONS = 20
EXACT_BLOCKS = "exact: kernel blocks"
EXACT_FIT = "exact + dual: fit"
EXPLICIT_FIT = f"nystroem + factored: fit ({EXPLICIT_ITERATIONS} iterations)"


def scaling_data(n, side, seed=0):
    """n rotated noisy digits of side x side pixels and their labels."""
    X, y = digits_images()
    rng = np.random.default_rng(seed)
    idx = np.arange(n) if n <= X.shape[0] else rng.integers(0, X.shape[0], n)
    images = rotate_on_noise(X[idx], rng)
    if side != images.shape[1]:
        images = scipy.ndimage.zoom(images, (1, side / 8, side / 8), order=1)
    return images, y[idx]


def run_series(series, X, y, m):
    import dccnn
    with warnings.catch_warnings():
        # the fixed iteration budget of the explicit series stops before tol on purpose
        warnings.simplefilter("ignore")
        if series == EXACT_BLOCKS:
            Z = dccnn.extract_patches(X.astype(np.float32), LAYER["patch_size"],
                                      padding=LAYER["padding"])
            grid = dccnn.patch_grid_shape(X.shape[1:], LAYER["patch_size"], 1, LAYER["padding"])
            pooling = dccnn.make_pooling(grid, LAYER["pool_size"], LAYER["pool_stride"])
            dccnn.pooled_kernel_blocks(Z, pooling=pooling, kernel="rbf", gamma=1.0 / Z.shape[2])
        elif series == EXACT_FIT:
            dccnn.fit_layer(X, y, **LAYER, features="exact", solver="dual", random_state=0)
        else:
            dccnn.fit_layer(X, y, **LAYER, features="nystroem", n_components=m,
                            solver="factored", max_iter=EXPLICIT_ITERATIONS, random_state=0)


def run_point(series, n, side, m):
    """One measurement in this process, after a tiny warm-up run (Numba compilation and
    first-call costs are not what the slopes are about); prints a JSON line."""
    X, y = scaling_data(n, side)
    run_series(series, X[:20], y[:20], min(m, 20))
    before = peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    run_series(series, X, y, m)
    print(json.dumps({"series": series, "n": n, "side": side,
                      "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                      "peak_rss_mib": peak_rss_mib(), "rss_before_mib": before}))


def measure(series, n, side, m, cpu_limit):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--point", series, str(n), str(side),
           "--m", str(m)]
    proc = subprocess.run(cmd, env=worker_env(1), capture_output=True, text=True,
                          preexec_fn=cpu_limited(cpu_limit))
    if proc.returncode == -signal.SIGXCPU:
        return {"series": series, "n": n, "side": side,
                "error": f"not finished in {cpu_limit} CPU s"}
    if proc.returncode != 0:
        return {"series": series, "n": n, "side": side,
                "error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(points, key, value):
    """Least-squares slope of log(value) against log(key) over the points that ran."""
    pts = [(p[key], p[value]) for p in points if "error" not in p and p[value] > 0]
    if len(pts) < 2:
        return float("nan")
    x, v = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(x, v, 1)[0])


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, (sweep, key, label) in enumerate((("n", "n", "training images n"),
                                               ("side", "side", "image side (pixels)"))):
        for series, points in results[sweep].items():
            ok = [p for p in points if "error" not in p]
            if not ok:
                continue
            xs = [p[key] for p in ok]
            s_t, s_m = slope(ok, key, "cpu"), slope(ok, key, "peak_rss_mib")
            axes[row, 0].loglog(xs, [p["cpu"] for p in ok], "o-", label=f"{series} (slope {s_t:.2f})")
            axes[row, 1].loglog(xs, [p["peak_rss_mib"] for p in ok], "o-",
                                label=f"{series} (slope {s_m:.2f})")
        axes[row, 0].set(xlabel=label, ylabel="CPU seconds")
        axes[row, 1].set(xlabel=label, ylabel="peak RSS (MiB)")
        for ax in axes[row]:
            ax.legend(fontsize=7)
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("dccnn: exact vs explicit (Nystroem) back-end, 1 thread")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="seconds-long smoke version")
    ap.add_argument("--cpu-limit", type=int, default=200, help="CPU seconds per point")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    ap.add_argument("--figure", type=Path, default=HERE / "figures" / "scaling.png")
    ap.add_argument("--m", type=int, default=500, help="Nystroem landmarks")
    ap.add_argument("--point", nargs=3, metavar=("SERIES", "N", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.point:
        run_point(args.point[0], int(args.point[1]), int(args.point[2]), args.m)
        return 0
    # {sweep: {series: (n values, side values)}}
    if args.small:
        args.m = min(args.m, 30)
        sweeps = {"n": {EXACT_BLOCKS: ([40, 80], 8), EXACT_FIT: ([20, 30], 8),
                        EXPLICIT_FIT: ([40, 80], 8)},
                  "side": {EXACT_BLOCKS: (20, [8, 12]), EXPLICIT_FIT: (40, [8, 12])}}
    else:
        sweeps = {"n": {EXACT_BLOCKS: ([125, 250, 500, 1000], 8), EXACT_FIT: ([50, 100, 200, 300], 8),
                        EXPLICIT_FIT: ([250, 500, 1000, 2000, 4000, 8000], 8)},
                  "side": {EXACT_BLOCKS: (100, [8, 12, 16, 24]), EXPLICIT_FIT: (500, [8, 12, 16, 24])}}
    results = {"n": {}, "side": {}}
    for sweep, table in sweeps.items():
        for series, (ns, sides) in table.items():
            points = []
            for n in np.atleast_1d(ns):
                for side in np.atleast_1d(sides):
                    p = measure(series, int(n), int(side), args.m, args.cpu_limit)
                    print(json.dumps(p), flush=True)
                    points.append(p)
            results[sweep][series] = points
    summary = ["| sweep | series | points | CPU-time slope | peak-RSS slope |", "|---|---|---|---|---|"]
    for sweep, table in results.items():
        key = "n" if sweep == "n" else "side"
        for series, points in table.items():
            shown = ", ".join(f"{p[key]}: {p['cpu']:.2f} s / {p['peak_rss_mib']:.0f} MiB"
                              if "error" not in p else f"{p[key]}: {p['error']}" for p in points)
            summary.append(f"| {sweep} | {series} | {shown} | {slope(points, key, 'cpu'):.2f} "
                           f"| {slope(points, key, 'peak_rss_mib'):.2f} |")
    table = "\n".join(summary)
    print(table)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = "scaling_small" if args.small else "scaling"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (args.results_dir / f"{stem}.md").write_text(table + "\n")
    plot(results, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
