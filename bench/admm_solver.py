"""The ADMM solver (solver="admm") against the factored primal (the default classifier's
solver) on the default layer's Nystroem features of digits, solver time only, to gap 1e-3.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/admm_solver.py

Problems: the default (squared hinge, C = 0.3, 10 classes), C = 3, the logistic loss at
C = 1, one class against the rest, and the hinge loss (ADMM only: the primal solvers need a
smooth loss). Both run in this process on the same features, one after the other.
"""

import dataclasses
import time

import numpy as np

import dccnn
import dccnn.layer
from compare import load_dataset
from dccnn._threads import scipy_blas_single_thread
from dccnn.estimators import DEFAULT_LAYER
from dccnn.losses import get_loss
from dccnn.solvers.admm import admm
from dccnn.solvers.factored import factored_primal


def default_features():
    """psi and Y of the default layer on the digits training images."""
    captured = {}

    def capture(layer, feats, Z, Y, *args, **kwargs):
        captured.update(feats=feats, Y=Y)
        raise StopIteration

    Xtr, ytr, _, _ = load_dataset("digits")
    spec = DEFAULT_LAYER
    original = dccnn.layer._solve_and_recover
    dccnn.layer._solve_and_recover = capture
    try:
        dccnn.fit_layer(Xtr, ytr, **{k: v for k, v in dataclasses.asdict(spec).items()
                                     if k not in ("features", "solver")},
                        features="nystroem", solver="factored", random_state=0)
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


if __name__ == "__main__":
    main()
