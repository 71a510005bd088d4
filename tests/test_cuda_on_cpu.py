"""The logic of the CUDA reduction kernels (csrc/cuda/block_reductions_kernels.cuh), checked on
the CPU where no GPU is present: tests/cuda_on_cpu compiles them as plain C++, runs each
thread block as host threads meeting at __syncthreads, and compares the results with explicit
loops (tests/cuda_on_cpu/check_block_reductions.cpp). On a GPU, tests/test_cuda.py checks the
same kernels, compiled by nvcc, against the CPU core."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILER = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


@pytest.mark.skipif(COMPILER is None, reason="needs a C++20 compiler (g++)")
def test_reduction_kernels_match_explicit_loops(tmp_path):
    exe = tmp_path / "check_block_reductions"
    build = subprocess.run(
        [COMPILER, "-std=c++20", "-O1", "-pthread", f"-I{ROOT / 'csrc'}",
         f"-I{ROOT / 'tests' / 'cuda_on_cpu'}",
         str(ROOT / "tests" / "cuda_on_cpu" / "check_block_reductions.cpp"), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("failures: 0"), run.stdout
