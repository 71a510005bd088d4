"""Pictures of a fit (matplotlib, the optional extra ``dccnn[plot]``): the duality gap against
time, the singular values of the recovered operator A, and the response maps of the
recovered filters. Each function takes a fitted ``ConvexLayer`` (or the estimator or network
holding it: the last layer is drawn) and returns the matplotlib Axes or Figure it drew on."""

import numpy as np


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("dccnn.plot needs matplotlib: pip install 'dccnn[plot]'") from None
    return plt


def _layer(obj):
    """The ConvexLayer to draw from a layer, a Network or a fitted estimator."""
    network = getattr(obj, "network_", obj)
    layers = getattr(network, "layers_", None)
    layer = layers[-1] if layers else obj
    if not hasattr(layer, "linear_weights_"):
        raise ValueError("obj: expected a fitted ConvexLayer, Network or DCCNN estimator")
    return layer


def plot_gap(obj, ax=None):
    """Relative duality gap (log scale) against seconds, from the fit's ``history_``."""
    layer = _layer(obj)
    ax = ax if ax is not None else _pyplot().gca()
    history = np.asarray(layer.history_, dtype=float).reshape(-1, 3)
    ax.semilogy(history[:, 2], np.maximum(history[:, 1], 1e-16), marker=".", lw=1)
    ax.axhline(layer.tol, color="grey", ls="--", lw=1, label=f"tol = {layer.tol:g}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("relative duality gap")
    ax.set_title(f"{layer.solver} solver, {layer.features} features")
    ax.legend()
    return ax


def plot_singular_values(obj, ax=None):
    """Singular values of the recovered A (those of the linear weights: the filters are
    orthonormal), i.e. the strength of each recovered filter."""
    layer = _layer(obj)
    ax = ax if ax is not None else _pyplot().gca()
    r, Q, K = layer.linear_weights_.shape
    s = np.linalg.svd(layer.linear_weights_.reshape(r, Q * K), compute_uv=False) if r else []
    ax.bar(np.arange(1, len(s) + 1), s)
    ax.set_xlabel("filter")
    ax.set_ylabel("singular value of A")
    ax.set_title(f"{r} recovered filters, ||A||_* = {layer.nuclear_norm_:.3g}")
    return ax


def plot_filter_responses(obj, X, n_images=4, max_filters=8, fig=None):
    """Pooled response maps ``transform(X)`` of the strongest filters on the first images:
    one row per image (the image first), one column per filter."""
    plt = _pyplot()
    layer = _layer(obj)
    X = np.asarray(X)[:n_images]
    # estimators accept flat images: let them shape X; networks and layers take images
    images = obj._images(X) if hasattr(obj, "_images") else X
    network = getattr(obj, "network_", obj)
    inputs = network._last_input(images) if hasattr(network, "layers_") else images
    maps = layer.transform(inputs)[:, :max_filters]
    n, r = maps.shape[:2]
    fig = fig if fig is not None else plt.figure(figsize=(1.4 * (r + 1), 1.4 * n))
    axes = fig.subplots(n, r + 1, squeeze=False)
    for i in range(n):
        first_channel = images[i].reshape((-1,) + images[i].shape[-2:])[0]
        axes[i, 0].imshow(first_channel, cmap="gray_r")
        for l in range(r):
            axes[i, l + 1].imshow(maps[i, l], cmap="RdBu_r")
            if i == 0:
                axes[i, l + 1].set_title(f"filter {l + 1}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
