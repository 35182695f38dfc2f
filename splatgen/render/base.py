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
With `depth=True` a render also carries the expected depth [C, H, W, 1], gsplat's "ED" mode:
sum_i w_i z_i / max(sum_i w_i, 1e-10), with w_i the compositing weights and z_i camera-space z
(0 where nothing is hit); without it, `depths` is None and the colour-only path is unchanged.
This is the one place that decides image layout: the prior converts to [B, 3, H, W] itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch


Backend = Literal["auto", "gsplat", "torch"]
BackgroundKind = Literal["black", "white", "random"]


@dataclass
class RenderOutput:
    images: torch.Tensor  # [C, H, W, 3]
    alphas: torch.Tensor  # [C, H, W, 1]
    info: dict[str, Any]
    depths: torch.Tensor | None = None  # [C, H, W, 1] expected camera-space z; only with depth=True


def make_backgrounds(
    kind: BackgroundKind, num_cameras: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Per-camera background colours [C, 3] on `device` (random ones drawn on the generator's device)."""
    import torch

    if kind == "black":
        return torch.zeros(num_cameras, 3, device=device)
    if kind == "white":
        return torch.ones(num_cameras, 3, device=device)
    if kind == "random":
        draw_on = generator.device if generator is not None else device
        return torch.rand(num_cameras, 3, generator=generator, device=draw_on).to(device)
    raise ValueError(f"unknown background {kind!r}: use black, white or random")
