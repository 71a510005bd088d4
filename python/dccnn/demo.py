"""``python -m dccnn``: the default classifier on scikit-learn's bundled digits (first 1297
images train, last 500 test, pixels / 16), with its test error, time, recovered filters and
certificate."""

import argparse
import time


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dccnn", description=__doc__)
    parser.add_argument("--verbose", type=int, default=0, help="progress output: 0 none, 1 a line per solver report, 2 also the inner solvers' iterations")
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all)")
    args = parser.parse_args(argv)

    import numpy as np
    from sklearn.datasets import load_digits

    import dccnn

    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8) / 16.0
    print(f"dccnn {dccnn.__version__} (core: {dccnn.get_backend().__name__}, "
          f"tile engine: {dccnn.get_backend().tile_engine()})")
    start = time.perf_counter()
    clf = dccnn.DCCNNClassifier(random_state=0, n_jobs=args.n_jobs, verbose=args.verbose)
    clf.fit(X[:1297], y[:1297])
    fit_time = time.perf_counter() - start
    error = np.mean(clf.predict(X[1297:]) != y[1297:])
    layer = clf.network_.layers_[0]
    print("digits: 1297 training images, 500 test images (8x8)")
    print(f"DCCNNClassifier(): test accuracy {100 * (1 - error):.1f}% "
          f"(error {100 * error:.1f}%), fit {fit_time:.1f} s, "
          f"{layer.n_filters_} recovered filters")
    print(f"certificate: primal {layer.primal_objective_:.6g}, dual {layer.dual_objective_:.6g}, "
          f"relative gap {layer.gap_:.1e} (features {layer.features}, solver {layer.solver})")
    return 0
