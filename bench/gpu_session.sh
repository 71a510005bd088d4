#!/usr/bin/env bash
# Everything issue 7 (and issue 2's many-core row) needs from a GPU machine, in one command
# that fits a 10-minute device call (bench/README.md says what each part measures):
#
#   bash bench/gpu_session.sh            # on the device machine, from the repository root
#   bash bench/gpu_session.sh tests fit  # the build, then only the steps named (tests, fit,
#                                        # blocks, kernel_matrix, sanitize)
#
# 1. builds dccnn._core and dccnn._cuda (sm_90) with CMake into build/gpu;
# 2. runs the GPU tests of tests/test_cuda.py against the CPU core (kernel blocks, the
#    reductions on the device, fits on device="cuda");
# 3. bench/cuda_fit.py: whole exact fits on the CPU core (2 threads, all cores) and on the
#    GPU, same process;
# 4. bench/cuda_kernel_blocks.py: block throughput against the GPU's peak;
# 5. bench/kernel_matrix.py on all the machine's cores (issue 2's 15x over numpy);
# 6. last, with what time is left: compute-sanitizer (memcheck, then racecheck on the shared
#    memory tiles) over a few small GPU tests of the blocks and their device reductions.
# The log goes to $OUT/gpu_session.log when OUT is set (the device tool's output folder).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
log=${OUT:-/tmp}/gpu_session.log
exec > >(tee "$log") 2>&1
export PYTHONUNBUFFERED=1
step() { printf '\n=== %s (%s s) ===\n' "$*" "$SECONDS"; }
wanted=" ${*:-tests fit blocks kernel_matrix sanitize} "
runs() { [[ $wanted == *" $1 "* ]]; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
nproc; lscpu | grep -m1 "Model name" || true
nvcc --version | tail -1; g++ --version | head -1; cmake --version | head -1
$PY -c "import numpy, scipy, numba, sklearn, pybind11; print('numpy', numpy.__version__, 'scipy', scipy.__version__, 'numba', numba.__version__, 'sklearn', sklearn.__version__)"

step "build dccnn._core and dccnn._cuda"
build_log=${OUT:-/tmp}/gpu_build.log
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDCCNN_USE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90-real -DPython_EXECUTABLE="$(command -v $PY)" \
  -Dpybind11_DIR="$($PY -c 'import pybind11; print(pybind11.get_cmake_dir())')" >"$build_log" \
  && cmake --build build/gpu --target _core _cuda -j "$(nproc)" >>"$build_log" \
  || { tail -30 "$build_log"; exit 1; }
pkg=$(mktemp -d)
cp -r python/dccnn "$pkg/"
rm -f "$pkg"/dccnn/_core*.so "$pkg"/dccnn/_cuda*.so
cp build/gpu/_c*.so "$pkg/dccnn/"
export PYTHONPATH="$pkg"
$PY -c "from dccnn import _cuda_backend as c; c.get_cuda(); print(c.device_info())" \
  || exit 1

runs tests && step "GPU tests (tests/test_cuda.py)" &&
timeout 240 $PY -m pytest -q -rf --maxfail=10 -p no:cacheprovider tests/test_cuda.py -m cuda \
  2>&1 | tail -40

runs fit && step "bench/cuda_fit.py: exact fits, CPU core against the GPU" &&
timeout 240 $PY bench/cuda_fit.py --n 300 1000 1500 --budget 1 --cpu-jobs 2 0 \
  --devices cpu cuda cuda-each-pass

runs blocks && step "bench/cuda_kernel_blocks.py" &&
timeout 90 $PY bench/cuda_kernel_blocks.py --json "${OUT:-/tmp}/cuda_kernel_blocks.json"

runs kernel_matrix && step "bench/kernel_matrix.py on $(nproc) cores (numpy's OpenBLAS kernels)" &&
timeout 90 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/kernel_matrix.py

sanitize() {  # tool, time limit, tests (-k expression)
  timeout "$2" compute-sanitizer --tool "$1" --error-exitcode 9 --print-limit 20 \
    $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda.py -m cuda -k "$3" 2>&1 | tail -25
  echo "compute-sanitizer --tool $1: exit ${PIPESTATUS[0]} (9: errors found, 124: out of time)"
}
if ! runs sanitize; then
  :
elif command -v compute-sanitizer >/dev/null; then
  step "compute-sanitizer: memcheck and racecheck on small GPU tests"
  sanitize memcheck 120 "(reduced_on_the_device and 3-nonsym) or (in_batches and nonsym) or several_tiles or (held and f64)"
  sanitize racecheck 90 "reduced_on_the_device and gpu-sym and (pool2-f32 or split-windows169-f64)"
else
  echo "compute-sanitizer not found"
fi
step "done"
