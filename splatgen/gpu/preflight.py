"""Checks run before any model loads: the training device and the render backend.

- `resolve_device`: "auto" is CUDA when torch sees a GPU. When nvidia-smi shows a GPU but torch
  sees none (a CPU-only torch, or a CUDA build newer than the driver), "auto" and "cuda" stop with
  one line naming the driver and torch's CUDA version instead of training on the CPU.
- `check_render_backend`: gsplat (chosen, or "auto" on CUDA) needs its kernels; they are loaded (or
  built once, with a line saying so) here, so a missing toolkit is reported before the prior loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from splatgen.errors import SplatgenError
from splatgen.gpu.driver import DriverInfo, DriverQueryFailed, min_driver_for_cuda, query_driver, torch_build_for_driver
from splatgen.gpu.kernels import load_gsplat_kernels


class GpuUnavailable(SplatgenError):
    """A GPU was asked for (or is present) but torch cannot use it."""


def driver_mismatch(driver: DriverInfo, torch_version: str, torch_cuda: str | None) -> str:
    """One line: why torch sees no GPU although nvidia-smi shows one, and what to do."""
    gpu = f"nvidia-smi shows {driver.gpus[0]} (driver {driver.version})"
    build = torch_build_for_driver(driver.branch)
    reinstall = (
        f"reinstall torch with `bash scripts/setup.sh` (for this driver it picks "
        f"{'PyPI' if build.index_url is None else build.index_url}, CUDA {build.cuda})"
        if build is not None
        else "update the NVIDIA driver (no CUDA build of torch runs on it)"
    )
    if torch_cuda is None:
        return f"{gpu}, but torch {torch_version} is a CPU-only build; {reinstall}, or pass --device cpu"
    needed = min_driver_for_cuda(torch_cuda)
    if needed is not None and driver.branch < needed:
        return (
            f"{gpu}, but torch {torch_version} is built for CUDA {torch_cuda}, which needs driver >= {needed}: "
            f"update the driver, or {reinstall}; or pass --device cpu"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return (
        f"{gpu} and torch {torch_version} is built for CUDA {torch_cuda}, yet torch sees no GPU{hidden}: "
        f"check the driver with `nvidia-smi`, or pass --device cpu"
    )


def resolve_device(name: str, probe: Callable[[], DriverInfo | None] | None = None) -> torch.device:
    """'cpu' | 'cuda' | 'auto' -> a torch device; a GPU torch cannot use is an error, never a silent CPU run.

    `probe` reads the driver (default: nvidia-smi; it costs nothing where there is no nvidia-smi).
    """
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    try:
        driver = (probe or query_driver)()
    except DriverQueryFailed:
        driver = None  # nvidia-smi without a working GPU: nothing torch could have used
    if driver is not None:
        raise GpuUnavailable(driver_mismatch(driver, torch.__version__, torch.version.cuda))
    if name == "cuda":
        raise GpuUnavailable("--device cuda was asked for, but there is no NVIDIA GPU here (use --device cpu or auto)")
    return torch.device("cpu")


def check_render_backend(backend: str, device: torch.device, announce: Callable[[str], None] = print) -> None:
    """Refuse a backend that cannot run on `device`; load (or build once) gsplat's kernels when it will be used."""
    if backend == "gsplat" and device.type != "cuda":
        raise GpuUnavailable(
            f"--render-backend gsplat needs a CUDA GPU, and this run is on {device.type}; "
            "use --render-backend torch (or auto)"
        )
    if device.type == "cuda" and backend in ("gsplat", "auto"):
        load_gsplat_kernels(announce=announce)
