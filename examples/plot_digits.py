"""Fit the default classifier on scikit-learn's digits and draw the pictures the README shows:
the duality gap against time, the singular values of the recovered A and the response maps of
the recovered filters. Writes examples/figures/*.png.

    python examples/plot_digits.py
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import dccnn  # noqa: E402
import dccnn.plot  # noqa: E402

OUT = pathlib.Path(__file__).parent / "figures"


def main():
    OUT.mkdir(exist_ok=True)
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8) / 16.0
    clf = dccnn.DCCNNClassifier(random_state=0).fit(X[:1297], y[:1297])
    error = np.mean(clf.predict(X[1297:]) != y[1297:])
    print(f"test error {100 * error:.1f}%, {clf.n_filters_[0]} filters, gap {clf.gap_:.1e}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    dccnn.plot.plot_gap(clf, ax=left)
    dccnn.plot.plot_singular_values(clf, ax=right)
    fig.tight_layout()
    fig.savefig(OUT / "digits_fit.png", dpi=90)
    fig = dccnn.plot.plot_filter_responses(clf, X[1297:], n_images=4)
    fig.savefig(OUT / "digits_filters.png", dpi=90)


if __name__ == "__main__":
    main()
