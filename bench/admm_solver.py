"""The ADMM solver (solver="admm") against the factored primal (the default classifier's
solver) on the default layer's Nystroem features of digits, solver time only, to gap 1e-3.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/admm_solver.py

Problems: the default (squared hinge, C = 0.3, 10 classes), C = 3, the logistic loss at
C = 1, one class against the rest, and the hinge loss (ADMM only: the primal solvers need a
smooth loss). Both run in this process on the same features, one after the other.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/admm_solver.py --fits

Whole ``fit_layer`` runs (features, solve, recovery) of other layers, squared hinge, tol 1e-3,
ADMM then the factored primal: the linear kernel, C = 10 and C = 0.03, and the default layer
on digits-rot-noise.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/admm_solver.py --exact

The exact back-end (pooled rbf kernel blocks of the default layer's architecture, Q = 16, on
the first n digits training images): ADMM against the certified dual (the ALM), solver time
only, every loss, to gaps 1e-4 and 1e-6.

    python bench/admm_solver.py --recovery

Whole ``fit_layer`` runs with ADMM on the exact back-end (digits n = 60 and 150, every loss,
C = 0.1 / 1 / 10, tol 1e-4 / 1e-6): does the network recovered from the dual point alone
meet max(tol, solver gap)?
"""

import argparse
import dataclasses
import time
import warnings

import numpy as np

import dccnn
import dccnn.layer
from compare import load_dataset
from dccnn._threads import scipy_blas_single_thread
from dccnn.estimators import DEFAULT_LAYER
from dccnn.losses import get_loss
from dccnn.solvers.admm import admm
from dccnn.solvers.factored import factored_primal


def default_features(features="nystroem", n=None):
    """The default layer's features (Nystroem psi or exact blocks) and Y on the first n digits
    training images."""
    captured = {}

    def capture(layer, feats, Z, Y, *args, **kwargs):
        captured.update(feats=feats, Y=Y)
        raise StopIteration

    Xtr, ytr, _, _ = load_dataset("digits")
    Xtr, ytr = Xtr[:n], ytr[:n]
    spec = DEFAULT_LAYER
    original = dccnn.layer._solve_and_recover
    dccnn.layer._solve_and_recover = capture
    try:
        dccnn.fit_layer(Xtr, ytr, **{k: v for k, v in dataclasses.asdict(spec).items()
                                     if k not in ("features", "solver")},
                        features=features, solver="admm", random_state=0)
    except StopIteration:
        pass
    finally:
        dccnn.layer._solve_and_recover = original
    return captured["feats"], captured["Y"]


def main():
    feats, Y = default_features()
    problems = [("squared_hinge", 0.3, Y), ("squared_hinge", 3.0, Y), ("logistic", 1.0, Y),
                ("squared_hinge", 0.3, Y[:, :1]), ("hinge", 0.3, Y)]
    print(f"features {feats.psi.shape} (n, Q, m), tol 1e-3")
    print("| loss | C | K | factored s (iterations) | admm s (iterations) | ratio |")
    print("|---|---|---|---|---|---|")
    with scipy_blas_single_thread():
        for name, C, YY in problems:
            loss = get_loss(name, C)
            t = time.perf_counter()
            _, _, cert_a, it_a, _ = admm(feats, YY, loss, tol=1e-3, max_iter=2000, random_state=0)
            t_admm = time.perf_counter() - t
            if name == "hinge":
                print(f"| {name} | {C:g} | {YY.shape[1]} | - | {t_admm:.2f} ({it_a}) | - |",
                      flush=True)
                continue
            t = time.perf_counter()
            _, _, cert_f, it_f, _ = factored_primal(feats, YY, loss, tol=1e-3, max_iter=10000,
                                                    random_state=0)
            t_fact = time.perf_counter() - t
            assert cert_a.gap <= 1e-3 and cert_f.gap <= 1e-3
            print(f"| {name} | {C:g} | {YY.shape[1]} | {t_fact:.2f} ({it_f}) | "
                  f"{t_admm:.2f} ({it_a}) | {t_fact / t_admm:.2f}x |", flush=True)


def exact():
    from dccnn.solvers.dual import solve_dual
    problems = [(150, "squared_hinge", 0.3, 1e-4), (150, "squared_hinge", 1.0, 1e-6),
                (150, "hinge", 0.3, 1e-4), (150, "logistic", 1.0, 1e-4),
                (150, "squared", 1.0, 1e-4), (300, "squared_hinge", 0.3, 1e-4),
                (300, "squared_hinge", 1.0, 1e-6), (500, "squared_hinge", 0.3, 1e-4)]
    print("| n | loss | C | tol | ALM dual s (evaluations) | ADMM s (iterations) | ratio |")
    print("|---|---|---|---|---|---|---|")
    cache = {}
    with scipy_blas_single_thread():
        for n, name, C, tol in problems:
            if n not in cache:
                cache.clear()
                cache[n] = default_features("exact", n)
            feats, Y = cache[n]
            loss = get_loss(name, C)
            if name == "squared":  # regression on the one-hot targets
                Y = (Y > 0).astype(np.float64)
            t = time.perf_counter()
            _, _, cert_a, it_a, _ = admm(feats, Y, loss, tol=tol, max_iter=20000, random_state=0)
            t_admm = time.perf_counter() - t
            t = time.perf_counter()
            res = solve_dual(feats, Y, loss, tol=tol)
            t_alm = time.perf_counter() - t
            assert cert_a.gap <= tol and res.certificate.gap <= tol
            print(f"| {n} | {name} | {C:g} | {tol:g} | {t_alm:.2f} ({res.inner_epochs}) | "
                  f"{t_admm:.2f} ({it_a}) | {t_alm / t_admm:.2f}x |", flush=True)


def recovery():
    Xtr, ytr, _, _ = load_dataset("digits")
    layer = dict(patch_size=3, padding=1, pool_size=2, pool_stride=2, gamma="median",
                 features="exact", solver="admm", random_state=0, max_iter=5000)
    print("| n | loss | C | tol | s | iterations | solver gap | recovered gap | filters | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for n in (60, 150):
        for loss in ("squared_hinge", "hinge", "logistic", "squared"):
            y = ytr[:n] / 9.0 if loss == "squared" else ytr[:n]
            for C in (0.1, 1.0, 10.0):
                for tol in (1e-4, 1e-6):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        t = time.perf_counter()
                        fitted = dccnn.fit_layer(Xtr[:n], y, C=C, loss=loss, tol=tol, **layer)
                        seconds = time.perf_counter() - t
                    ok = fitted.gap_ <= max(tol, fitted.solver_gap_)
                    failed += not ok
                    print(f"| {n} | {loss} | {C:g} | {tol:g} | {seconds:.2f} | {fitted.n_iter_} | "
                          f"{fitted.solver_gap_:.1e} | {fitted.gap_:.1e} | {fitted.n_filters_} | "
                          f"{'yes' if ok else 'NO'} |", flush=True)
    print(f"\n{failed} recoveries above max(tol, solver gap)")


def fits():
    layer = dict(patch_size=3, padding=1, pool_size=2, pool_stride=2, features="nystroem",
                 tol=1e-3, random_state=0, max_iter=20000)
    cases = [("digits", "linear kernel, C = 0.3", dict(kernel="linear", C=0.3)),
             ("digits", "rbf, C = 10", dict(gamma="median", C=10.0, n_components=500)),
             ("digits", "rbf, C = 0.03", dict(gamma="median", C=0.03, n_components=500)),
             ("digits-rot-noise", "default layer", dict(gamma="median", C=0.3,
                                                        n_components=500))]
    print("| data | layer | factored primal s | ADMM s | ratio | test error (both) |")
    print("|---|---|---|---|---|---|")
    for data, name, kw in cases:
        Xtr, ytr, Xte, yte = load_dataset(data)
        seconds, errors = {}, {}
        for solver in ("admm", "factored"):
            t = time.perf_counter()
            fitted = dccnn.fit_layer(Xtr, ytr, solver=solver, **layer, **kw)
            seconds[solver] = time.perf_counter() - t
            errors[solver] = np.mean(fitted.predict(Xte) != yte)
            assert fitted.gap_ <= 1e-3
        print(f"| {data} | {name} | {seconds['factored']:.2f} | {seconds['admm']:.2f} | "
              f"{seconds['factored'] / seconds['admm']:.2f}x | {100 * errors['factored']:.1f}% / "
              f"{100 * errors['admm']:.1f}% |", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", action="store_true", help="whole fit_layer runs of other layers")
    ap.add_argument("--exact", action="store_true", help="the exact back-end, ADMM vs the ALM")
    ap.add_argument("--recovery", action="store_true",
                    help="recovered gaps of exact-back-end ADMM fits, every loss")
    args = ap.parse_args()
    if args.fits:
        fits()
    elif args.exact:
        exact()
    elif args.recovery:
        recovery()
    else:
        main()
