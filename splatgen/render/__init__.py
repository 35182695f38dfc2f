"""Rendering: one rasterization contract (`base.py`), two backends, and turntable media.

    base.py            the contract: RenderOutput, Backend, backgrounds
    rasterizer.py      rasterize(gaussians, cameras, backgrounds, backend): picks a backend
    torch_backend.py   pure-PyTorch tiled rasterizer (CPU; follows gsplat 1.5.3's kernels)
    gsplat_backend.py  gsplat's CUDA rasterizer
    turntable.py       turntable video and view grid of an asset

A backend is a function `(ActivatedGaussians, CameraBatch, backgrounds [C, 3], depth=False) -> RenderOutput`
with gsplat-style `info` and, when asked, expected depth (see `base.py`); `rasterize` picks one.
"""

from splatgen.render.base import Backend, BackgroundKind, RenderOutput, make_backgrounds
from splatgen.render.rasterizer import rasterize, resolve_backend  # torch is imported inside, on first call

__all__ = ["Backend", "BackgroundKind", "RenderOutput", "make_backgrounds", "rasterize", "resolve_backend"]
