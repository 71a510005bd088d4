"""The CPU emulation of CUDA (tests/cuda_on_cpu) that lets tests/test_cuda.py run dccnn's CUDA
sources where no GPU is present: the reduction kernels alone against explicit loops, and
defects planted in the sources, each of which the emulation must expose (a test of the tests:
were the emulation too lenient, the agreement tests could not fail)."""

import subprocess

import numpy as np
import pytest

import dccnn
from dccnn import _cuda_backend
from cuda_on_cpu import build as cuda_on_cpu

COMPILER = cuda_on_cpu.compiler()
needs_compiler = pytest.mark.skipif(COMPILER is None, reason="needs a C++20 compiler (g++)")
TILES = "csrc/cuda/pooled_kernel_blocks.cu"


@needs_compiler
def test_reduction_kernels_match_explicit_loops(tmp_path):
    exe = tmp_path / "check_block_reductions"
    here = cuda_on_cpu.HERE
    build = subprocess.run(
        [COMPILER, "-std=c++20", "-O1", "-U_FORTIFY_SOURCE", f"-I{cuda_on_cpu.ROOT / 'csrc'}",
         f"-I{here}", str(here / "check_block_reductions.cpp"), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("failures: 0"), run.stdout


# (defect, replaced text, replacement, what the emulation must show: "wrong" blocks or the
# error it raises)
DEFECTS = [
    ("a tile reads its operands before their asynchronous copies land",
     "      } else {\n        __pipeline_wait_prior(0);\n      }\n", "      }\n", "wrong"),
    ("the pooled sums overwrite an operand stage other threads still read",
     "      __syncthreads();  // every warp is done with the operand stage that is overwritten "
     "next\n", "", "wrong"),
    ("a batch is copied to the host before its kernels have run",
     "    DCCNN_CUDA(cudaStreamWaitEvent(copy.s, computed[slot].e, 0));\n", "", "wrong"),
    ("a barrier that only some threads of a block reach",
     "    __syncthreads();  // the previous tile has been written out\n",
     "    if (threadIdx.y == 0) __syncthreads();\n", "divergent __syncthreads"),
]


@needs_compiler
@pytest.mark.parametrize("defect,old,new,shows", DEFECTS, ids=["wait", "barrier", "event",
                                                               "divergence"])
def test_the_emulation_exposes_planted_defects(request, tmp_path, monkeypatch, defect, old, new,
                                               shows):
    pytest.importorskip("pybind11", reason="building dccnn._cuda for the CPU needs pybind11")
    name = "_cuda_with_defect_" + request.node.callspec.id
    module = cuda_on_cpu.load_module(cuda_on_cpu.build_module(tmp_path, [(TILES, old, new)], name))
    monkeypatch.setattr(_cuda_backend, "_module", module)
    monkeypatch.setattr(_cuda_backend, "_tried", True)
    rng = np.random.default_rng(5)
    Z = (rng.standard_normal((6, 36, 9)) / 3).astype(np.float32)
    pooling = dccnn.make_pooling((6, 6), 2)  # 2x2 windows, symmetric: the transpose pass runs
    want = dccnn.pooled_kernel_blocks(Z, pooling=pooling)
    if shows == "wrong":
        got = dccnn.pooled_kernel_blocks(Z, pooling=pooling, device="cuda")
        assert not np.allclose(got, want, rtol=1e-3, atol=1e-3), defect
    else:
        with pytest.raises(RuntimeError, match=shows):
            dccnn.pooled_kernel_blocks(Z, pooling=pooling, device="cuda")
