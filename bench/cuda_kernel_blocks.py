"""Pooled kernel blocks on the GPU (dccnn._cuda) against the GPU's peak and the CPU core.

    python bench/cuda_kernel_blocks.py                 # GPU and CPU parts on this machine
    python bench/cuda_kernel_blocks.py --cpu-only --json cpu.json     # e.g. on the 2-core box
    python bench/cuda_kernel_blocks.py --gpu-only --cpu-json cpu.json --json gpu.json
    python bench/cuda_kernel_blocks.py --cpu-json cpu.json --gpu-json gpu.json   # table only

Geometry of SPEC §9: 28x28 images, 5x5 patches (P = 576 positions, d = 25), 2x2 average
pooling (Q = 144), rbf kernel, all pairs of n images (Z2 = Z1: the n(n+1)/2 distinct pairs are
evaluated). Throughput is counted in patch-kernel values per second and in TFLOP/s-equivalent
at 2d + 15 flops per value (SPEC §9), against the FP32 (FP64) FMA peak of the GPU:
multiprocessors x FMA lanes x 2 x boost clock.

GPU timings: "device" runs compute every block on the GPU and copy nothing back (the n = 2000
output would be 332 GB); "end to end" runs return the (n, n, Q, Q) array to the host through
dccnn.pooled_kernel_blocks(..., device="cuda").
"""

import argparse
import json
import sys
import time

import numpy as np

import dccnn
from dccnn import _cuda_backend
from _timing import machine_summary

SIZE, PATCH, POOL = 28, 5, 2


def geometry(n, dtype, seed=0):
    X = np.random.default_rng(seed).random((n, SIZE, SIZE)).astype(dtype)
    Z = dccnn.extract_patches(X, PATCH)
    grid = (SIZE - PATCH + 1,) * 2
    return Z, dccnn.make_pooling(grid, POOL)


def counts(n, P, d, symmetric=True):
    pairs = n * (n + 1) // 2 if symmetric else n * n
    evals = pairs * P * P
    return evals, evals * (2 * d + 15)


def best_wall(fn, repeat):
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def cpu_part(args):
    res = {"machine": machine_summary(), "tile_engine": dccnn.get_backend("auto").tile_engine()}
    for dtype, n in ((np.float32, args.n_cpu), (np.float64, args.n_cpu_f64)):
        Z, pooling = geometry(n, dtype)
        P, d = Z.shape[1:]
        dccnn.pooled_kernel_blocks(Z[:8], pooling=pooling)  # warm-up
        t, _ = best_wall(lambda: dccnn.pooled_kernel_blocks(Z, pooling=pooling), args.repeat)
        evals, flops = counts(n, P, d)
        res[np.dtype(dtype).name] = {"n": n, "seconds": t, "evals_per_s": evals / t,
                                     "tflops_eq": flops / t / 1e12}
    A = np.random.default_rng(1).random((20000, 25), dtype=np.float32)
    B = A[:4000]
    t, _ = best_wall(lambda: dccnn.kernel_matrix(A, B), args.repeat)
    res["kernel_matrix_f32"] = {"shape": [20000, 4000, 25], "seconds": t,
                                "evals_per_s": 20000 * 4000 / t}
    return res


def gpu_part(args):
    info = _cuda_backend.device_info()
    clock = info["clock_khz"] * 1e3
    sms = info["multiprocessors"]
    res = {"device": info, "peak_fp32_tflops": sms * info["fp32_lanes_per_sm"] * 2 * clock / 1e12,
           "peak_fp64_tflops": sms * info["fp64_lanes_per_sm"] * 2 * clock / 1e12}

    def device_run(Z, pooling, repeat):
        Q = pooling.n_windows

        def once():
            return _cuda_backend.pooled_kernel_blocks(
                Z, None, pooling.position_ptr, pooling.position_window, Q, 0, 1.0 / Z.shape[2],
                2, 1.0, 0.0, return_stats=True, discard_output=True)[1]

        once()  # warm-up (module load, first launches)
        return best_wall(once, repeat)

    for dtype, n in ((np.float32, args.n), (np.float64, args.n_f64)):
        Z, pooling = geometry(n, dtype)
        P, d = Z.shape[1:]
        wall, stats = device_run(Z, pooling, args.repeat)
        evals, flops = counts(n, P, d)
        peak = res["peak_fp32_tflops" if dtype == np.float32 else "peak_fp64_tflops"]
        t = stats["device_seconds"]
        res[f"device_{np.dtype(dtype).name}"] = {
            "n": n, "device_seconds": t, "wall_seconds": wall, "evals_per_s": evals / t,
            "tflops_eq": flops / t / 1e12, "fraction_of_peak": flops / t / 1e12 / peak,
            "batches": stats["batches"], "batch_images": stats["batch_rows"],
            "device_bytes": stats["device_bytes"]}

    # End to end: the (n, n, Q, Q) float32 array back on the host.
    Z, pooling = geometry(args.n_e2e, np.float32)
    P, d = Z.shape[1:]
    dccnn.pooled_kernel_blocks(Z[:16], pooling=pooling, device="cuda")
    t, out = best_wall(lambda: dccnn.pooled_kernel_blocks(Z, pooling=pooling, device="cuda"),
                       max(1, args.repeat - 1))
    evals, flops = counts(args.n_e2e, P, d)
    ref = dccnn.pooled_kernel_blocks(Z[:6], pooling=pooling)
    err = float(np.abs(out[:6, :6] - ref).max())
    res["end_to_end_float32"] = {"n": args.n_e2e, "seconds": t, "evals_per_s": evals / t,
                                 "tflops_eq": flops / t / 1e12, "output_gb": out.nbytes / 1e9,
                                 "output_gb_per_s": out.nbytes / t / 1e9,
                                 "max_abs_diff_vs_cpu": err}
    del out

    A = np.random.default_rng(1).random((20000, 25), dtype=np.float32)
    B = A[:4000]
    dccnn.kernel_matrix(A[:100], B, device="cuda")
    t, K = best_wall(lambda: dccnn.kernel_matrix(A, B, device="cuda"), args.repeat)
    err = float(np.abs(K[:500] - dccnn.kernel_matrix(A[:500], B)).max())
    res["kernel_matrix_f32"] = {"shape": [20000, 4000, 25], "seconds": t,
                                "evals_per_s": 20000 * 4000 / t, "max_abs_diff_vs_cpu": err}
    return res


def report(gpu, cpu):
    lines = []
    if gpu:
        dev = gpu["device"]
        lines.append(f"GPU: {dev['name']} (sm_{dev['compute_capability'][0]}{dev['compute_capability'][1]}, "
                     f"{dev['multiprocessors']} SMs, {dev['clock_khz'] / 1e6:.2f} GHz); peak "
                     f"{gpu['peak_fp32_tflops']:.1f} TFLOP/s FP32, {gpu['peak_fp64_tflops']:.1f} FP64")
    if cpu:
        lines.append(f"CPU: {cpu['machine']}; tile engine {cpu['tile_engine']}")
    lines.append(f"Geometry: {SIZE}x{SIZE} images, {PATCH}x{PATCH} patches (P = 576, d = 25), "
                 f"{POOL}x{POOL} pooling (Q = 144), rbf, Z2 = Z1")
    lines.append("")
    lines.append("| run | n | time | patch-kernel values/s | TFLOP/s-eq | of peak | vs CPU core |")
    lines.append("|---|---|---|---|---|---|---|")

    def speedup(rate, key):
        return f"{rate / cpu[key]['evals_per_s']:.0f}x" if cpu and key in cpu else "-"

    if gpu:
        for name, key in (("GPU device, float32", "float32"), ("GPU device, float64", "float64")):
            r = gpu[f"device_{key}"]
            lines.append(f"| {name} | {r['n']} | {r['device_seconds']:.3f} s | {r['evals_per_s']:.3g} | "
                         f"{r['tflops_eq']:.2f} | {r['fraction_of_peak']:.0%} | "
                         f"{speedup(r['evals_per_s'], key)} |")
        r = gpu["end_to_end_float32"]
        lines.append(f"| GPU end to end (to host), float32 | {r['n']} | {r['seconds']:.3f} s | "
                     f"{r['evals_per_s']:.3g} | {r['tflops_eq']:.2f} | - | "
                     f"{speedup(r['evals_per_s'], 'float32')} |")
    if cpu:
        for key in ("float32", "float64"):
            r = cpu[key]
            lines.append(f"| CPU core, {key} | {r['n']} | {r['seconds']:.3f} s | {r['evals_per_s']:.3g} | "
                         f"{r['tflops_eq']:.3f} | - | 1x |")
    if gpu:
        r = gpu["end_to_end_float32"]
        lines.append("")
        lines.append(f"End to end: {r['output_gb']:.1f} GB of float32 blocks returned at "
                     f"{r['output_gb_per_s']:.1f} GB/s; max |GPU - CPU| on 6x6 pairs = "
                     f"{r['max_abs_diff_vs_cpu']:.1e}")
        k = gpu["kernel_matrix_f32"]
        cpu_k = cpu.get("kernel_matrix_f32") if cpu else None
        lines.append(f"kernel_matrix 20000 x 4000, d = 25, float32: GPU {k['seconds'] * 1e3:.1f} ms "
                     f"(with the copy to the host)" +
                     (f", CPU core {cpu_k['seconds'] * 1e3:.1f} ms" if cpu_k else "") +
                     f"; max |diff| {k['max_abs_diff_vs_cpu']:.1e}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images, GPU float32 device run")
    ap.add_argument("--n-f64", type=int, default=500, help="images, GPU float64 device run")
    ap.add_argument("--n-e2e", type=int, default=256, help="images, GPU end-to-end run")
    ap.add_argument("--n-cpu", type=int, default=96, help="images, CPU float32 run")
    ap.add_argument("--n-cpu-f64", type=int, default=64, help="images, CPU float64 run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--cpu-json", help="CPU results measured elsewhere (--cpu-only --json)")
    ap.add_argument("--gpu-json", help="GPU results measured elsewhere (--gpu-only --json)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--small", action="store_true", help="seconds-long smoke run")
    args = ap.parse_args(argv)
    if args.small:
        args.n, args.n_f64, args.n_e2e, args.n_cpu, args.n_cpu_f64 = 128, 64, 32, 16, 8
        args.repeat = 1
    cpu = None
    if args.cpu_json:
        with open(args.cpu_json) as f:
            cpu = json.load(f)["cpu"]
    elif not args.gpu_only:
        cpu = cpu_part(args)
    gpu = None
    if args.gpu_json:
        with open(args.gpu_json) as f:
            gpu = json.load(f)["gpu"]
    elif not args.cpu_only:
        if not _cuda_backend.cuda_available():
            print("no CUDA GPU / no dccnn._cuda: GPU part skipped", file=sys.stderr)
            if args.gpu_only:
                return 1
        else:
            gpu = gpu_part(args)
    print(report(gpu, cpu))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "cpu": cpu}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
