"""The rasterization contract shared by both backends: gsplat (CUDA) and a pure-PyTorch tiled rasterizer (CPU).

Both take activated Gaussians (`splatgen.scene.activate`) and a `CameraBatch`, and return the
same `RenderOutput`. `info` carries the keys gsplat's densification strategies read, with the
non-packed layout (per camera, per Gaussian):

    means2d   [C, N, 2]  projected centres in pixels; a non-leaf tensor whose .grad the
                         densifier reads after backward (call `retain_grad()` via the strategy)
    radii     [C, N, 2]  int32 screen-space radii in pixels (x, y); 0 = not visible
    depths    [C, N]     camera-space z
    conics    [C, N, 3]  inverse 2D covariance (a, b, c) of [[a, b], [b, c]]
    width, height, n_cameras   ints
    gaussian_ids           None (non-packed)

Images are [C, H, W, 3] in [0, 1], composited over a per-camera background colour [C, 3].
This is the one place that decides image layout: the prior converts to [B, 3, H, W] itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

Backend = Literal["auto", "gsplat", "torch"]
BackgroundKind = Literal["black", "white", "random"]


@dataclass
class RenderOutput:
    images: torch.Tensor  # [C, H, W, 3]
    alphas: torch.Tensor  # [C, H, W, 1]
    info: dict[str, Any]


def make_backgrounds(
    kind: BackgroundKind, num_cameras: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Per-camera background colours [C, 3]."""
    if kind == "black":
        return torch.zeros(num_cameras, 3, device=device)
    if kind == "white":
        return torch.ones(num_cameras, 3, device=device)
    if kind == "random":
        return torch.rand(num_cameras, 3, generator=generator).to(device)
    raise ValueError(f"unknown background {kind!r}: use black, white or random")
