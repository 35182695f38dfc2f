"""Choosing a backend: `rasterize` renders with gsplat (CUDA) or the pure-PyTorch rasterizer (CPU).

The backends implement `base.py`'s contract; this module is the only one that imports them, and
imports gsplat's CUDA path only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from splatgen.render.base import Backend, RenderOutput
from splatgen.scene.cameras import CameraBatch
from splatgen.scene.gaussians import ActivatedGaussians

if TYPE_CHECKING:
    import torch


def resolve_backend(backend: Backend, device: torch.device | str) -> Literal["gsplat", "torch"]:
    """'auto' picks gsplat on CUDA tensors and the torch rasterizer otherwise."""
    import torch

    if backend == "auto":
        return "gsplat" if torch.device(device).type == "cuda" else "torch"
    if backend == "gsplat" and torch.device(device).type != "cuda":
        raise ValueError("render backend 'gsplat' needs CUDA tensors; use 'torch' or 'auto' on CPU")
    return backend


def rasterize(
    gaussians: ActivatedGaussians,
    cameras: CameraBatch,
    backgrounds: torch.Tensor,  # [C, 3]
    backend: Backend = "auto",
    depth: bool = False,
) -> RenderOutput:
    """Render `gaussians` from every camera in `cameras`; differentiable in the Gaussians.

    `depth=True` adds the expected depth (`RenderOutput.depths`).
    """
    chosen = resolve_backend(backend, gaussians.means.device)
    if chosen == "gsplat":
        from splatgen.render.gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(gaussians, cameras, backgrounds, depth=depth)
    from splatgen.render.torch_backend import rasterize_torch

    return rasterize_torch(gaussians, cameras, backgrounds, depth=depth)
