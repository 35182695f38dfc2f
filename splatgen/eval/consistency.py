"""A model-free view-consistency score: warp neighbouring turntable views into each other with
their rendered depth and measure the colour error.

For a source view s and a target view t (pinhole cameras, OpenCV world-to-camera `viewmats`,
intrinsics K, pixel centres at (x + 0.5, y + 0.5) as in gsplat):

    X_world = camtoworld_s @ (D_s(p) K_s^-1 [p, 1])          p a source pixel, D_s its expected depth
    [q, 1] ~ K_t (viewmat_t @ X_world)                        q its position in the target, z_t its depth

A source pixel counts where both views see the surface there: alpha_s(p) > 0.5, q inside the
target image, alpha_t(q) > 0.5, and |D_t(q) - z_t| <= tolerance * z_t (not occluded in t). Its
error is the mean over channels of |c_s(p) - c_t(q)|, where c = premultiplied colour / alpha is
the surface colour regardless of background, sampled bilinearly. The score is the mean error over
counted pixels of each neighbouring pair (i, i + 1), both directions, averaged over pairs, in
[0, 1]. A consistent object scores close to 0 (interpolation and view-dependent colour remain);
views that disagree on what is where (a second face, a texture that jumps) score higher.

It is a photometric reprojection error in the sense of multi-view stereo / monocular depth work
(e.g. Godard et al. 2017, arXiv 1609.03677), applied to rendered views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from splatgen.eval.settings import DEPTH_TOLERANCE
from splatgen.scene.cameras import CameraBatch

COVERED_ALPHA = 0.5


@dataclass
class ConsistencyResult:
    error: float  # mean colour error over counted pixels and pairs, [0, 1]; NaN if nothing was counted
    coverage: float  # mean fraction of each source view's object pixels that were counted
    pair_errors: list[float]  # per neighbouring pair (i, i + 1), both directions averaged


def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:  # [H, W, 3]
    """Homogeneous pixel centres (x + 0.5, y + 0.5, 1)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)


def warp_coordinates(
    depth: torch.Tensor,  # [H, W] source expected depth
    K_source: torch.Tensor,  # [3, 3]
    viewmat_source: torch.Tensor,  # [4, 4]
    K_target: torch.Tensor,  # [3, 3]
    viewmat_target: torch.Tensor,  # [4, 4]
) -> tuple[torch.Tensor, torch.Tensor]:  # target pixel positions [H, W, 2], target camera depth [H, W]
    """Where each source pixel's surface point lands in the target view, and its depth there."""
    height, width = depth.shape
    rays = pixel_grid(height, width, depth.device, depth.dtype) @ torch.linalg.inv(K_source).T  # [H, W, 3], z = 1
    points_source = rays * depth[..., None]  # [H, W, 3] in the source camera
    relative = viewmat_target @ torch.linalg.inv(viewmat_source)  # [4, 4] source camera -> target camera
    points_target = points_source @ relative[:3, :3].T + relative[:3, 3]  # [H, W, 3]
    z = points_target[..., 2]
    projected = points_target @ K_target.T  # [H, W, 3]
    positions = projected[..., :2] / z.clamp_min(1e-8)[..., None]
    return positions, z


def _sample(image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:  # [H, W, D], [H, W, 2] -> [H, W, D]
    height, width = image.shape[:2]
    grid = torch.stack([2.0 * positions[..., 0] / width - 1.0, 2.0 * positions[..., 1] / height - 1.0], dim=-1)
    sampled = F.grid_sample(
        image.permute(2, 0, 1)[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled[0].permute(1, 2, 0)


def warp_error(
    colors: torch.Tensor,  # [2, H, W, 3] premultiplied: source, target
    alphas: torch.Tensor,  # [2, H, W, 1]
    depths: torch.Tensor,  # [2, H, W, 1] expected depth (alpha-normalised)
    cameras: CameraBatch,  # 2 cameras: source, target
    tolerance: float = DEPTH_TOLERANCE,
) -> tuple[torch.Tensor, torch.Tensor]:  # per-pixel error [H, W], counted mask [H, W]
    """Colour error of the source view warped into the target view (module docstring)."""
    positions, z_target = warp_coordinates(
        depths[0, ..., 0], cameras.Ks[0], cameras.viewmats[0], cameras.Ks[1], cameras.viewmats[1]
    )
    height, width = depths.shape[1:3]
    # premultiplied colour and depth are sampled, then divided by the sampled alpha: surface values
    target = _sample(torch.cat([colors[1], alphas[1], depths[1] * alphas[1]], dim=-1), positions)  # [H, W, 5]
    target_alpha, target_depth = target[..., 3], target[..., 4]
    inside = (
        (positions[..., 0] >= 0)
        & (positions[..., 0] <= width)
        & (positions[..., 1] >= 0)
        & (positions[..., 1] <= height)
    )
    counted = (
        (alphas[0, ..., 0] > COVERED_ALPHA)
        & inside
        & (z_target > 0)
        & (target_alpha > COVERED_ALPHA)
        & ((target_depth / target_alpha.clamp_min(1e-6) - z_target).abs() <= tolerance * z_target)
    )
    source_color = colors[0] / alphas[0].clamp_min(1e-6)
    target_color = target[..., :3] / target_alpha.clamp_min(1e-6)[..., None]
    error = (source_color - target_color).abs().mean(dim=-1)
    return torch.where(counted, error, torch.zeros_like(error)), counted


@torch.no_grad()
def view_consistency(
    colors: torch.Tensor,  # [F, H, W, 3] premultiplied
    alphas: torch.Tensor,  # [F, H, W, 1]
    depths: torch.Tensor,  # [F, H, W, 1] expected depth
    cameras: CameraBatch,  # F cameras
    tolerance: float = DEPTH_TOLERANCE,
) -> ConsistencyResult:
    """Mean warp error over neighbouring pairs (i, i + 1), i = 0 .. F - 2, both directions."""
    cameras = cameras.to(colors.device)
    pair_errors, coverages = [], []
    for index in range(colors.shape[0] - 1):
        errors, counts = [], []
        for source, target in ((index, index + 1), (index + 1, index)):
            pick = torch.tensor([source, target], device=colors.device)
            error, counted = warp_error(
                colors[pick], alphas[pick], depths[pick], cameras.select(pick.cpu()).to(colors.device), tolerance
            )
            errors.append(error.sum())
            counts.append(counted.sum())
            covered = (alphas[source, ..., 0] > COVERED_ALPHA).sum()
            coverages.append(float(counted.sum() / covered.clamp_min(1)))
        total = sum(counts)
        pair_errors.append(float(sum(errors) / total) if total > 0 else float("nan"))
    finite = [error for error in pair_errors if error == error]
    return ConsistencyResult(
        error=sum(finite) / len(finite) if finite else float("nan"),
        coverage=sum(coverages) / len(coverages) if coverages else 0.0,
        pair_errors=pair_errors,
    )
