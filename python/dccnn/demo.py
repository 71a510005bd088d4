"""Demo on scikit-learn's bundled digits: patches, pooled kernel blocks, timings."""

import time


def main(argv=None):
    import numpy as np
    from sklearn.datasets import load_digits

    import dccnn

    digits = load_digits()
    X = digits.images[:1297] / 16.0
    t0 = time.perf_counter()
    Z = dccnn.extract_patches(X, 3, normalize=True)
    t_patch = time.perf_counter() - t0
    grid = dccnn.patch_grid_shape(X.shape[1:], 3)
    pooling = dccnn.make_pooling(grid, 2, 2)
    t0 = time.perf_counter()
    K = dccnn.pooled_kernel_blocks(Z.astype(np.float32), pooling=pooling, kernel="rbf", gamma=1.0)
    t_kernel = time.perf_counter() - t0
    n, P = Z.shape[:2]
    print(f"dccnn {dccnn.__version__} (core: {dccnn.get_backend().__name__}, "
          f"tile engine: {dccnn.get_backend().tile_engine()})")
    print(f"digits: {n} training images 8x8 -> {P} patches of dimension {Z.shape[2]} "
          f"({t_patch * 1e3:.1f} ms)")
    print(f"pooled kernel blocks: {K.shape} ({K.nbytes / 2**20:.0f} MiB), "
          f"{n * (n + 1) // 2 * P * P / t_kernel / 1e9:.2f} G patch-kernel values/s "
          f"({t_kernel:.2f} s)")
    return 0
