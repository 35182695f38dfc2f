"""The CUDA backend: gsplat's fused rasterizer (gsplat 1.5.3, `gsplat.rasterization`).

Non-packed layout (`packed=False`) so `info` has the same [C, N, ...] shapes as the torch
backend's; classic (not antialiased) rasterization, SH colours of the Gaussians' active degree;
`render_mode="RGB+ED"` (expected depth as a fourth channel) only when depth is asked for. The first
call loads gsplat's kernels through `splatgen.gpu.kernels` (persistent cache, CUDA_HOME found).
"""

from __future__ import annotations

import torch
from gsplat import rasterization

from splatgen.gpu.kernels import load_gsplat_kernels
from splatgen.render.base import RenderOutput
from splatgen.scene.cameras import CameraBatch
from splatgen.scene.gaussians import ActivatedGaussians

_kernels_loaded = False


def _ensure_kernels() -> None:
    """Load gsplat's kernels from splatgen's persistent cache (built there once if missing) on first use."""
    global _kernels_loaded
    if not _kernels_loaded:
        load_gsplat_kernels()
        _kernels_loaded = True


def rasterize_gsplat(
    gaussians: ActivatedGaussians,
    cameras: CameraBatch,
    backgrounds: torch.Tensor,  # [C, 3]
    depth: bool = False,
) -> RenderOutput:
    """Render with `gsplat.rasterization` on CUDA: images [C, H, W, 3], alphas [C, H, W, 1], gsplat's info,
    and with `depth` the expected depth [C, H, W, 1]."""
    device = gaussians.means.device
    if device.type != "cuda":
        raise ValueError(f"the gsplat backend needs CUDA tensors, got {device}; use the torch backend on CPU")
    _ensure_kernels()
    images, alphas, info = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=gaussians.colors,
        viewmats=cameras.viewmats.to(device),
        Ks=cameras.Ks.to(device),
        width=cameras.width,
        height=cameras.height,
        sh_degree=gaussians.sh_degree,
        packed=False,
        backgrounds=backgrounds.to(device),
        render_mode="RGB+ED" if depth else "RGB",
    )
    if depth:
        images, depths = images[..., :3], images[..., 3:]  # [C, H, W, 3], [C, H, W, 1]
        return RenderOutput(images=images, alphas=alphas, info=info, depths=depths)
    return RenderOutput(images=images, alphas=alphas, info=info)
