"""The evaluation turntable: colour, alpha and expected depth of every frame of a fixed orbit.

The cameras are `splatgen.scene.cameras.evaluation_orbit` (the orbit `splatgen render` uses:
azimuth 0 = the front, elevation 15 deg, distance 2.75, vertical field of view 50 deg), frame i
at azimuth 360 i / F. Frames are rendered over black, so `colors` are premultiplied by alpha;
`over(background)` composites them.

Expected depth is gsplat's "ED" render mode: the alpha-weighted camera-space z of the Gaussians
along each pixel, divided by the pixel's alpha. It is rendered through the same `rasterize` call
as the colours (any backend), once per camera, with every Gaussian's colour set to its own
camera-space depth (degree-0 SH: colour = 0.5 + C0 * sh0, so sh0 = (z - 0.5) / C0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from splatgen.render import Backend, rasterize
from splatgen.scene.cameras import CameraBatch, evaluation_orbit
from splatgen.scene.gaussians import SH_C0, ActivatedGaussians

MIN_ALPHA = 1e-6  # below this a pixel has no depth (0)


@dataclass
class OrbitFrames:
    colors: torch.Tensor  # [F, H, W, 3] premultiplied by alpha (rendered over black)
    alphas: torch.Tensor  # [F, H, W, 1]
    depths: torch.Tensor | None  # [F, H, W, 1] expected camera-space depth, 0 where alpha ~ 0
    cameras: CameraBatch

    def over(self, background: float = 1.0) -> torch.Tensor:  # [F, H, W, 3] in [0, 1]
        return (self.colors + (1.0 - self.alphas) * background).clamp(0.0, 1.0)


def camera_depths(means: torch.Tensor, viewmat: torch.Tensor) -> torch.Tensor:  # [N, 3], [4, 4] -> [N]
    return means @ viewmat[2, :3] + viewmat[2, 3]


@torch.no_grad()
def expected_depth(
    gaussians: ActivatedGaussians,
    cameras: CameraBatch,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:  # depths [C, H, W, 1], alphas [C, H, W, 1]
    """Alpha-normalised expected depth per pixel, one camera at a time."""
    device = gaussians.means.device
    depths, alphas = [], []
    for index in range(len(cameras)):
        camera = cameras.select(slice(index, index + 1)).to(device)
        z = camera_depths(gaussians.means, camera.viewmats[0].to(gaussians.means.dtype))  # [N]
        sh0 = ((z - 0.5) / SH_C0)[:, None, None].expand(-1, 1, 3)  # [N, 1, 3]: colour = z
        as_depth = ActivatedGaussians(
            gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, sh0.contiguous(), 0
        )
        render = rasterize(as_depth, camera, torch.zeros(1, 3, device=device), backend)
        alpha = render.alphas  # [1, H, W, 1]
        weighted = render.images[..., :1]  # [1, H, W, 1] = sum_i w_i z_i
        depths.append(torch.where(alpha > MIN_ALPHA, weighted / alpha.clamp_min(MIN_ALPHA), torch.zeros_like(alpha)))
        alphas.append(alpha)
    return torch.cat(depths), torch.cat(alphas)


@torch.no_grad()
def render_orbit(
    gaussians: ActivatedGaussians,
    num_frames: int,
    resolution: int,
    backend: Backend = "auto",
    chunk_size: int = 4,
    with_depth: bool = True,
) -> OrbitFrames:
    """Render the evaluation turntable of `num_frames` square frames of `resolution` pixels."""
    device = gaussians.means.device
    cameras = evaluation_orbit(num_frames, resolution, resolution)
    colors, alphas = [], []
    for start in range(0, num_frames, chunk_size):
        chunk = cameras.select(slice(start, start + chunk_size)).to(device)
        render = rasterize(gaussians, chunk, torch.zeros(len(chunk), 3, device=device), backend)
        colors.append(render.images.clamp(0.0, 1.0))
        alphas.append(render.alphas)
    depths = expected_depth(gaussians, cameras, backend)[0] if with_depth else None
    return OrbitFrames(torch.cat(colors), torch.cat(alphas), depths, cameras)
