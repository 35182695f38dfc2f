"""gsplat's CUDA kernels: one persistent build cache, a check that needs no compiler, and the build.

gsplat 1.5.3 from PyPI ships sources only; its first CUDA call JIT-compiles them with
`torch.utils.cpp_extension` (nvcc of torch's CUDA major, a host C++ compiler, Python headers,
ninja). splatgen builds them once (`bash scripts/setup.sh`, or `python -m splatgen.gpu build`)
into a cache that every later run, test session and CI job reuses:

    $TORCH_EXTENSIONS_DIR/gsplat_cuda/                when TORCH_EXTENSIONS_DIR is set
    ~/.cache/splatgen/torch_extensions/<py>_<torch>_<cuda>/gsplat_cuda/   otherwise

(one folder per Python / torch / CUDA combination, so an upgraded torch never loads kernels built
for another). Nothing here imports gsplat's backend unless torch sees a GPU: on a CPU machine
nothing is ever compiled.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from splatgen.errors import SplatgenError
from splatgen.gpu.toolkit import Toolkit, cache_root, find_toolkit, nvcc_pip_packages, use_toolkit

EXTENSION_NAME = "gsplat_cuda"
"""The name gsplat's `_backend.py` builds its extension under."""
TORCH_BACKEND_HINT = "or pass --render-backend torch (slower, no build needed)"


class KernelsUnavailable(SplatgenError):
    """gsplat's CUDA kernels are not built and cannot be (the message says what to install)."""


@dataclass(frozen=True)
class KernelStatus:
    cache_dir: Path  # the TORCH_EXTENSIONS_DIR used
    built: bool  # a build (or gsplat's own prebuilt module) is there
    built_now: bool = False  # this call compiled them
    seconds: float = 0.0  # time spent loading (and building)
    toolkit: Toolkit | None = None


def default_cache_dir() -> Path:
    """The persistent kernel cache for this Python, torch and CUDA (see the module docstring)."""
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    build = f"torch{torch.__version__.split('+')[0]}_cu{(torch.version.cuda or 'none').replace('.', '')}"
    return cache_root() / "torch_extensions" / f"{python}_{build}"


def use_kernel_cache() -> Path:
    """Set TORCH_EXTENSIONS_DIR to the persistent cache unless the user set it; returns it."""
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        os.environ["TORCH_EXTENSIONS_DIR"] = str(default_cache_dir())
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def kernels_built(cache_dir: Path | None = None) -> bool:
    """Whether the kernels are there (a gsplat wheel with binaries, or a finished JIT build): no compiler run."""
    if importlib.util.find_spec("gsplat") is not None and importlib.util.find_spec("gsplat.csrc") is not None:
        return True
    cache_dir = cache_dir if cache_dir is not None else use_kernel_cache()
    return (cache_dir / EXTENSION_NAME / f"{EXTENSION_NAME}.so").is_file()


def missing_build_tools() -> list[str]:
    """What a JIT build needs besides nvcc and is not there: ninja, a C++ compiler, Python headers."""
    missing = []
    if shutil.which("ninja") is None and importlib.util.find_spec("ninja") is None:
        missing.append("ninja (pip install ninja)")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        missing.append("a C++ compiler (apt install g++)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        missing.append(f"Python headers (apt install python{sys.version_info.major}.{sys.version_info.minor}-dev)")
    return missing


def _put_ninja_on_path() -> None:
    """The pip `ninja` package's binary, for torch's `which ninja` check."""
    if shutil.which("ninja") is None and importlib.util.find_spec("ninja") is not None:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def toolkit_or_error(cuda: str, built: bool) -> Toolkit:
    """The toolkit for torch's CUDA, or a `KernelsUnavailable` naming what to install."""
    toolkit, rejected = find_toolkit(cuda)
    if toolkit is not None:
        return toolkit
    major = cuda.split(".")[0]
    state = "are built, but gsplat loads them only with" if built else "are not built, and building them needs"
    passed_over = f" ({'; '.join(rejected)})" if rejected else ""
    raise KernelsUnavailable(
        f"gsplat's CUDA kernels {state} an nvcc of CUDA {major} (torch {torch.__version__} is built for CUDA {cuda}), "
        f"and none was found{passed_over}: run `bash scripts/setup.sh` (it installs "
        f"{' '.join(nvcc_pip_packages(cuda)[:1])} and builds the kernels), or set CUDA_HOME to a CUDA {major} toolkit, "
        f"{TORCH_BACKEND_HINT}"
    )


def load_gsplat_kernels(build: bool = True, announce=print) -> KernelStatus:
    """Make gsplat's CUDA extension importable, building it first if allowed; one-line errors.

    Needs torch to see a GPU (else `KernelsUnavailable` at once: nothing is compiled on a CPU machine).
    `announce(text)` is told before a build starts (it takes minutes).
    """
    if not torch.cuda.is_available():
        raise KernelsUnavailable("gsplat's kernels need a CUDA GPU and torch sees none; use --render-backend torch")
    cache_dir = use_kernel_cache()
    built = kernels_built(cache_dir)
    if importlib.util.find_spec("gsplat.csrc") is not None:
        return KernelStatus(cache_dir, True)
    toolkit = toolkit_or_error(torch.version.cuda, built)
    use_toolkit(toolkit)
    if not built:
        missing = missing_build_tools()
        if missing:
            raise KernelsUnavailable(
                f"gsplat's CUDA kernels are not built, and building them needs {', '.join(missing)}; "
                f"install it and run `python -m splatgen.gpu build`, {TORCH_BACKEND_HINT}"
            )
        if not build:
            raise KernelsUnavailable(
                f"gsplat's CUDA kernels are not built in {cache_dir}; run `python -m splatgen.gpu build` "
                f"(minutes, once), {TORCH_BACKEND_HINT}"
            )
        _put_ninja_on_path()
        os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
        announce(
            f"building gsplat's CUDA kernels once (nvcc {toolkit.version} from {toolkit.home}, "
            f"MAX_JOBS={os.environ['MAX_JOBS']}); they are cached in {cache_dir}"
        )
    started = time.perf_counter()
    try:
        from gsplat.cuda import _backend
    except Exception as error:  # torch reports compiler failures as RuntimeError/ImportError/OSError
        raise KernelsUnavailable(
            f"gsplat's CUDA kernels failed to {'load' if built else 'build'} ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]}); rerun `VERBOSE=1 python -m splatgen.gpu build` for the compiler "
            f"output, {TORCH_BACKEND_HINT}"
        ) from error
    if _backend._C is None:
        raise KernelsUnavailable(
            f"gsplat found no CUDA toolkit (CUDA_HOME={os.environ.get('CUDA_HOME')!r}) and disabled its kernels; "
            f"{TORCH_BACKEND_HINT}"
        )
    return KernelStatus(cache_dir, True, not built, time.perf_counter() - started, toolkit)
