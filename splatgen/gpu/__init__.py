"""The GPU path: which torch build the driver runs, an nvcc for gsplat, its kernels, and preflight checks.

    driver.py     nvidia-smi -> DriverInfo; the driver -> torch CUDA build table (stdlib only:
                  setup.sh runs it before torch exists)
    toolkit.py    find an nvcc of torch's CUDA major, or lay out NVIDIA's pip nvcc as a CUDA_HOME
    kernels.py    gsplat's JIT kernels: the persistent cache, built-or-not without a compiler, the build
    preflight.py  resolve_device / check_render_backend: one-line errors before any model loads
    __main__.py   `python -m splatgen.gpu report | build | nvcc-packages CUDA`

Contract: `resolve_device(name)` returns a device torch can use or raises `GpuUnavailable`;
`check_render_backend(backend, device)` returns only when that backend will render on that device
(gsplat's kernels loaded) or raises a `SplatgenError` whose one line says what to install or to
pass `--render-backend torch`. Nothing here compiles anything unless torch sees a GPU.
"""

from splatgen.gpu.kernels import KernelsUnavailable, load_gsplat_kernels, use_kernel_cache
from splatgen.gpu.preflight import GpuUnavailable, check_render_backend, resolve_device

__all__ = [
    "GpuUnavailable",
    "KernelsUnavailable",
    "check_render_backend",
    "load_gsplat_kernels",
    "resolve_device",
    "use_kernel_cache",
]
