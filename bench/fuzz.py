"""Long fuzzing run of the public API (issue 8): the strategies and checks of
tests/test_fuzz.py, for many more cases than the test-suite runs.

    python bench/fuzz.py [--cases 10000] [--fit-layer-share 0.05] [--seed 0] [--entries ...]

``--cases`` is the total number of cases; ``fit_layer`` and ``Network`` (the slow entry
points) share ``--fit-layer-share`` of them and the other entry points the rest, equally. Prints, per
entry point, the number of cases and their outcomes: "ok" (a finite result of the right shape
and dtype, equal across memory layouts), the documented exception types, and "known bug ..."
for the bugs listed in test_fuzz.KNOWN_BUGS. Exits 1 at the first case that breaks a property
(hypothesis prints the shrunk example).
"""

import argparse
import collections
import os
import sys
import time

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import test_fuzz  # noqa: E402

ENTRY_POINTS = {
    "extract_patches": test_fuzz.extract_patches_cases,
    "kernel_matrix": test_fuzz.kernel_matrix_cases,
    "pooled_kernel_blocks": test_fuzz.pooled_kernel_blocks_cases,
    "make_pooling": test_fuzz.make_pooling_cases,
    "ZCAWhitening": test_fuzz.zca_cases,
    "fit_layer": test_fuzz.fit_layer_cases,
    "Network": test_fuzz.network_cases,
}
# The entry points that fit layers: they share --fit-layer-share of the cases.
SLOW = ("fit_layer", "Network")


def cases_per_entry(total, fit_layer_share):
    n_fit = max(len(SLOW), round(total * fit_layer_share))
    counts = {}
    for group, n_group in ((SLOW, n_fit),
                           ([name for name in ENTRY_POINTS if name not in SLOW], total - n_fit)):
        base, extra = divmod(n_group, len(group))
        counts.update({name: base + (i < extra) for i, name in enumerate(group)})
    return counts


def run_entry(strategy, n_cases, random_seed):
    @seed(random_seed)
    @settings(max_examples=n_cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy())
    def fuzz(case):
        test_fuzz.run_case(case)

    fuzz()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--fit-layer-share", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--entries", nargs="+", choices=list(ENTRY_POINTS),
                    default=list(ENTRY_POINTS), help="run only these entry points (their "
                    "share of --cases stays the same)")
    args = ap.parse_args(argv)

    counts = cases_per_entry(args.cases, args.fit_layer_share)
    t_start = time.perf_counter()
    for name in args.entries:
        strategy = ENTRY_POINTS[name]
        t0 = time.perf_counter()
        try:
            run_entry(strategy, counts[name], args.seed)
        finally:
            outcomes = {label: c for (entry, label), c in test_fuzz.OUTCOMES.items()
                        if entry == name}
            print(f"{name:22s} {sum(outcomes.values()):6d} cases in "
                  f"{time.perf_counter() - t0:6.1f} s: "
                  + ", ".join(f"{label} {c}" for label, c in sorted(outcomes.items())),
                  flush=True)
    totals = collections.Counter()
    for (_, label), c in test_fuzz.OUTCOMES.items():
        totals[label] += c
    print(f"{'total':22s} {sum(totals.values()):6d} cases in "
          f"{time.perf_counter() - t_start:6.1f} s: "
          + ", ".join(f"{label} {c}" for label, c in sorted(totals.items())))


if __name__ == "__main__":
    main()
