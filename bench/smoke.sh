#!/usr/bin/env bash
# Smoke runs of the end-to-end benchmarks (issue 6): tiny sizes, so that bench/compare.py,
# bench/scaling.py, bench/solver_scaling.py, bench/exact_vs_factorise.py,
# bench/nystroem_landmarks.py and bench/cuda_fit.py cannot rot. Called from .ci/run; fails on
# any error. Results and the figure go to a temporary directory, never over the committed ones
# in bench/results, bench/figures.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# numpy/scikit-learn timings are taken with OpenBLAS choosing its own kernels
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$PWD/../python${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$@"; }
run compare.py --small --threads 1 --results-dir "$out"
run scaling.py --small --results-dir "$out" --figure "$out/scaling.png"
# (outputs are saved before grep reads them: "cmd | grep -q" under pipefail fails whenever grep
# exits before cmd has written its last line)
table=$(run solver_scaling.py --n 100 --tol 1e-3 --max-iter 3000)
grep -q "factored primal" <<<"$table"
table=$(run exact_vs_factorise.py --n 20 --tol 1e-2)
grep -q "factorise + factored primal" <<<"$table" && grep -q "exact blocks + ADMM" <<<"$table"
table=$(run nystroem_landmarks.py --m 10 --seeds 1 --n-train 60)
grep -q "| 10 | kmeans++ |" <<<"$table"
table=$(run cuda_fit.py --n 60 --budget 1 --devices cpu cuda)
grep -q "| 60 | 1 | cpu | .* | admm |" <<<"$table"
test -s "$out/compare_small.json" && test -s "$out/scaling_small.json" && test -s "$out/scaling.png"
echo "bench smoke: ok"
