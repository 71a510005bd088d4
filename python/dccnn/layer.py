"""One convexified convolutional layer: ``fit_layer`` and the fitted ``ConvexLayer`` (SPEC §8)."""

import time
import warnings

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from ._progress import FitProgress
from ._memory import check_allocation, format_bytes, memory_budget
from ._targets import encode_targets
from ._threads import scipy_blas_single_thread
from ._validation import (check_bool, check_choice, check_float, check_int, check_sample_weight,
                          check_seed)
from .certificate import Certificate, primal_objective
from .feature_maps import LANDMARKS, LinearMap, NystroemMap, RandomFourierMap
from .features import (DeviceExactFeatures, ExactFeatures, ExplicitFeatures, cross_from_blocks,
                       device_cross, exact_features, plan_exact_blocks)
from .kernels import check_kernel_inputs, max_patch_norm, pooled_kernel_blocks, resolve_kernel
from .losses import LOSSES, get_loss
from .patches import as_images, extract_patches, patch_grid_shape
from .persistence import save
from .pooling import make_pooling
from .recovery import Recovery, conv_outputs, network_scores, recover, reduced_solve, singular_basis
from .solvers.dual import solve_dual
from .solvers.admm import admm
from .solvers.admm_spaces import KernelSpace
from .solvers.factored import factored_primal
from .solvers.fista import LOSS_CURVATURE, fista

FEATURES = ("auto", "exact", "nystroem", "random_fourier")
SOLVERS = ("auto", "dual", "primal", "factored", "admm")
EXPLICIT_SOLVERS = ("primal", "factored")  # solvers of an explicit A: no exact back-end
# losses for which solver="auto" takes ADMM on explicit features: 1.1-4.7x faster than the
# factored primal on digits for the squared hinge, the only fast solver for the hinge; slower
# for the logistic loss, and 393 s on one squared-loss problem (bench/README.md)
ADMM_LOSSES = ("squared_hinge", "hinge")
# features="auto" takes the exact back-end up to this many images (its kernel work and the
# dual solver's Gram grow as n^2) when its memory fits the budget, else Nystroem features.
EXACT_MAX_SAMPLES = 500
# solver="auto" on the exact back-end: ADMM's iterations before the ALM dual takes over. ADMM
# needed 46-1450 iterations over 48 digits fits (bench/README.md) but its count grows with
# C ||psi||^2, where the ALM's penalty is normalised: with a linear kernel on inputs scaled
# 20x it stopped at gap 6e-4 after 3000 iterations, where the ALM converged in 6.
HANDOVER_ITER = 2000
# Iterations of each reduced problem of the recovery when max_iter is not given.
RECOVERY_MAX_ITER = 20000
# C is the scale of the dual variables: beyond these bounds products such as C * ||Psi||^2
# under- or overflow double precision.
C_RANGE = (1e-12, 1e12)
# log10 of the largest (n C)^2 k(z, z) accepted: M(alpha) and the scores sum up to n^2
# products of dual variables (of size about C) with kernel values, and the solvers' trial
# points and penalties need room above that in double precision (max about 1.8e308).
SOLVER_SCALE_LOG10 = 280
# log10 of the largest kernel value k(z, z) accepted whatever n and C: the primal solvers'
# dual points grow with the scores (the squared hinge's alpha = 2 C (1 - y f)_+), so M(alpha)
# and L-BFGS-B's curvature pairs reach k^2. On linear features of scaled patches, mu = 0.1,
# the factored primal failed from k = 1e160 and FISTA from 1e210 for every n and C tried
# (bench/fuzz.py and a scan, bench/README.md); every solver passed up to 1e150.
KERNEL_VALUE_LOG10 = 140
# Patches sampled for the median heuristic of gamma="median".
MEDIAN_SAMPLE = 2000


# Budget for the pooled kernel blocks of one batch of new images against the support images.
EXPANSION_BATCH_BYTES = 256 * 2**20


def raise_naming_X(exc):
    """Re-raise a ValueError of the kernels, which name their own arguments (the patches Z,
    Z1, Z2), as one naming X, where the patches come from."""
    message = str(exc)
    for internal in ("Z1:", "Z2:", "Z:"):
        if message.startswith(internal):
            raise ValueError(f"X:{message[len(internal):]} (in the patches of X)") from None
    raise exc


class ConvexLayer:
    """A fitted convexified layer, i.e. a recovered two-layer network (SPEC §4, §8).

    Its conv layer has ``n_filters_`` filters in the kernel's RKHS; ``transform`` gives their
    average-pooled outputs and ``linear_weights_`` (r, Q, K) maps those to the K outputs.
    Exact back-end: the filters are kernel expansions over the patches of the support images
    (``beta != 0``), ``h_l(z) = sum_t F[t, l] sum_j beta[j, c_t] mean_{p in S_q_t} k(z_p(x_j), z)``.
    Explicit back-ends: the filters are vectors ``filters_`` (m, r) in the feature space.
    """

    def _patches(self, X):
        X = as_images(X)
        if X.shape[1:] != self.input_shape_:
            raise ValueError(f"X: expected images of shape {self.input_shape_}, got {X.shape[1:]}")
        Z = extract_patches(X, self.patch_size, self.stride, self.padding,
                            normalize=self.normalize_patches, backend=self.backend,
                            n_jobs=self.n_jobs)
        return Z.astype(self.dtype_, copy=False)

    def _pooled_outputs(self, X):
        """u[i, q, l]: the pooled output of filter l in pooling window q, (n, Q, r) float64."""
        Z = self._patches(X)
        if self.feature_map_ is not None:
            return self.feature_map_.transform(Z).astype(np.float64) @ self.filters_
        p = self.kernel_params_
        pooling, beta, support = self.pooling_, self.support_beta_, self.support_patches_
        ns, Q, K = support.shape[0], pooling.n_windows, beta.shape[1]
        out = np.zeros((Z.shape[0], Q, self.n_filters_))
        if ns == 0:  # beta = 0: every filter is the zero function
            return out
        try:
            check_kernel_inputs(p, Z.dtype, {"Z1": Z, "Z2": support})
        except ValueError:
            # the fit evaluated its blocks in float64 whatever the input (fit_layer); so does
            # the transform where the patches' own dtype cannot hold the evaluation
            Z, support = Z.astype(np.float64), support.astype(np.float64)
        # a batch of images holds its blocks against the support images (on the GPU: only
        # their contraction with beta, the blocks stay on the device)
        per_image = Q * Q * K * 8 if self.device == "cuda" else ns * Q * Q * Z.itemsize
        batch = max(1, EXPANSION_BATCH_BYTES // max(1, per_image))
        try:
            for s in range(0, Z.shape[0], batch):
                if self.device == "cuda":
                    H = device_cross(Z[s:s + batch], support, beta, pooling, p)
                else:
                    blocks = pooled_kernel_blocks(Z[s:s + batch], support, pooling=pooling,
                                                  kernel=p.kernel, gamma=p.gamma,
                                                  degree=p.degree, coef0=p.coef0,
                                                  constant=p.constant, backend=self.backend,
                                                  n_jobs=self.n_jobs)
                    H = cross_from_blocks(blocks, beta)
                out[s:s + batch] = conv_outputs(H, self.filter_coef_)
        except ValueError as exc:
            raise_naming_X(exc)
        return out

    def transform(self, X):
        """Pooled outputs of the recovered conv layer, (n, r, Hq, Wq): the input images of a
        next layer."""
        U = self._pooled_outputs(X)
        Hq, Wq = self.pooling_.out_shape
        return np.ascontiguousarray(U.transpose(0, 2, 1).reshape(U.shape[0], -1, Hq, Wq),
                                    dtype=self.dtype_)

    def decision_function(self, X):
        """f(x) for images X -> (n, K)."""
        U = self._pooled_outputs(X)
        r, Q, K = self.linear_weights_.shape
        return network_scores(U, self.linear_weights_.reshape(r, Q * K), K)

    def predict(self, X):
        F = self.decision_function(X)
        if self.classes_ is None:
            return F
        if F.shape[1] == 1:
            return self.classes_[(F[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(F, axis=1)]

    def save(self, path):
        """Write the fitted layer to ``path`` (.npz, see ``dccnn.load``)."""
        save(self, path)

    def check_consistent(self):
        """Raise ValueError unless the fitted arrays have the shapes that ``transform`` and
        ``predict`` use together (run by ``dccnn.load`` on what a file holds)."""
        def expect(name, shape):
            value = getattr(self, name, None)
            if not isinstance(value, np.ndarray) or value.shape != shape:
                have = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                raise ValueError(f"{name}: expected an array of shape {shape}, got {have}")

        C, H, W = self.input_shape_
        grid = patch_grid_shape((H, W), self.patch_size, self.stride, self.padding)
        if tuple(grid) != tuple(self.pooling_.grid_shape):
            raise ValueError(f"pooling_: its {self.pooling_.grid_shape} grid is not the {grid} "
                             f"grid of patches of {self.input_shape_} images")
        r, Q, K = self.n_filters_, self.pooling_.n_windows, self.n_outputs_
        expect("linear_weights_", (r, Q, K))
        if self.feature_map_ is not None:
            expect("filters_", (self.feature_map_.n_components, r))
            return
        ns = getattr(self.support_patches_, "shape", (0,))[0]
        expect("support_patches_", (ns, self.pooling_.n_positions, C * self.patch_size ** 2))
        expect("support_beta_", (ns, K))
        expect("filter_coef_", (Q * K, r))


def check_solver_scale(Z, kp, n, C):
    """ValueError naming X where (n C)^2 times the largest kernel value k(z, z) of the patches
    Z exceeds 10^SOLVER_SCALE_LOG10 (the solvers' sums would overflow float64; found by
    bench/fuzz.py: linear features of patches near 1e150 gave NaN in the ALM), or k(z, z)
    itself exceeds 10^KERNEL_VALUE_LOG10."""
    norm = max_patch_norm(Z)
    log_norm2 = 2 * np.log10(norm) if norm > 0 else -np.inf  # log10 max |z|^2
    if kp.kernel == "linear":
        log_k = log_norm2
    elif kp.kernel == "polynomial":
        log_k = kp.degree * np.logaddexp(log_norm2 * np.log(10),
                                         np.log(max(abs(kp.coef0), 1e-300))) / np.log(10)
    else:  # rbf and inverse polynomial values are at most 1
        log_k = 0.0
    log_constant = np.log10(max(kp.constant, 1e-300))
    room = SOLVER_SCALE_LOG10 - 2 * np.log10(n * C)
    overflow = (f"with {n} images and C={C:g} the solver's sums of (n C)^2 such values would "
                "overflow float64")
    if log_constant > room:
        raise ValueError(f"constant: {kp.constant:g} is added to every kernel value; {overflow}")
    if log_k > room:
        raise ValueError(
            f"X: its patches give kernel values up to 1e{log_k:.0f} ({kp.kernel} kernel); "
            f"{overflow}: rescale the images (or lower C)")
    if log_k > KERNEL_VALUE_LOG10:
        raise ValueError(
            f"X: its patches give kernel values up to 1e{log_k:.0f} ({kp.kernel} kernel), "
            f"beyond the 1e{KERNEL_VALUE_LOG10} whose squares the solvers' products reach in "
            "float64: rescale the images")


def median_heuristic_gamma(Z, random_state=None):
    """gamma = 1 / median squared distance between random pairs of training patches."""
    flat = Z.reshape(-1, Z.shape[2])
    rng = np.random.default_rng(random_state)
    a = flat[rng.integers(0, flat.shape[0], MEDIAN_SAMPLE)].astype(np.float64)
    b = flat[rng.integers(0, flat.shape[0], MEDIAN_SAMPLE)].astype(np.float64)
    med = float(np.median(((a - b) ** 2).sum(axis=1)))
    return 1.0 / med if med > 0 else 1.0


def _exact_block_bytes(n, Q):
    """Bytes of all pooled kernel blocks (n, n, Q, Q), float64 whatever the input (see
    fit_layer)."""
    return n * n * Q * Q * 8


def _admm_expansion_numbers(n, Q, T):
    """Float64 numbers of ADMM's kernel expansions and trace Gram on the exact back-end."""
    return KernelSpace.LIVE_ARRAYS * n * Q * T + n * n


def _check_admm_expansions(n, Q, T, max_memory):
    """MemoryError when ADMM's kernel expansions and trace Gram (the exact back-end) would
    not fit."""
    check_allocation((_admm_expansion_numbers(n, Q, T),), np.float64,
                     "ADMM's kernel expansions", max_memory=max_memory,
                     advice="Use solver='dual', whose memory is the kernel blocks', or "
                            "explicit features.")


# The certified dual and ADMM work with T x T matrices (T = Q K): M(beta) or the Gram of an
# iterate, its eigenvectors, the next iterate and the temporaries of their products; the
# recovery that follows every solver forms M and its eigenvectors too.
TT_LIVE_ARRAYS = 5


def _check_output_matrices(Q, K, max_memory):
    """MemoryError when the T x T matrices of the solvers and the recovery would not fit."""
    T = Q * K
    check_allocation((TT_LIVE_ARRAYS, T, T), np.float64,
                     f"the solver's T x T matrices (T = {Q} windows x {K} outputs = {T})",
                     max_memory=max_memory,
                     advice="Use fewer outputs (columns of y) or fewer pooling windows.")


def choose_features(n, Q, max_memory):
    """The back-end for features="auto" and the reason, for verbose output: exact while n is
    small and its blocks, or at least their upper triangle, fit the memory budget (no block
    evaluated again on each pass)."""
    budget = memory_budget(max_memory)
    exact_bytes = _exact_block_bytes(n, Q)
    if n > EXACT_MAX_SAMPLES:
        return "nystroem", f"auto: n={n} > {EXACT_MAX_SAMPLES}"
    plan = plan_exact_blocks(n, Q, 8, budget)
    if plan is not None and plan[1] < plan[2]:
        return "nystroem", (f"auto: exact would take {format_bytes(exact_bytes)} (about half "
                            f"of it for their upper triangle) > budget {format_bytes(budget)}")
    how = "" if plan is None else " as their upper triangle"
    return "exact", f"auto: {format_bytes(exact_bytes)} of blocks fit the budget{how}"


def _feature_map(features, kp, pooling, Z, n_components, landmarks, random_state, n_jobs,
                 backend, device, max_memory):
    """The fitted explicit feature map of patches for ``features``. The memory of the map and
    of the features it will give (n, Q, at most m) is checked before anything is fitted."""
    n, P, d = Z.shape
    constant_column = 1 if kp.constant > 0 else 0
    advice = "Use a smaller n_components."
    if features == "nystroem" and kp.kernel == "linear" and n_components is None:
        fmap, m = LinearMap(pooling, kp.constant), d + constant_column
    elif features == "nystroem":
        m = min(n_components or 500, n * P)  # every patch is a landmark where m exceeds them
        check_allocation((2, m, m), np.float64, "the landmarks' kernel matrix and its "
                         "eigenvectors", max_memory=max_memory, advice=advice)
        fmap = NystroemMap(pooling, kp, m, random_state=random_state, n_jobs=n_jobs,
                           backend=backend, device=device, landmarks=landmarks)
    else:
        m = n_components or 500
        check_allocation((d, m), Z.dtype, "the random Fourier weights", max_memory=max_memory,
                         advice=advice)
        fmap = RandomFourierMap(pooling, kp.gamma, m, random_state=random_state,
                                constant=kp.constant)
        m += constant_column
    check_allocation((n, pooling.n_windows, m), np.float64, "explicit features",
                     max_memory=max_memory, advice=advice)
    return fmap.fit(Z)


def _network_of_explicit_A(feats, A, Y, loss, mu, max_filters, tol, max_iter, random_state):
    """The network of an explicit A (m, T): filters = left singular vectors; with
    ``max_filters`` the strongest filters are kept and their linear weights refitted."""
    K = Y.shape[1]
    filters, weights, sv = singular_basis(A)
    U = feats.psi.astype(np.float64) @ filters
    if max_filters is not None and filters.shape[1] > max_filters:
        filters, U = filters[:, :max_filters], U[:, :, :max_filters]
        weights = reduced_solve(U, Y, loss, mu, weights[:max_filters], tol, max_iter,
                                random_state)
        P, weights, sv = singular_basis(weights)
        filters, U = filters @ P, U @ P
    scores = network_scores(U, weights, K)
    return Recovery(None, None, weights, primal_objective(sv**2, scores, Y, loss, mu), scores,
                    "primal_point", (), filters)


def fit_layer(X, y, *, patch_size, stride=1, padding=0, pool_size=None, pool_stride=None,
              kernel="rbf", gamma=None, degree=2, coef0=1.0, constant=0.0,
              normalize_patches=False, C=1.0, mu=0.0, loss="squared_hinge", features="exact",
              n_components=None, landmarks="uniform", solver="dual", tol=1e-6, max_iter=None,
              max_filters=None, random_state=None, verbose=0, warm_start=None, callback=None,
              backend="auto", n_jobs=None, max_memory=None, device="cpu", sample_weight=None):
    """Train one convexified layer (SPEC §1-5) and return a fitted ``ConvexLayer``.

    ``X``: images (n, C, H, W) or (n, H, W). ``y``: 1-d labels (one-vs-rest coding; two
    classes give K = 1) or a 2-d (n, K) float array used as is. ``features``: "exact" (pooled
    kernel blocks), "nystroem" or "random_fourier" (explicit features, ``n_components`` of
    them), or "auto" (exact while n and its memory are small enough, see ``choose_features``).
    ``landmarks``: how the Nystroem landmarks are drawn from the training patches, "uniform"
    or "kmeans++" (k-means++ seeding, spread over the patches' distribution).
    ``solver``: "dual" (certified dual, any back-end), "primal" (FISTA with singular value
    thresholding, the CCNN-style baseline), "factored" (Burer-Monteiro L-BFGS; both primal
    solvers need explicit features and a smooth loss), "admm" (ADMM with the core's dual
    coordinate descent as inner solver; either back-end, every loss) or "auto" ("admm" on the
    exact back-end and, on explicit features, for the (squared) hinge, handing over to
    "dual" or "factored" if it has not converged after HANDOVER_ITER iterations; "factored"
    for the other smooth losses). ``gamma="median"``: 1 / the median squared distance between training
    patches. ``device="cuda"`` evaluates the kernel blocks (exact) or the Nystroem kernel
    columns on the GPU, for the fit and for ``transform``/``decision_function`` (needs the
    CUDA build, ``dccnn._cuda``); the exact blocks are held in device memory where they take
    at most half of its budget, else evaluated again on each pass, and reduced on the device
    either way (only their products with the dual weights come back, no host memory for
    blocks). ``max_memory`` (bytes, default half the available memory) bounds each large
    allocation; where the exact back-end's kernel blocks exceed it, only their
    upper triangle is held (half the memory), and where that exceeds it too, as much of it as
    fits, the rest evaluated again on each pass of the solver (much slower, same result). The
    network is recovered from the solution (SPEC §4). The fit stops when the relative duality
    gap is at most ``tol`` or after ``max_iter`` iterations (then with a ConvergenceWarning
    stating the gap). ``warm_start``: a previously fitted layer on the same data (e.g. along a
    path of C values) whose dual variables and multiplier start the solver; its primal point
    starts the primal solvers and ADMM where its shape fits this fit's features (not after a
    change of ``n_components`` or of the pooling). ``sample_weight`` (n,): sample i's loss
    counts ``C * sample_weight[i]`` (a weight of 2 is the sample twice, a weight of 0 leaves
    it out); every solver and the certificate use these per-sample C.
    """
    t_start = time.perf_counter()
    C = check_float(C, "C", minimum=0, exclusive=True)
    normalize_patches = check_bool(normalize_patches, "normalize_patches")
    if not C_RANGE[0] <= C <= C_RANGE[1]:
        raise ValueError(f"C: {C:g} is outside [{C_RANGE[0]:g}, {C_RANGE[1]:g}], where the "
                         "dual variables (of size up to C) stay representable with room for "
                         "the solver's arithmetic; rescale the loss instead")
    mu = check_float(mu, "mu", minimum=0)
    tol = check_float(tol, "tol", minimum=0, exclusive=True)
    check_choice(loss, "loss", LOSSES)
    check_choice(features, "features", FEATURES)
    check_choice(landmarks, "landmarks", LANDMARKS)
    check_choice(solver, "solver", SOLVERS)
    verbose = check_int(verbose, "verbose", minimum=0)
    max_iter = None if max_iter is None else check_int(max_iter, "max_iter", minimum=1)
    if max_filters is not None:
        max_filters = check_int(max_filters, "max_filters", minimum=1)
    if n_components is not None:
        n_components = check_int(n_components, "n_components", minimum=1)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    random_state = check_seed(random_state, "random_state")
    if isinstance(gamma, str) and gamma != "median":
        raise ValueError(f"gamma: expected a positive number, None or 'median', got {gamma!r}")
    if solver in EXPLICIT_SOLVERS and features == "exact":
        raise ValueError(f"solver: {solver!r} needs explicit features (features='nystroem' or "
                         "'random_fourier'); the exact back-end is solved by 'dual' or 'admm'")
    if features == "random_fourier" and kernel != "rbf":
        raise ValueError(f"features: 'random_fourier' exists for kernel='rbf' only, got {kernel!r}")
    Xi = as_images(X)
    n = Xi.shape[0]
    lossobj = get_loss(loss, C)
    # the targets' coding (classes) comes from every sample, weight 0 or not
    Y, classes = encode_targets(y, n, lossobj)
    kept = None  # which of the given samples the fit sees, where weights of 0 left some out
    if sample_weight is not None:
        weights = check_sample_weight(sample_weight, n)
        if np.any(weights == 0):  # a sample of weight 0 is a sample left out
            kept = weights > 0
            Xi, Y, weights = Xi[kept], Y[kept], weights[kept]
            n = Xi.shape[0]
        if not np.all(weights == 1):
            if not C_RANGE[0] <= C * weights.min() <= C * weights.max() <= C_RANGE[1]:
                raise ValueError(f"sample_weight: C times the weights must lie in "
                                 f"[{C_RANGE[0]:g}, {C_RANGE[1]:g}] (see C)")
            lossobj = get_loss(loss, C, weights)
    check_warm_start(warm_start, Y.shape, kept)
    patch_size = check_int(patch_size, "patch_size", minimum=1)
    if patch_size > min(Xi.shape[2:]) + 2 * check_int(padding, "padding", minimum=0):
        raise ValueError(f"patch_size: a {patch_size}x{patch_size} patch does not fit the "
                         f"{Xi.shape[2]}x{Xi.shape[3]} images with padding {padding}")
    grid = patch_grid_shape(Xi.shape[2:], patch_size, stride, padding)
    pooling = make_pooling(grid, pool_size, pool_stride)
    Z = extract_patches(Xi, patch_size, stride, padding, normalize=normalize_patches,
                        backend=backend, n_jobs=n_jobs, max_memory=max_memory)
    if gamma == "median":
        gamma = median_heuristic_gamma(Z, random_state)
    kp = resolve_kernel(kernel, Z.shape[2], gamma=gamma, degree=degree, coef0=coef0,
                        constant=constant)
    check_solver_scale(Z, kp, n, lossobj.C_max)
    K = Y.shape[1]
    T = pooling.n_windows * K
    auto_note = ""
    if features == "auto" and solver in EXPLICIT_SOLVERS:
        features, auto_note = "nystroem", f"auto: solver {solver!r} needs explicit features"
    elif features == "auto":
        features, auto_note = choose_features(n, pooling.n_windows, max_memory)
    handover = False
    if solver == "auto":
        # measured on digits (bench/README.md): ADMM is the fastest on the exact back-end for
        # every loss (2.5-14x the ALM dual); on explicit features for the (squared) hinge,
        # and the factored primal for the other smooth losses
        if features == "exact":
            # unless its expansions would not fit where the blocks do (many outputs K)
            try:
                _check_admm_expansions(n, pooling.n_windows, T, max_memory)
                solver, handover = "admm", True
            except MemoryError:
                solver = "dual"
        elif loss in ADMM_LOSSES:
            solver, handover = "admm", True
        else:
            solver = "factored" if loss in LOSS_CURVATURE else "dual"
    elif solver == "admm" and features == "exact":
        _check_admm_expansions(n, pooling.n_windows, T, max_memory)
    _check_output_matrices(pooling.n_windows, K, max_memory)  # every fit's recovery has them

    layer = ConvexLayer()
    layer.__dict__.update(
        patch_size=patch_size, stride=stride, padding=padding, pool_size=pool_size,
        pool_stride=pool_stride, normalize_patches=normalize_patches, C=C, mu=mu, loss=loss,
        features=features, solver=solver, tol=tol, backend=backend, n_jobs=n_jobs, device=device,
        input_shape_=Xi.shape[1:], dtype_=Z.dtype, pooling_=pooling, kernel_params_=kp,
        classes_=classes, n_outputs_=K, feature_map_=None, sample_mask_=kept)

    try:
        if features == "exact":
            # float64 blocks whatever the input (like the explicit features): the solver's
            # products sum n terms, and float32 sums stalled it near a gap of 1e-4
            feats = exact_features(Z.astype(np.float64, copy=False), pooling, kp,
                                   n_jobs=n_jobs, backend=backend, max_memory=max_memory,
                                   device=device)
        else:
            fmap = _feature_map(features, kp, pooling, Z, n_components, landmarks, random_state,
                                n_jobs, backend, device, max_memory)
            feats = ExplicitFeatures(fmap.transform(Z).astype(np.float64))
            layer.feature_map_ = fmap
    except ValueError as exc:
        raise_naming_X(exc)
    streamed = isinstance(feats, ExactFeatures) and feats.streamed
    held_note = "" if not streamed else (
        f"the blocks of {feats.held_share:.0%} of the image pairs are held")
    if streamed:
        # the ALM dual makes about ten times ADMM's passes (bench/README.md)
        alm_note = "" if solver != "dual" else (
            "; the 'dual' solver makes many more passes than 'admm', whose kernel expansions "
            f"need {format_bytes(_admm_expansion_numbers(n, pooling.n_windows, T) * 8)}")
        warnings.warn(f"fit_layer: the kernel blocks "
                      f"({format_bytes(_exact_block_bytes(n, pooling.n_windows))}) exceed the "
                      f"memory budget; {held_note} and the others are "
                      "evaluated again on each pass of the solver, which is much slower "
                      "(raise max_memory, or use "
                      f"features='nystroem'){alm_note}", UserWarning, stacklevel=2)
    if verbose:
        what = f"{features} ({'Q=%d' % pooling.n_windows}" + (
            f", m={feats.m})" if features != "exact" else
            (", blocks held and reduced on the GPU)" if feats.held is not None else
             ", blocks evaluated and reduced on the GPU on each pass)") if device == "cuda" else
            ")" if feats.blocks is not None else
            ", the upper triangle of the blocks held by batches of rows)" if not streamed else
            f", {held_note}, the rest evaluated on each pass)")
        print(f"[dccnn] layer: n={n}, K={K}, T={T}, features {what}{' ' + auto_note if auto_note else ''}, solver {solver}, "
              f"loss {loss}, C={C:g}, mu={mu:g} ({time.perf_counter() - t_start:.2f}s to set up)")

    progress = FitProgress(tol, verbose, callback)
    try:
        with scipy_blas_single_thread():
            _solve_and_recover(layer, feats, Z, Y, lossobj, mu, K, pooling, features, solver,
                               tol, max_iter, max_filters, warm_start, progress, random_state,
                               backend, handover)
    except ValueError as exc:  # blocks evaluated again on each pass check their patches there
        raise_naming_X(exc)
    finally:
        progress.close()
        if isinstance(feats, DeviceExactFeatures):
            feats.release()  # now, also where an interrupted fit's traceback keeps feats
    layer.fit_time_ = time.perf_counter() - t_start
    if not layer.solver_converged_:
        warnings.warn(f"fit_layer: stopped after {layer.n_iter_} iterations at relative duality "
                      f"gap {layer.solver_gap_:.3e} > tol={tol:g}; raise max_iter or tol",
                      ConvergenceWarning, stacklevel=2)
    elif layer.gap_ > max(tol, layer.solver_gap_) and max_filters is None:
        warnings.warn(f"fit_layer: the recovered network's relative duality gap is "
                      f"{layer.gap_:.3e} (the solver reached {layer.solver_gap_:.3e}); lower tol "
                      f"for a more accurate dual solution", ConvergenceWarning, stacklevel=2)
    if verbose:
        print(f"[dccnn] layer done: primal {layer.primal_objective_:.8g}, dual "
              f"{layer.dual_objective_:.8g}, gap {layer.gap_:.2e}, {layer.n_filters_} filters, "
              f"{layer.n_iter_} iterations, {layer.fit_time_:.2f}s")
    return layer


def check_warm_start(warm_start, shape, kept=None):
    """TypeError/ValueError naming warm_start unless it is None or a fitted layer whose dual
    variables have this fit's shape (n images, K outputs) and belong to the same samples
    (``kept``: the mask of the samples that weights of 0 did not leave out, or None): every
    solver starts from them."""
    if warm_start is None:
        return
    if not isinstance(warm_start, ConvexLayer):
        raise TypeError("warm_start: expected a fitted ConvexLayer (the result of fit_layer), "
                        f"got {type(warm_start).__name__}")
    alpha = getattr(warm_start, "alpha_", None)
    before = getattr(warm_start, "sample_mask_", None)
    same_samples = before is None if kept is None else \
        before is not None and np.array_equal(before, kept)
    if alpha is not None and not same_samples:
        raise ValueError("warm_start: the layer was fitted on other samples (weights of 0 in "
                         "sample_weight leave samples out, and they differ between the two "
                         "fits); a warm start comes from a fit on the same samples")
    if alpha is None or alpha.shape != shape:
        fitted = "is not fitted" if alpha is None else \
            f"was fitted on {alpha.shape[0]} images with {alpha.shape[1]} outputs"
        raise ValueError(f"warm_start: the layer {fitted}; this fit has {shape[0]} images and "
                         f"{shape[1]} outputs (a warm start comes from a fit on the same data)")


def _primal_warm_start(warm_start, feats, n, T):
    """The A of a previous fit on the same data, for the solvers of A: the explicit matrix A_
    (where its shape fits feats), or on the exact back-end the pair (beta, S) of A = G(beta) S
    (filters G(beta) F, linear weights W: S = F W)."""
    if warm_start is None:
        return None
    if feats.kind == "explicit":
        A = getattr(warm_start, "A_", None)
        return A if A is not None and A.shape == (feats.m, T) else None
    # (its support indexes images of this fit: check_warm_start compared the image counts)
    support = getattr(warm_start, "support_", None)
    if support is None or warm_start.filter_coef_.shape[0] != T:
        return None
    beta = np.zeros((n, warm_start.support_beta_.shape[1]))
    beta[support] = warm_start.support_beta_
    r = warm_start.n_filters_
    return beta, warm_start.filter_coef_ @ warm_start.linear_weights_.reshape(r, T)


class _HandoverStart:
    """The warm start a stalled ADMM hands over: its primal point (explicit A_, or None on the
    exact back-end) and its certified dual point."""

    dual_scale_ = 1.0  # alpha_ is already feasible

    def __init__(self, A, alpha):
        self.A_, self.alpha_ = A, alpha


def _solve_and_recover(layer, feats, Z, Y, lossobj, mu, K, pooling, features, solver, tol,
                       max_iter, max_filters, warm_start, callback, random_state, backend,
                       handover=False):
    """Run the solver, recover the network and store both on ``layer``. ``handover``: ADMM
    runs at most HANDOVER_ITER iterations, then the ALM dual (the factored primal for the
    smooth losses on explicit features) goes on from its points."""
    # the reduced problems of the recovery are bounded like the solver itself
    recovery_iter = max_iter or RECOVERY_MAX_ITER
    fallback = primal_point = None
    history = []
    if solver in EXPLICIT_SOLVERS or solver == "admm":
        A0 = _primal_warm_start(warm_start, feats, Y.shape[0], pooling.n_windows * K)
        run = {"primal": fista, "factored": factored_primal, "admm": admm}[solver]
        alpha0 = None
        if warm_start is not None:  # (its alpha_ has Y's shape: check_warm_start)
            alpha0 = warm_start.alpha_ / warm_start.dual_scale_  # its feasible rescaling
        extra = {"primal": {}, "factored": {"random_state": random_state},
                 "admm": {"random_state": random_state, "backend": backend,
                          "alpha0": alpha0}}[solver]
        budget = max_iter or 10000
        if handover:
            budget = min(budget, HANDOVER_ITER)
        A, alpha, cert, n_iter, history = run(feats, Y, lossobj, mu, tol=tol, max_iter=budget,
                                              A0=A0, callback=callback, **extra)
        solver_converged = cert.gap <= tol
        if handover and not solver_converged:
            # ADMM's iterations grow with C ||psi||^2 (bench/README.md): a solver whose
            # penalty or step is normalised goes on from its points
            explicit_A = None if features == "exact" else A
            after = "factored" if explicit_A is not None and lossobj.name in LOSS_CURVATURE \
                else "dual"
            layer.solver = f"admm, then {after}"
            _solve_and_recover(layer, feats, Z, Y, lossobj, mu, K, pooling, features, after,
                               tol, max_iter, max_filters,
                               _HandoverStart(explicit_A, alpha / cert.dual_scale), callback,
                               random_state, backend)
            layer.history_ = history + layer.history_
            return
        if features != "exact":
            # (on the exact back-end ADMM's A is a kernel expansion over all nQ training
            # features: the network comes from its certified dual point alone)
            fallback = _network_of_explicit_A(feats, A, Y, lossobj, mu, max_filters, tol,
                                              recovery_iter, random_state)
    else:
        alpha0 = getattr(warm_start, "alpha_", None)
        V0 = getattr(warm_start, "multiplier_factor_", None)
        res = solve_dual(feats, Y, lossobj, mu, tol=tol, max_iter=max_iter or 2000,
                         alpha0=alpha0, V0=V0, random_state=random_state, callback=callback,
                         backend=backend)
        alpha, cert, n_iter, history = res.alpha, res.certificate, res.n_iter, res.history
        solver_converged = res.converged
        layer.multiplier_factor_ = res.V
        layer.inner_epochs_ = res.inner_epochs
        primal_point = (feats.cross(res.beta_primal), res.beta_primal, res.Sigma_primal)
    layer.alpha_ = alpha
    # the network is recovered from the certified (feasible) dual point (SPEC §4), or from
    # the solver's primal point when that is closer to the optimum (recovery.recover)
    beta = lossobj.beta(alpha / cert.dual_scale, Y)
    rec = recover((feats.cross(beta), beta), Y, lossobj, mu, cert.dual, solver_gap=cert.gap,
                  tol=tol, primal_point=primal_point, fallback=fallback,
                  max_filters=max_filters, max_iter=recovery_iter, random_state=random_state)
    weights, primal = rec.weights, rec.primal
    if features == "exact":
        support = np.flatnonzero(np.any(rec.beta != 0, axis=1))
        layer.support_ = support
        layer.support_patches_ = Z[support]
        layer.support_beta_ = rec.beta[support]
        layer.filter_coef_ = rec.filter_coef
    else:
        layer.filters_ = rec.filters if rec.filters is not None else \
            feats.G(rec.beta) @ rec.filter_coef
        layer.A_ = layer.filters_ @ weights
    layer.recovery_method_ = rec.method
    layer.rank_candidates_ = rec.rank_candidates
    r = weights.shape[0]
    layer.n_filters_ = r
    layer.linear_weights_ = weights.reshape(r, pooling.n_windows, K)
    layer.nuclear_norm_ = float(np.sum(scipy.linalg.svdvals(weights))) if r else 0.0
    layer.solver_gap_ = cert.gap
    layer.primal_objective_ = primal
    layer.dual_objective_ = cert.dual
    layer.dual_scale_ = cert.dual_scale
    layer.gap_ = Certificate(primal, cert.dual, cert.dual_scale).gap
    layer.n_iter_ = n_iter
    layer.solver_converged_ = solver_converged
    layer.converged_ = solver_converged and layer.gap_ <= tol
    layer.history_ = history
