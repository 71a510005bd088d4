"""dccnn.kernel_matrix against the numpy expression and numpy's sgemm peak, in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/kernel_matrix.py [--small]

Sizes: 20000 x 4000 patches of dimension 25, float32, rbf (a kernel value counts 2d + 15
flops). ``--small`` runs a seconds-long smoke version (used by .ci/run).
"""

import argparse
import sys

import numpy as np
from threadpoolctl import threadpool_info

import dccnn
from _timing import best_time, machine_summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    n1, n2, d, gemm_n = (2000, 400, 25, 1000) if args.small else (20000, 4000, 25, 4000)
    rng = np.random.default_rng(0)
    A = rng.random((n1, d), dtype=np.float32)
    B = rng.random((n2, d), dtype=np.float32)
    gamma = np.float32(1.0 / d)

    def numpy_expression():
        return np.exp(-gamma * ((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T))

    S = rng.random((gemm_n, gemm_n), dtype=np.float32)
    t_gemm = best_time(lambda: S @ S)
    t_np = best_time(numpy_expression)
    t_core = best_time(lambda: dccnn.kernel_matrix(A, B, "rbf", gamma=float(gamma)))
    out = np.empty((n1, n2), np.float32)
    t_alloc = best_time(lambda: np.empty((n1, n2), np.float32).fill(0))
    t_fill = best_time(lambda: out.fill(0))
    # the inner products alone, as numpy's GEMM of the very shape (k = d is small)
    t_shape_gemm = best_time(lambda: np.matmul(A, B.T, out=out))

    err = np.abs(dccnn.kernel_matrix(A[:200], B, "rbf", gamma=float(gamma)) - numpy_expression()[:200]).max()
    sgemm = 2 * gemm_n**3 / t_gemm
    evals = n1 * n2 / t_core
    equiv = evals * (2 * d + 15)
    blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')}" for i in threadpool_info()
                     if i["user_api"] == "blas")
    print(f"machine: {machine_summary()}; BLAS: {blas}; tile engine: {dccnn.get_backend('auto').tile_engine()}")
    print(f"sizes: {n1} x {n2}, d = {d}, float32, rbf; max |diff| vs numpy = {err:.2e}")
    print("| quantity | value |")
    print("|---|---|")
    print(f"| numpy sgemm ({gemm_n}^3) | {sgemm / 1e9:.0f} GFLOP/s |")
    print(f"| numpy expression | {t_np * 1e3:.1f} ms |")
    print(f"| dccnn.kernel_matrix | {t_core * 1e3:.1f} ms ({evals / 1e9:.2f} G evaluations/s) |")
    print(f"| speed-up over the numpy expression | {t_np / t_core:.1f}x |")
    print(f"| sgemm-equivalent rate | {equiv / 1e9:.0f} GFLOP/s = {equiv / sgemm:.0%} of sgemm |")
    print(f"| floor: allocate + write the output once | {t_alloc * 1e3:.1f} ms (numpy / floor = {t_np / t_alloc:.1f}x) |")
    print(f"| floor: write a preallocated output once | {t_fill * 1e3:.1f} ms |")
    print(f"| numpy sgemm of the same shape ({n1} x {d} times {d} x {n2}, output reused) | "
          f"{t_shape_gemm * 1e3:.1f} ms = {2 * n1 * n2 * d / t_shape_gemm / 1e9:.0f} GFLOP/s; "
          f"kernel_matrix / this = {t_core / t_shape_gemm:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
