"""Property-based fuzzing of the public API (issue 8).

Every case calls one public entry point with randomly drawn shapes, dtypes, memory layouts,
parameters and values (NaN, inf, 1e300, 1e-300, zeros, constant images) and accepts exactly two
outcomes:

* a ValueError / TypeError / MemoryError whose message starts with ``"<argument>:"``, the name
  of one of the arguments of that entry point (the convention of ``dccnn._validation``);
* a finite result of the documented shape and dtype, which for the cheap routines is also
  compared with an independent reference.

Anything else (another exception type, an unnamed error, a non-finite or misshaped result, a
crash) fails. Each case is also run on a Fortran-ordered, strided, read-only or big-endian copy
of its arrays, which must give exactly what the C-contiguous native array gives.

The strategies are shared with ``bench/fuzz.py``, which runs them for >= 10,000 random cases;
here each property is bounded by ``max_examples`` so that the file runs in well under two
minutes, and derandomized: CI sees the same cases on every run (a new random case found by a CI
run once failed a landing, for a bug that was older than the change under test), while the
random exploration is bench/fuzz.py's job.
"""

import collections
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dccnn
from _refs import BACKENDS, ref_extract_patches, ref_pool_matrix

# Outcome counts per entry point ("ok" or the exception type); bench/fuzz.py reports them.
OUTCOMES = collections.Counter()

# ---------------------------------------------------------------------------------------------
# Arrays: dtypes, values and layouts
# ---------------------------------------------------------------------------------------------

# Accepted real dtypes, and dtypes that must be refused with a TypeError.
REAL_DTYPES = ["float32", "float64", ">f8", ">f4", "float16", "int8", "int64", "uint8", "bool"]
BAD_DTYPES = ["complex128", "object"]
SCALES = [1.0, 0.0, 1e-300, 1e-30, 1e30, 1e150, 1e300]
SPECIALS = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300, 0.0]


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _strided(a):
    """A non-contiguous view holding the values of ``a`` (every other element of a buffer)."""
    big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _big_endian(a):
    return a.astype(a.dtype.newbyteorder(">")) if a.dtype.kind in "iuf" else a


LAYOUTS = {
    "C": lambda a: a,
    "fortran": np.asfortranarray,
    "strided": _strided,
    "readonly": _readonly,
    "big-endian": _big_endian,
    "readonly-fortran-big-endian": lambda a: _readonly(np.asfortranarray(_big_endian(a))),
}


def _native(a):
    """The C-contiguous, native-byte-order array with the values and dtype of ``a``."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


@st.composite
def arrays(draw, shape):
    """An array of ``shape`` with a random dtype and values that stress the numerics."""
    dtype = np.dtype(draw(mostly(REAL_DTYPES, BAD_DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    fill = draw(st.sampled_from(["random", "random", "constant", "zeros"]))
    if fill == "random":
        values = rng.standard_normal(shape) * draw(st.sampled_from(SCALES))
    elif fill == "constant":
        values = np.full(shape, draw(st.sampled_from([1.0, -3.5, 1e300, 1e-300, 255.0])))
    else:
        values = np.zeros(shape)
    if values.size and draw(st.booleans()) and draw(st.booleans()):   # 1 case in 4
        values.flat[rng.integers(values.size)] = draw(st.sampled_from(SPECIALS))
    if dtype.kind in "iub":
        values = rng.integers(-3 if dtype.kind == "i" else 0, 4, size=shape)
    elif dtype.kind == "f":
        with np.errstate(over="ignore"):                          # 1e300 -> inf in float32
            values = values.astype(dtype)
    return values.astype(dtype)


def small_shape(ndims, max_side=5, min_side=0):
    """Sides in [min_side, max_side]; a zero side (an empty array) is rare."""
    nonzero = st.integers(max(min_side, 1), max_side)
    side = nonzero
    if min_side == 0:
        side = st.integers(0, 9).flatmap(lambda i: st.just(0) if i == 9 else nonzero)
    return st.lists(side, min_size=ndims, max_size=ndims).map(tuple)


# Arguments: mostly valid values (so that the calls reach the numerics), and in one case out
# of eight an invalid one of some kind.
def mostly(valid, invalid):
    # Hypothesis leans towards the simplest choice (0), so 0..6 are valid and 7 is invalid.
    return st.integers(0, 7).flatmap(
        lambda i: st.sampled_from(list(invalid if i == 7 else valid)))


# A side of an array: 1 to 5, rarely 0 (an empty array).
SIDE = mostly(range(1, 6), [0])


def ints(valid, invalid=(0, -1, 2**62, True, 2.0, None, "2")):
    return mostly(valid, invalid)


FLOATS_BAD = [np.nan, np.inf, -np.inf, -1.0, 0.0, "1", None, True, 1e300, 1e-300]
N_JOBS = mostly([None, 1, 2, -1], [0, 1.5, "2"])
# The sanitizer step of .ci/run fuzzes the compiled core only (DCCNN_FUZZ_BACKENDS=cpp).
BACKEND = st.sampled_from(os.environ.get("DCCNN_FUZZ_BACKENDS", ",".join(BACKENDS)).split(","))

# ---------------------------------------------------------------------------------------------
# Cases: one call of one entry point, with the checks its result must pass
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    entry: str                       # entry point, for the outcome counts
    call: object                     # call(**arrays) -> result
    arrays: dict                     # the array arguments (in their drawn dtype, C order)
    arg_names: frozenset             # names an error message may start with
    check: object                    # check(result, arrays) asserts shape, dtype, values
    layout: str = "C"
    kwargs: dict = field(default_factory=dict)   # the scalar arguments, for the report

    def __repr__(self):
        shapes = {k: (None if v is None else (v.shape, str(v.dtype))) for k, v in self.arrays.items()}
        return f"Case({self.entry}, arrays={shapes}, layout={self.layout}, kwargs={self.kwargs})"


def _result_dtype(*arrays):
    """float32 when every (non-None) input is float32 data, float64 otherwise (SPEC §8)."""
    given_arrays = [a for a in arrays if a is not None]
    return np.float32 if all(a.dtype.kind == "f" and a.dtype.itemsize == 4
                             for a in given_arrays) else np.float64


def _check_array(out, shape, dtype):
    assert isinstance(out, np.ndarray), type(out)
    assert out.shape == shape, (out.shape, shape)
    assert out.dtype == dtype, (out.dtype, dtype)
    assert np.isfinite(out).all(), "non-finite values in a result"


# Bugs found by this fuzzing and not fixed yet: name -> predicate(case, exception). A case
# that hits one is counted under its name instead of failing. The four bugs it found in
# fit_layer (zero filters, C = 1e300 and 1e-300, internal argument names) are fixed and
# covered by the regression tests at the end of this file.
KNOWN_BUGS = {}


def _call(case, arrays):
    """("ok", result), ("error", exception) for a documented error or ("known", bug name);
    anything else raises."""
    with warnings.catch_warnings():
        # A ConvergenceWarning of a short fit is a result, not a failure.
        warnings.simplefilter("ignore")
        try:
            return "ok", case.call(**arrays)
        except Exception as exc:
            known = [name for name, matches in KNOWN_BUGS.items() if matches(case, exc)]
            if known:
                return "known", known[0]
            if not isinstance(exc, (ValueError, TypeError, MemoryError)):
                raise
            named = str(exc).split(":", 1)[0].strip()
            assert named in case.arg_names, (
                f"{type(exc).__name__} does not name an argument of {case.entry} "
                f"{sorted(case.arg_names)}: {exc}")
            return "error", exc


def _same(a, b):
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    elif isinstance(a, dccnn.Pooling):
        assert a.out_shape == b.out_shape
        np.testing.assert_array_equal(a.position_window, b.position_window)
    elif isinstance(a, tuple):
        for x, y in zip(a, b):
            _same(x, y)
    else:
        raise AssertionError(f"no comparison for {type(a).__name__}")


def _without_budget(message):
    """The default memory budget follows MemAvailable, which moves between two calls."""
    return re.sub(r"budget of [0-9.]+ [KMGT]?i?B", "budget of <available>", message)


def run_case(case):
    """Run ``case`` natively and in its layout; return the outcome label (and count it)."""
    native = {k: None if v is None else _native(v) for k, v in case.arrays.items()}
    status, value = _call(case, native)
    if status == "ok":
        case.check(value, native)
    if case.layout != "C":
        other = {k: None if v is None else LAYOUTS[case.layout](v) for k, v in native.items()}
        status2, value2 = _call(case, other)
        assert status2 == status, f"layout {case.layout}: {status2} ({value2}) vs {status} ({value})"
        if status == "ok":
            _same(value, value2)
        elif status == "error":
            assert type(value2) is type(value)
            assert _without_budget(str(value2)) == _without_budget(str(value))
    label = {"ok": "ok", "known": f"known bug {value}"}.get(status, type(value).__name__)
    OUTCOMES[case.entry, label] += 1
    return label


LAYOUT = st.sampled_from(list(LAYOUTS))


def _overflow_free_normalize(Z, eps):
    """CCNN patch normalisation with every patch scaled to max |z| = 1 before the mean and the
    norm, so that values near the float64 limit (whose squares overflow) are handled exactly."""
    scale = np.abs(Z).max(axis=-1, keepdims=True)
    scale[scale == 0] = 1.0
    unit = Z / scale
    centred = unit - unit.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        denominator = norms + eps / scale
        return np.where(denominator > 0, centred / denominator, 0.0)    # constant patch, eps 0


@st.composite
def extract_patches_cases(draw):
    ndim = draw(mostly([4, 4, 3], [2, 5]))
    X = draw(arrays(draw(small_shape(ndim, max_side=6))))
    kw = dict(size=draw(ints([1, 2, 3, 4, 7])), stride=draw(ints([1, 1, 2, 3])),
              padding=draw(ints([0, 0, 1, 2], invalid=(-1, 2**62, 2**20, 1.0, None))),
              normalize=draw(st.booleans()),
              eps=draw(mostly([0.1, 0.1, 1e-300, 1e300], FLOATS_BAD)),
              n_jobs=draw(N_JOBS), backend=draw(BACKEND))

    def check(Z, arrays):
        X = arrays["X"]
        X4 = X if X.ndim == 4 else X[:, None]
        n, C, H, W = X4.shape
        s, stride, p = kw["size"], kw["stride"], kw["padding"]
        grid = ((H + 2 * p - s) // stride + 1, (W + 2 * p - s) // stride + 1)
        _check_array(Z, (n, grid[0] * grid[1], C * s * s), _result_dtype(X))
        ref = ref_extract_patches(X4, s, stride, p)
        if kw["normalize"]:
            ref = _overflow_free_normalize(ref, kw["eps"])
            tol = 1e-6 if Z.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(Z, ref, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(Z, ref.astype(Z.dtype))

    return Case("extract_patches", lambda X: dccnn.extract_patches(X, **kw), {"X": X},
                frozenset({"X", "size", "stride", "padding", "eps", "n_jobs", "max_memory"}),
                check, draw(LAYOUT), kw)


KERNEL_KWARGS = st.fixed_dictionaries({
    "kernel": mostly(["rbf", "linear", "polynomial", "inverse_polynomial"], ["gaussian", None]),
    "gamma": mostly([None, 0.5, 1e-300, 1e300, 3.4e38], [0.0, -1.0, np.nan, True, "1"]),
    "degree": mostly([1, 2, 3, 7, 10**6], [0, -1, 2.0]),
    "coef0": mostly([1.0, 0.0, -2.0, 1e300], [np.nan, None]),
    "constant": mostly([0.0, 0.5, 1e300], [-1.0, np.inf]),
})
KERNEL_ARGS = frozenset({"kernel", "gamma", "degree", "coef0", "constant", "n_jobs",
                         "max_memory"})


def _check_kernel_values(K, kw):
    """rbf values lie in [constant, 1 + constant]: a property every kernel value must have."""
    if kw["kernel"] == "rbf":
        c = kw["constant"]
        slack = 1e-6 * (1 + c)
        assert (K >= c - slack).all() and (K <= 1 + c + slack).all(), (K.min(), K.max())


@st.composite
def kernel_matrix_cases(draw):
    d = draw(SIDE)
    Z1 = draw(arrays((draw(SIDE), d)))
    Z2 = draw(mostly([None, "matching"], ["more columns", "1-d", "3-d"]))
    if Z2 is not None:
        shape = {"matching": (draw(SIDE), d), "more columns": (draw(SIDE), d + 1),
                 "1-d": (draw(SIDE),), "3-d": (2, 2, d)}[Z2]
        Z2 = draw(arrays(shape))
    kw = dict(draw(KERNEL_KWARGS), n_jobs=draw(N_JOBS), backend=draw(BACKEND))

    def check(K, arrays):
        Z1, Z2 = arrays["Z1"], arrays["Z2"]
        n2 = Z1.shape[0] if Z2 is None else Z2.shape[0]
        _check_array(K, (Z1.shape[0], n2), _result_dtype(Z1, Z2))
        _check_kernel_values(K, kw)

    return Case("kernel_matrix", lambda Z1, Z2: dccnn.kernel_matrix(Z1, Z2, **kw),
                {"Z1": Z1, "Z2": Z2}, frozenset({"Z1", "Z2"}) | KERNEL_ARGS, check,
                draw(LAYOUT), kw)


@st.composite
def pooled_kernel_blocks_cases(draw):
    grid = draw(small_shape(2, max_side=4, min_side=1))
    pool_size = draw(st.sampled_from([None, 1, 2]))
    if pool_size is not None and pool_size > min(grid):
        pool_size = None
    pooling = dccnn.make_pooling(grid, pool_size) if draw(st.integers(0, 9)) else "not a pooling"
    P = grid[0] * grid[1] + draw(mostly([0], [1]))        # sometimes inconsistent
    d = draw(SIDE)
    Z1 = draw(arrays((draw(SIDE), P, d)))
    Z2 = draw(mostly([None, "matching"], ["other P", "other d", "2-d"]))
    if Z2 is not None:
        shape = {"matching": (draw(SIDE), P, d), "other P": (1, P + 1, d),
                 "other d": (1, P, d + 1), "2-d": (P, d)}[Z2]
        Z2 = draw(arrays(shape))
    kw = dict(draw(KERNEL_KWARGS), n_jobs=draw(N_JOBS), backend=draw(BACKEND))

    def check(B, arrays):
        Z1, Z2 = arrays["Z1"], arrays["Z2"]
        n2 = Z1.shape[0] if Z2 is None else Z2.shape[0]
        Q = pooling.n_windows
        _check_array(B, (Z1.shape[0], n2, Q, Q), _result_dtype(Z1, Z2))
        _check_kernel_values(B, kw)

    return Case("pooled_kernel_blocks",
                lambda Z1, Z2: dccnn.pooled_kernel_blocks(Z1, Z2, pooling=pooling, **kw),
                {"Z1": Z1, "Z2": Z2}, frozenset({"Z1", "Z2", "pooling"}) | KERNEL_ARGS, check,
                draw(LAYOUT), dict(kw, pooling=getattr(pooling, "out_shape", pooling)))


@st.composite
def make_pooling_cases(draw):
    side = st.one_of(st.integers(1, 6), st.sampled_from([0, -1, 2**40, 2.0, True, None]))
    grid = draw(st.one_of(st.tuples(side, side), st.tuples(side, side),
                          st.lists(side, max_size=3).map(tuple),
                          st.sampled_from([5, "3x3", None, np.array([2, 2])])))
    size = draw(st.sampled_from([None, 1, 2, 3, 0, -1, 1.5, True, 2**40]))
    stride = draw(st.sampled_from([None, 1, 2, 0, "1"]))

    def check(pooling, arrays):
        Hp, Wp = (int(s) for s in grid)
        if size is None:
            assert pooling.out_shape == (Hp, Wp)
        else:
            step = size if stride is None else stride
            assert pooling.out_shape == ((Hp - size) // step + 1, (Wp - size) // step + 1)
        np.testing.assert_allclose(pooling.matrix(), ref_pool_matrix(grid, size, stride),
                                   rtol=1e-15)

    return Case("make_pooling", lambda: dccnn.make_pooling(grid, size, stride), {},
                frozenset({"grid_shape", "pool_size", "pool_stride", "max_memory"}), check,
                "C", dict(grid_shape=grid, size=size, stride=stride))


@st.composite
def zca_cases(draw):
    Z = draw(arrays(draw(small_shape(draw(st.sampled_from([2, 2, 3, 1])), max_side=6))))
    eps = draw(mostly([0.1, 0.1, 1e-300, 1e300], FLOATS_BAD))

    def call(Z):
        return dccnn.ZCAWhitening(eps=eps).fit_transform(Z)

    def check(out, arrays):
        Z = arrays["Z"]
        _check_array(out, Z.shape, _result_dtype(Z))

    return Case("ZCAWhitening", call, {"Z": Z}, frozenset({"Z", "eps"}), check, draw(LAYOUT),
                dict(eps=eps))


def layer_settings(draw, loss=None):
    """The keywords of one layer (``LayerSpec``'s fields), mostly valid."""
    features = draw(st.sampled_from(["nystroem", "exact"]))
    # the primal solver needs explicit features: with "exact" it is an invalid combination
    solver = draw(mostly(["dual", "primal", "admm"], ["primal"]) if features == "nystroem"
                  else mostly(["dual", "admm"], ["primal"]))
    return dict(
        patch_size=draw(ints([1, 2, 3], invalid=(0, 9, None))),
        # (the geometry and kernel options below are drawn valid: test_validation has their
        # bad values, and every invalid draw here costs a fit its valid paths)
        stride=draw(st.sampled_from([1, 1, 1, 2])),
        padding=draw(st.sampled_from([0, 0, 0, 1])),
        pool_size=draw(mostly([None, 1, 2], [9])),
        pool_stride=draw(st.sampled_from([None, None, 1, 2])),
        kernel=draw(st.sampled_from(["rbf", "rbf", "linear", "polynomial", "inverse_polynomial"])),
        gamma=draw(st.sampled_from([None, 0.5, 1e300, 1e-300])),
        degree=draw(st.sampled_from([2, 3])),
        coef0=draw(st.sampled_from([1.0, 0.0])),
        constant=draw(st.sampled_from([0.0, 0.0, 1.0])),
        max_filters=draw(mostly([None, None, 1, 2], [0])),
        normalize_patches=draw(st.booleans()),
        C=draw(mostly([1.0, 10.0, 1e-300, 1e300], [0.0, np.nan])),
        mu=draw(mostly([0.0, 0.1], [-1.0])),
        loss=loss or draw(st.sampled_from(["squared_hinge", "squared_hinge", "logistic",
                                           "squared"])),
        features=features, solver=solver,
        n_components=draw(st.sampled_from([None, 3, 8])) if features == "nystroem" else None,
        landmarks=draw(mostly(["uniform", "kmeans++"], ["kmeans"])),
        tol=1e-3, max_iter=draw(st.sampled_from([5, 20])),
    )


FIT_LAYER_ARGS = frozenset({"X", "y", "patch_size", "stride", "padding", "pool_size",
                            "pool_stride", "kernel", "gamma", "degree", "coef0", "constant",
                            "C", "mu", "loss", "features", "n_components", "landmarks",
                            "solver", "tol", "warm_start", "max_filters",
                            "max_iter", "random_state", "max_memory", "grid_shape"})


def draw_targets(draw, n):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y_kind = draw(mostly(["binary", "three", "2-d"], ["one-class", "nan"]))
    if y_kind == "2-d":
        return rng.choice([-1.0, 1.0], size=(n, 2))
    if y_kind == "nan":
        return np.full(n, np.nan)
    return np.arange(n) % {"binary": 2, "three": 3, "one-class": 1}[y_kind]


def n_outputs(y, loss):
    if y.ndim == 2:
        return y.shape[1]
    if loss == "squared":          # regression: 1-d y is one real target
        return 1
    n_classes = len(np.unique(y))  # one-vs-rest, two classes in one column
    return 1 if n_classes == 2 else n_classes


@st.composite
def fit_layer_cases(draw):
    n = draw(st.integers(2, 6))
    X = draw(arrays((n, draw(st.sampled_from([1, 2])), draw(st.integers(3, 5)),
                     draw(st.integers(3, 5)))))
    y = draw_targets(draw, n)
    kw = dict(layer_settings(draw), random_state=0, backend=draw(BACKEND), n_jobs=1,
              # small budgets put the exact back-end's blocks in batches of the upper
              # triangle, held in part or evaluated again on each pass (or refuse the fit
              # naming max_memory)
              max_memory=draw(st.sampled_from([None, None, 2**12, 2**14, 2**16])))
    # a warm start from a fit of the same images, of one image fewer (an error naming
    # warm_start) or with another number of Nystroem components (its A cannot start this fit)
    warm = draw(mostly([None, None, "same", "other n_components"], ["fewer images"]))

    def call(X):
        start = None
        if warm is not None:
            m = n - 1 if warm == "fewer images" else n
            other = {"n_components": 5} if warm == "other n_components" else {}
            start = dccnn.fit_layer(X[:m], y[:m], **{**kw, **other})
        layer = dccnn.fit_layer(X, y, warm_start=start, **kw)
        certificate = np.array([layer.primal_objective_, layer.dual_objective_, layer.gap_])
        return layer.alpha_, layer.decision_function(X), certificate

    def check(result, arrays):
        alpha, F, certificate = result
        K = n_outputs(y, kw["loss"])
        _check_array(alpha, (n, K), np.float64)
        _check_array(F, (n, K), np.float64)
        assert np.isfinite(certificate).all(), certificate

    return Case("fit_layer", call, {"X": X}, FIT_LAYER_ARGS, check, draw(LAYOUT),
                dict(kw, warm_start=warm))


@st.composite
def network_cases(draw):
    """One or two layers trained one after the other (``Network``): the second layer's
    images are the first's pooled filter outputs, of any number of filters and grid."""
    n = draw(st.integers(2, 8))
    X = draw(arrays((n, draw(st.sampled_from([1, 2])), draw(st.integers(3, 8)),
                     draw(st.integers(3, 8)))))
    y = draw_targets(draw, n)
    loss = draw(st.sampled_from(["squared_hinge", "hinge", "logistic", "squared"]))
    layers = [layer_settings(draw, loss) for _ in range(draw(st.integers(1, 2)))]
    backend = draw(BACKEND)

    def call(X):
        net = dccnn.Network(layers).fit(X, y, random_state=0, backend=backend, n_jobs=1)
        return net.decision_function(X), net.transform(X), np.array(net.n_filters_)

    def check(result, arrays):
        F, out, n_filters = result
        _check_array(F, (n, n_outputs(y, loss)), np.float64)
        assert out.ndim == 4 and out.shape[:2] == (n, n_filters[-1]), out.shape
        assert np.isfinite(out).all()

    names = FIT_LAYER_ARGS | {"layers"} | {f"layers[{k}]" for k in range(len(layers))}
    return Case("Network", call, {"X": X}, names, check, draw(LAYOUT),
                dict(layers=layers, backend=backend))


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=50)


@FAST
@given(extract_patches_cases())
def test_fuzz_extract_patches(case):
    run_case(case)


@FAST
@given(kernel_matrix_cases())
def test_fuzz_kernel_matrix(case):
    run_case(case)


@FAST
@given(pooled_kernel_blocks_cases())
def test_fuzz_pooled_kernel_blocks(case):
    run_case(case)


@FAST
@given(make_pooling_cases())
def test_fuzz_make_pooling(case):
    run_case(case)


@FAST
@given(zca_cases())
def test_fuzz_zca_whitening(case):
    run_case(case)


@SLOW
@given(fit_layer_cases())
def test_fuzz_fit_layer(case):
    run_case(case)


@SLOW
@given(network_cases())
def test_fuzz_network(case):
    run_case(case)


# ---------------------------------------------------------------------------------------------
# Regressions of the bugs this fuzzing found in fit_layer.


def test_a_layer_without_filters_predicts_zero():
    """A tiny C makes A = 0 optimal: the recovered network has no filter."""
    X = np.random.default_rng(0).standard_normal((4, 1, 4, 4))
    y = np.array([0, 1, 0, 1])
    layer = dccnn.fit_layer(X, y, patch_size=2, C=1e-9, tol=1e-3, random_state=0)
    assert layer.n_filters_ == 0 and layer.linear_weights_.shape == (0, 9, 1)
    np.testing.assert_array_equal(layer.decision_function(X), np.zeros((4, 1)))
    assert layer.transform(X).shape == (4, 0, 3, 3)
    # P(0) = C n K; the certified dual is within tol of it
    assert layer.primal_objective_ == pytest.approx(1e-9 * 4, rel=1e-12)
    assert layer.gap_ <= 1e-3


@pytest.mark.parametrize("C", [1e300, 1e-300])
@pytest.mark.parametrize("features", ["exact", "nystroem"])
def test_fit_layer_refuses_C_outside_double_precision(C, features):
    X = np.random.default_rng(0).standard_normal((4, 1, 3, 3))
    with pytest.raises(ValueError, match=r"^C:"):
        dccnn.fit_layer(X, np.array([0, 1, 0, 1]), patch_size=1, C=C, features=features)


@pytest.mark.parametrize("scale,patch_size,name", [(1e300, 1, "X"), (1.0, 9, "patch_size")])
def test_fit_layer_errors_name_its_own_arguments(scale, patch_size, name):
    X = np.random.default_rng(0).standard_normal((4, 1, 3, 3)) * scale
    with pytest.raises(ValueError, match=rf"^{name}:"):
        dccnn.fit_layer(X, np.array([0, 1, 0, 1]), patch_size=patch_size, tol=1e-3, max_iter=5)


@pytest.mark.parametrize("solver", ["dual", "primal", "factored", "admm"])
def test_nystroem_features_of_zero_images_are_empty_and_fit(solver):
    """All-zero images with the linear kernel: every Nystroem eigenvalue is dropped, m = 0.
    (Found by the fuzzer: the dual's G(beta) could not reshape an empty product, and the
    factored solver looped for ever at rank 0.) A = 0 is the only point, P(0) = C n K."""
    X = np.zeros((2, 1, 3, 3), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = dccnn.fit_layer(X, [0, 1], patch_size=1, kernel="linear", features="nystroem",
                                solver=solver, n_components=3, tol=1e-3, max_iter=5,
                                random_state=0)
    assert layer.n_filters_ == 0
    assert layer.primal_objective_ == pytest.approx(1.0 * 2 * 1, rel=1e-12)
    np.testing.assert_array_equal(layer.decision_function(X), np.zeros((2, 1)))
