"""dccnn._cuda built for the CPU: csrc/cuda compiled by the host compiler against
cuda_on_cpu.hpp (an emulation of the CUDA runtime and execution model) instead of the CUDA
toolkit, so that tests/test_cuda.py can run the kernels and their host orchestration where no
GPU is present. What C++ cannot parse is rewritten first (``translate``): each launch
``K<<<grid, block, shared, stream>>>(args)`` becomes a call, ``extern __shared__`` arrays
become the block's dynamic shared buffer, and the one PTX instruction (ex2.approx) becomes
exp2f. Anything else that only nvcc understands stops the build with its name."""

import importlib.util
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CUDA_SOURCES = ["csrc/cuda/pooled_kernel_blocks.cu", "csrc/cuda/block_reductions.cu",
                "csrc/cuda/held_blocks.cu"]
BINDINGS = "csrc/cuda/bindings.cpp"
HOST_SOURCES = ["csrc/dccnn/kernel_spec.cpp"]

_LAUNCH = re.compile(r"([A-Za-z_]\w*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?(\w+(?:\s+\w+)*?)\s+(\w+)\[\]\s*;")
_EX2 = re.compile(r'asm\("ex2\.approx\.ftz\.f32 %0, %1;"\s*:\s*"=f"\((\w+)\)\s*:\s*"f"\((\w+)\)\);')
_NVCC_ONLY = ("<<<", ">>>", "asm(", "asm (", "asm volatile", "extern __shared__")


def translate(text, name="source"):
    """The CUDA C++ `text` as C++ for cuda_on_cpu.hpp; ValueError naming what cannot run."""
    text = _LAUNCH.sub(
        lambda m: f'::cuda_on_cpu::launch("{m.group(1)}", {m.group(1)}, {m.group(2)})(', text)
    text = _EXTERN_SHARED.sub(
        lambda m: f"{m.group(1)}* {m.group(2)} = "
                  f"static_cast<{m.group(1)}*>(::cuda_on_cpu::extern_shared());", text)
    text = _EX2.sub(r"\1 = exp2f(\2);", text)
    for token in _NVCC_ONLY:
        if token in text:
            raise ValueError(f"{name}: {token!r} has no CPU translation (tests/cuda_on_cpu)")
    return text


def compiler():
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def build_module(out_dir, edits=(), name="_cuda"):
    """Compiles the emulated dccnn._cuda into out_dir as the extension module `name`; returns
    its path. RuntimeError with the compiler's messages when it fails. `edits`: (source, old,
    new) replacements made first, each `old` found exactly once in `source` (the tests plant
    defects with them to check that the emulation catches them). A process can load only one
    extension of a name: each build loaded beside another needs a name of its own."""
    import pybind11

    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++): set CXX")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {rel: (ROOT / rel).read_text() for rel in CUDA_SOURCES + [BINDINGS]}
    for rel, old, new in [*edits, (BINDINGS, "PYBIND11_MODULE(_cuda, ", f"PYBIND11_MODULE({name}, ")]:
        if texts[rel].count(old) != 1:
            raise ValueError(f"edit of {rel}: {old!r} does not occur exactly once")
        texts[rel] = texts[rel].replace(old, new)
    sources = []
    for rel, text in texts.items():
        src = ROOT / rel
        dst = out_dir / (src.stem + ".cpp")
        dst.write_text(f'#line 1 "{src}"\n' + translate(text, rel))
        sources.append(dst)
    sources += [ROOT / rel for rel in HOST_SOURCES]
    flags = ["-std=c++20", "-O2", "-march=native", "-g0", "-fPIC", "-pthread", "-fvisibility=hidden",
             "-Wno-unknown-pragmas", "-U_FORTIFY_SOURCE", f"-I{HERE / 'include'}", f"-I{ROOT / 'csrc'}",
             f"-I{ROOT / 'csrc' / 'cuda'}", f"-I{pybind11.get_include()}",
             f"-I{sysconfig.get_paths()['include']}"]
    jobs = []
    for src in sources:
        obj = out_dir / (src.stem + ".o")
        jobs.append((obj, subprocess.Popen([cxx, *flags, "-c", str(src), "-o", str(obj)],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True)))
    errors = [f"{obj.name}:\n{proc.communicate()[0]}" for obj, proc in jobs
              if proc.wait() != 0]
    if errors:
        raise RuntimeError("building dccnn._cuda for the CPU failed:\n" + "\n".join(errors))
    target = out_dir / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    link = subprocess.run([cxx, "-shared", "-pthread", *[str(o) for o, _ in jobs], "-o",
                           str(target)], capture_output=True, text=True)
    if link.returncode != 0:
        raise RuntimeError("linking dccnn._cuda for the CPU failed:\n" + link.stderr)
    return target


def load_module(path):
    """The extension at `path` as a module of dccnn (not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location("dccnn." + Path(path).name.split(".")[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
