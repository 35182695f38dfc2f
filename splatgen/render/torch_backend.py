"""A pure-PyTorch tiled rasterizer for 3D Gaussians: gsplat 1.5.3's math, differentiable by autograd, runs on CPU.

It mirrors gsplat's CUDA pipeline (`rasterization(..., packed=False, render_mode="RGB")`, or
`render_mode="RGB+ED"` with `depth=True`):

1. Projection (EWA splatting, Zwicker et al. 2001; 3DGS, Kerbl et al. 2023), as in gsplat's
   `projection_ewa_3dgs_fused_fwd_kernel`: world -> camera, the perspective Jacobian with the
   mean clamped to 1.3x the field of view, a 2D covariance blurred by `eps2d` = 0.3 px,
   near/far culling, and opacity-aware screen radii
   ceil(min(3.33, sqrt(2 ln(255 opacity))) * sqrt(covar2d_ii)) (gsplat; Radl et al. 2024, B.2).
2. Colours from SH coefficients of degree 0..3 along the direction from the camera centre,
   then clamp_min(colour + 0.5, 0) (gsplat's `rasterization`).
3. Tile binning (gsplat's `isect_tiles`): each Gaussian goes to every 16x16 tile its radius
   box touches, sorted front to back by camera-space depth.
4. Compositing (gsplat's `rasterize_to_pixels_3dgs_fwd_kernel`): at pixel centres (x + 0.5,
   y + 0.5), alpha = min(0.999, opacity * exp(-0.5 * mahalanobis^2)), Gaussians with
   alpha < 1/255 skipped, front-to-back blending that stops (exclusively) once the
   transmittance would fall to 1e-4 or below, then `colour + T * background`.
5. Expected depth (only when asked): camera-space z blended as a fourth colour channel with the
   same weights w_i, then divided by the pixel's alpha: sum_i w_i z_i / max(sum_i w_i, 1e-10),
   gsplat's "ED" (`rasterization`, gsplat 1.5.3); 0 where nothing is hit.

Tiles are composited in chunks, each padded to its longest Gaussian list, with cumprod for the
transmittance. The 1/255 skip, the 0.999 clamp and the early stop are the same discrete
decisions gsplat takes, so autograd gives gsplat's gradients (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci, _spherical_harmonics

from splatgen.render.base import RenderOutput
from splatgen.scene.cameras import CameraBatch
from splatgen.scene.gaussians import ActivatedGaussians

TILE_SIZE = 16
EPS2D = 0.3  # px^2 added to the 2D covariance's diagonal (gsplat's default `eps2d`)
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD: fainter contributions are skipped
MAX_ALPHA = 0.999  # gsplat clamps every per-pixel alpha to this
TRANSMITTANCE_STOP = 1e-4  # a pixel is done once its transmittance would drop to this or below
MAX_EXTENT_SIGMAS = 3.33  # radius cap, in standard deviations
CHUNK_PAIRS = 2**21  # pixel-Gaussian pairs composited at once (padded), bounds one chunk's memory
MIN_FILL = 0.75  # a chunk's shortest list is at least this fraction of its longest ...
MIN_SPLIT_PAIRS = 2**14  # ... unless padding costs fewer pairs than this (each chunk has a fixed overhead)
RETAINED_PAIRS = 2**24  # above this many pairs per render, chunks are recomputed in backward


@dataclass
class Projection:
    """Screen-space Gaussians per camera, gsplat's non-packed layout; valid only where radii > 0."""

    means2d: torch.Tensor  # [C, N, 2] pixels
    conics: torch.Tensor  # [C, N, 3] inverse 2D covariance (a, b, c)
    depths: torch.Tensor  # [C, N] camera-space z
    radii: torch.Tensor  # [C, N, 2] int32, 0 = culled


def world_to_camera(
    means: torch.Tensor,  # [N, 3]
    covars: torch.Tensor,  # [N, 3, 3]
    viewmats: torch.Tensor,  # [C, 4, 4]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means [C, N, 3] and covariances R Sigma R^T [C, N, 3, 3] in each camera's frame."""
    rotations = viewmats[:, :3, :3]  # [C, 3, 3]
    translations = viewmats[:, :3, 3]  # [C, 3]
    means_cam = torch.einsum("cij,nj->cni", rotations, means) + translations[:, None, :]
    covars_cam = torch.einsum("cij,njk,clk->cnil", rotations, covars, rotations)
    return means_cam, covars_cam


def perspective_projection(
    means_cam: torch.Tensor,  # [C, N, 3], z > 0
    covars_cam: torch.Tensor,  # [C, N, 3, 3]
    Ks: torch.Tensor,  # [C, 3, 3]
    width: int,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel means [C, N, 2] and the EWA 2D covariance J Sigma J^T [C, N, 2, 2] (gsplat's `persp_proj`).

    The Jacobian is taken at the mean clamped to 1.3x the image's half-extent, as gsplat and
    the 3DGS reference do, so Gaussians far outside the view do not blow up.
    """
    x, y, z = means_cam.unbind(-1)  # [C, N] each
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    tan_half_fov_x = 0.5 * width / fx
    tan_half_fov_y = 0.5 * height / fy
    clamped_x = z * torch.clamp(
        x / z, min=-(cx / fx + 0.3 * tan_half_fov_x), max=(width - cx) / fx + 0.3 * tan_half_fov_x
    )
    clamped_y = z * torch.clamp(
        y / z, min=-(cy / fy + 0.3 * tan_half_fov_y), max=(height - cy) / fy + 0.3 * tan_half_fov_y
    )
    zeros = torch.zeros_like(z)
    jacobian = torch.stack(
        [fx / z, zeros, -fx * clamped_x / z**2, zeros, fy / z, -fy * clamped_y / z**2], dim=-1
    ).reshape(*z.shape, 2, 3)  # [C, N, 2, 3]
    covars2d = jacobian @ covars_cam @ jacobian.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [C, N, 2]
    return means2d, covars2d


@torch.no_grad()
def screen_radii(
    means2d: torch.Tensor,  # [C, N, 2]
    covars2d: torch.Tensor,  # [C, N, 2, 2], blurred
    opacities: torch.Tensor | None,  # [N]
    valid: torch.Tensor,  # [C, N] bool: depth in range and positive determinant
    width: int,
    height: int,
) -> torch.Tensor:
    """Integer radii [C, N, 2] of the axis-aligned box gsplat bins by; 0 for culled Gaussians.

    With opacities, the box shrinks to where alpha can reach 1/255 (gsplat's opacity-aware
    bound, Radl et al. 2024 B.2) and Gaussians fainter than 1/255 are culled; without, it is
    3.33 sigma (gsplat's `fully_fused_projection` called without opacities).
    """
    extent = torch.full_like(means2d[..., 0], MAX_EXTENT_SIGMAS)  # [C, N]
    if opacities is not None:
        bright = (opacities >= ALPHA_THRESHOLD).expand_as(valid)
        valid = valid & bright
        sigmas_to_threshold = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))  # [N]
        extent = torch.minimum(extent, sigmas_to_threshold.expand_as(extent))
    variances = torch.diagonal(covars2d, dim1=-2, dim2=-1).clamp_min(0.0)  # [C, N, 2]
    radii = torch.ceil(extent[..., None] * torch.sqrt(variances))  # [C, N, 2]
    not_tiny = (radii > 0).any(dim=-1)
    inside = (
        (means2d[..., 0] + radii[..., 0] > 0)
        & (means2d[..., 0] - radii[..., 0] < width)
        & (means2d[..., 1] + radii[..., 1] > 0)
        & (means2d[..., 1] - radii[..., 1] < height)
    )
    keep = valid & not_tiny & inside
    return torch.where(keep[..., None], radii, torch.zeros_like(radii)).to(torch.int32)


def project_gaussians(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] wxyz
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor | None,  # [N]
    viewmats: torch.Tensor,  # [C, 4, 4]
    Ks: torch.Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
) -> Projection:
    """gsplat's `fully_fused_projection(..., packed=False)` in PyTorch, differentiable.

    Unlike gsplat, whose outputs for culled Gaussians are uninitialised memory, every entry
    here is finite (culled ones are projected with depth 1), so their zero gradients stay zero.
    """
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)  # [N, 3, 3]
    means_cam, covars_cam = world_to_camera(means, covars, viewmats)
    depths = means_cam[..., 2]  # [C, N]
    in_depth_range = (depths >= near_plane) & (depths <= far_plane)
    safe_depths = torch.where(in_depth_range, depths, torch.ones_like(depths))
    means_cam_safe = torch.cat([means_cam[..., :2], safe_depths[..., None]], dim=-1)
    means2d, covars2d = perspective_projection(means_cam_safe, covars_cam, Ks, width, height)
    covars2d = covars2d + eps2d * torch.eye(2, dtype=covars2d.dtype, device=covars2d.device)
    det = covars2d[..., 0, 0] * covars2d[..., 1, 1] - covars2d[..., 0, 1] * covars2d[..., 1, 0]  # [C, N]
    positive = det > 0
    safe_det = torch.where(positive, det, torch.ones_like(det))
    off_diagonal = 0.5 * (covars2d[..., 0, 1] + covars2d[..., 1, 0])
    conics = (
        torch.stack([covars2d[..., 1, 1], -off_diagonal, covars2d[..., 0, 0]], dim=-1) / safe_det[..., None]
    )  # [C, N, 3]
    radii = screen_radii(means2d.detach(), covars2d.detach(), opacities, in_depth_range & positive, width, height)
    return Projection(means2d=means2d, conics=conics, depths=depths, radii=radii)


def view_dependent_colors(
    sh_coeffs: torch.Tensor,  # [N, K, 3]
    sh_degree: int,
    means: torch.Tensor,  # [N, 3]
    viewmats: torch.Tensor,  # [C, 4, 4]
) -> torch.Tensor:
    """RGB [C, N, 3] from SH along camera-centre -> Gaussian, then clamp_min(rgb + 0.5, 0) (gsplat)."""
    camera_centres = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
    directions = means[None, :, :] - camera_centres[:, None, :]  # [C, N, 3]
    coeffs = sh_coeffs[None].expand(viewmats.shape[0], *sh_coeffs.shape)  # [C, N, K, 3]
    return torch.clamp_min(_spherical_harmonics(sh_degree, directions, coeffs) + 0.5, 0.0)


@dataclass
class TileBins:
    """Gaussian lists per (camera, tile), front to back: gsplat's isect ids in flat form."""

    gaussian_ids: torch.Tensor  # [I] long, index into the flattened [C * N] Gaussians, grouped by tile
    tile_starts: torch.Tensor  # [C * T] long, where each tile's list begins in `gaussian_ids`
    tile_counts: torch.Tensor  # [C * T] long
    tiles_x: int
    tiles_y: int


@torch.no_grad()
def bin_gaussians_to_tiles(
    means2d: torch.Tensor,  # [C, N, 2]
    radii: torch.Tensor,  # [C, N, 2]
    depths: torch.Tensor,  # [C, N]
    width: int,
    height: int,
) -> TileBins:
    """Every (camera, tile, Gaussian) overlap, depth-sorted within a tile (gsplat's `isect_tiles`).

    A Gaussian covers tiles floor((m - r) / 16) .. ceil((m + r) / 16) - 1 on each axis, clamped
    to the image's tiles; ties in depth keep Gaussian order, like gsplat's stable radix sort.
    """
    num_cameras, num_gaussians = depths.shape
    tiles_x = -(-width // TILE_SIZE)
    tiles_y = -(-height // TILE_SIZE)
    tile_limits = torch.tensor([tiles_x, tiles_y], device=means2d.device)
    tile_means = means2d / TILE_SIZE  # [C, N, 2]
    tile_radii = radii.to(means2d.dtype) / TILE_SIZE
    first_tile = torch.floor(tile_means - tile_radii).long().clamp(min=torch.zeros_like(tile_limits), max=tile_limits)
    end_tile = torch.ceil(tile_means + tile_radii).long().clamp(min=torch.zeros_like(tile_limits), max=tile_limits)
    span = end_tile - first_tile  # [C, N, 2]
    visible = (radii > 0).all(dim=-1)  # [C, N]
    counts = span[..., 0] * span[..., 1] * visible  # [C, N]

    depth_order = torch.argsort(torch.where(visible, depths, torch.inf), dim=1, stable=True)  # [C, N]
    camera_offsets = torch.arange(num_cameras, device=depths.device)[:, None] * num_gaussians
    sorted_ids = (depth_order + camera_offsets).reshape(-1)  # [C * N] flat ids, front to back per camera
    sorted_counts = counts.reshape(-1)[sorted_ids]
    overlap_gaussians = torch.repeat_interleave(sorted_ids, sorted_counts)  # [I]
    list_starts = torch.cumsum(sorted_counts, dim=0) - sorted_counts
    within = torch.arange(overlap_gaussians.numel(), device=depths.device) - torch.repeat_interleave(
        list_starts, sorted_counts
    )
    span_x = span[..., 0].reshape(-1)[overlap_gaussians]
    tile_col = first_tile[..., 0].reshape(-1)[overlap_gaussians] + within % span_x.clamp_min(1)
    tile_row = first_tile[..., 1].reshape(-1)[overlap_gaussians] + within // span_x.clamp_min(1)
    camera = overlap_gaussians // num_gaussians
    tile_keys = camera * (tiles_x * tiles_y) + tile_row * tiles_x + tile_col  # [I]
    by_tile = torch.argsort(tile_keys, stable=True)
    tile_counts = torch.bincount(tile_keys, minlength=num_cameras * tiles_x * tiles_y)
    return TileBins(
        gaussian_ids=overlap_gaussians[by_tile],
        tile_starts=torch.cumsum(tile_counts, dim=0) - tile_counts,
        tile_counts=tile_counts,
        tiles_x=tiles_x,
        tiles_y=tiles_y,
    )


def chunk_end(counts: list[int], begin: int) -> int:
    """End of the chunk starting at `begin` in list lengths sorted longest first.

    A chunk holds at most ~CHUNK_PAIRS padded pairs, and stops before a tile whose padding
    would waste more than both 1 - MIN_FILL of the chunk's length and MIN_SPLIT_PAIRS pairs.
    """
    pixels = TILE_SIZE * TILE_SIZE
    length = counts[begin]
    end = min(len(counts), begin + max(1, CHUNK_PAIRS // (pixels * length)))
    allowed_waste = max(MIN_SPLIT_PAIRS, (1.0 - MIN_FILL) * length * pixels)
    return next((i for i in range(begin + 1, end) if (length - counts[i]) * pixels > allowed_waste), end)


@torch.no_grad()
def plan_tile_chunks(bins: TileBins, sentinel: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Group non-empty tiles, longest list first, into chunks padded to their longest list.

    Returns (tile ids [B], Gaussian ids [B, L]) per chunk; padding slots hold `sentinel`.
    """
    nonempty = torch.nonzero(bins.tile_counts).squeeze(1)
    tiles = nonempty[torch.argsort(bins.tile_counts[nonempty], descending=True, stable=True)]
    counts = bins.tile_counts[tiles].tolist()
    chunks = []
    begin = 0
    while begin < len(tiles):
        end = chunk_end(counts, begin)
        chunk_tiles = tiles[begin:end]
        length = counts[begin]
        slots = torch.arange(length, device=tiles.device)  # [L]
        positions = bins.tile_starts[chunk_tiles, None] + slots  # [B, L]
        filled = slots < bins.tile_counts[chunk_tiles, None]
        safe_positions = torch.where(filled, positions, torch.zeros_like(positions))
        ids = torch.where(filled, bins.gaussian_ids[safe_positions], torch.full_like(positions, sentinel))
        chunks.append((chunk_tiles, ids))
        begin = end
    return chunks


def composite_tile_chunk(
    pixel_x: torch.Tensor,  # [B, S] pixel-centre x of each tile column
    pixel_y: torch.Tensor,  # [B, S] pixel-centre y of each tile row
    means2d: torch.Tensor,  # [B, L, 2]
    conics: torch.Tensor,  # [B, L, 3]
    log_opacities: torch.Tensor,  # [B, L], -inf in padding
    colors: torch.Tensor,  # [B, L, D]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back alpha blending of B tiles of S x S pixels (gsplat's rasterize_to_pixels kernel).

    The exponent log(opacity) - sigma splits into a per-column, a per-row and one cross term,
    so only the cross term and the sum are evaluated per (pixel, Gaussian). gsplat also skips
    sigma < 0, which only float rounding can produce (projected conics are positive definite),
    so that test is left out. Returns premultiplied colours [B, S*S, D] and alphas [B, S*S].
    """
    batch, side = pixel_x.shape
    length = means2d.shape[1]
    a, b, c = conics.unbind(-1)  # [B, L] each
    dx = means2d[:, None, :, 0] - pixel_x[:, :, None]  # [B, S(x), L]
    dy = means2d[:, None, :, 1] - pixel_y[:, :, None]  # [B, S(y), L]
    column_term = log_opacities[:, None, :] - 0.5 * a[:, None, :] * dx * dx  # [B, S(x), L]
    row_term = -0.5 * c[:, None, :] * dy * dy  # [B, S(y), L]
    cross_term = -(b[:, None, :] * dx)[:, None, :, :] * dy[:, :, None, :]  # [B, S(y), S(x), L]
    log_alpha = (cross_term + column_term[:, None, :, :] + row_term[:, :, None, :]).reshape(batch, side * side, length)
    raw_alpha = torch.exp(log_alpha)  # [B, P, L] opacity * exp(-sigma)
    alpha = raw_alpha.clamp_max(MAX_ALPHA) * (raw_alpha >= ALPHA_THRESHOLD)  # fainter ones are skipped
    transmittance_after = torch.cumprod(1.0 - alpha, dim=-1)  # [B, P, L]
    transmittance_before = torch.cat([torch.ones_like(alpha[..., :1]), transmittance_after[..., :-1]], dim=-1)
    weights = alpha * transmittance_before  # [B, P, L]
    if (transmittance_after[..., -1:] <= TRANSMITTANCE_STOP).any():  # the last Gaussian sees the lowest T
        # gsplat stops a pixel before the Gaussian that would take its transmittance to 1e-4 or below
        weights = weights * (transmittance_after.detach() > TRANSMITTANCE_STOP)
    return weights @ colors, weights.sum(dim=-1)


def _composite_chunk_inputs(
    tile_ids: torch.Tensor,  # [B] flat (camera, tile) ids
    gaussian_ids: torch.Tensor,  # [B, L]
    bins: TileBins,
    means2d_flat: torch.Tensor,  # [C * N + 1, 2]
    conics_flat: torch.Tensor,  # [C * N + 1, 3]
    log_opacities_flat: torch.Tensor,  # [C * N + 1]
    colors_flat: torch.Tensor,  # [C * N + 1, D]
) -> tuple[torch.Tensor, ...]:
    """Gather one chunk's pixel centres and Gaussian attributes."""
    tile_in_image = tile_ids % (bins.tiles_x * bins.tiles_y)
    offsets = torch.arange(TILE_SIZE, device=tile_ids.device, dtype=means2d_flat.dtype) + 0.5  # [S]
    pixel_x = (tile_in_image % bins.tiles_x * TILE_SIZE).to(means2d_flat.dtype)[:, None] + offsets  # [B, S]
    pixel_y = (tile_in_image // bins.tiles_x * TILE_SIZE).to(means2d_flat.dtype)[:, None] + offsets  # [B, S]
    return (
        pixel_x,
        pixel_y,
        means2d_flat[gaussian_ids],
        conics_flat[gaussian_ids],
        log_opacities_flat[gaussian_ids],
        colors_flat[gaussian_ids],
    )


def rasterize_tiles(
    means2d: torch.Tensor,  # [C, N, 2]
    conics: torch.Tensor,  # [C, N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [C, N, D]
    radii: torch.Tensor,  # [C, N, 2]
    depths: torch.Tensor,  # [C, N]
    width: int,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Premultiplied colours [C, H, W, D] and alphas [C, H, W, 1], no background (16x16 tiles)."""
    num_cameras, num_gaussians = depths.shape
    bins = bin_gaussians_to_tiles(means2d.detach(), radii, depths.detach(), width, height)
    sentinel = num_cameras * num_gaussians  # one extra, fully transparent Gaussian pads the lists
    means2d_flat = torch.cat([means2d.reshape(-1, 2), means2d.new_zeros(1, 2)])
    conics_flat = torch.cat([conics.reshape(-1, 3), conics.new_zeros(1, 3)])
    log_opacities = torch.log(opacities.clamp_min(ALPHA_THRESHOLD))  # visible Gaussians are at least this opaque
    log_opacities_flat = torch.cat(
        [log_opacities.expand(num_cameras, -1).reshape(-1), log_opacities.new_full((1,), -torch.inf)]
    )
    channels = colors.shape[-1]
    colors_flat = torch.cat([colors.reshape(-1, channels), colors.new_zeros(1, channels)])

    # With nothing visible, one empty chunk still routes the output through means2d (its .grad is zeros, not None).
    nothing = torch.zeros(0, dtype=torch.long, device=means2d.device)
    chunks = plan_tile_chunks(bins, sentinel) or [(nothing, nothing.reshape(0, 0))]
    recompute = sum(ids.numel() for _, ids in chunks) * TILE_SIZE * TILE_SIZE > RETAINED_PAIRS
    tile_ids, tile_colors, tile_alphas = [], [], []
    for chunk_tiles, gaussian_ids in chunks:
        inputs = _composite_chunk_inputs(
            chunk_tiles, gaussian_ids, bins, means2d_flat, conics_flat, log_opacities_flat, colors_flat
        )
        if recompute and torch.is_grad_enabled():
            chunk_colors, chunk_alphas = torch.utils.checkpoint.checkpoint(
                composite_tile_chunk, *inputs, use_reentrant=False
            )
        else:
            chunk_colors, chunk_alphas = composite_tile_chunk(*inputs)
        tile_ids.append(chunk_tiles)
        tile_colors.append(chunk_colors)
        tile_alphas.append(chunk_alphas)

    pixels = TILE_SIZE * TILE_SIZE
    num_tiles = num_cameras * bins.tiles_y * bins.tiles_x
    all_ids, all_colors, all_alphas = torch.cat(tile_ids), torch.cat(tile_colors), torch.cat(tile_alphas)
    image_colors = all_colors.new_zeros(num_tiles, pixels, channels).index_copy(0, all_ids, all_colors)
    image_alphas = all_alphas.new_zeros(num_tiles, pixels).index_copy(0, all_ids, all_alphas)
    images = untile(image_colors, num_cameras, bins, width, height)
    return images, untile(image_alphas[..., None], num_cameras, bins, width, height)


def untile(
    per_tile: torch.Tensor,  # [C * T, S * S, D]
    num_cameras: int,
    bins: TileBins,
    width: int,
    height: int,
) -> torch.Tensor:
    """Tile-major pixels -> images [C, H, W, D], cropping the partial tiles at the border."""
    channels = per_tile.shape[-1]
    grid = per_tile.reshape(num_cameras, bins.tiles_y, bins.tiles_x, TILE_SIZE, TILE_SIZE, channels)
    images = grid.permute(0, 1, 3, 2, 4, 5).reshape(
        num_cameras, bins.tiles_y * TILE_SIZE, bins.tiles_x * TILE_SIZE, channels
    )
    return images[:, :height, :width]


def rasterize_torch(
    gaussians: ActivatedGaussians,
    cameras: CameraBatch,
    backgrounds: torch.Tensor,  # [C, 3]
    depth: bool = False,
) -> RenderOutput:
    """Render with the pure-PyTorch tiled rasterizer; same outputs and `info` as gsplat (packed=False).

    `depth=True` also returns the expected depth (gsplat's "RGB+ED"); the colour-only path is unchanged.

    `info["means2d"]` is the tensor the compositor reads, so after `retain_grad()` and backward
    its `.grad` is the screen-space gradient gsplat's densification strategies accumulate.
    """
    device = gaussians.means.device
    viewmats = cameras.viewmats.to(device, gaussians.means.dtype)  # [C, 4, 4]
    Ks = cameras.Ks.to(device, gaussians.means.dtype)  # [C, 3, 3]
    width, height = cameras.width, cameras.height
    projection = project_gaussians(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, viewmats, Ks, width, height
    )
    colors = view_dependent_colors(gaussians.colors, gaussians.sh_degree, gaussians.means, viewmats)  # [C, N, 3]
    if depth:
        colors = torch.cat([colors, projection.depths[..., None]], dim=-1)  # [C, N, 4]: z blends like a colour
    premultiplied, alphas = rasterize_tiles(
        projection.means2d,
        projection.conics,
        gaussians.opacities,
        colors,
        projection.radii,
        projection.depths,
        width,
        height,
    )
    depths = None
    if depth:
        premultiplied, blended_depths = premultiplied[..., :3], premultiplied[..., 3:]
        depths = blended_depths / alphas.clamp(min=1e-10)  # [C, H, W, 1] gsplat's normalisation
    images = premultiplied + (1.0 - alphas) * backgrounds.to(premultiplied)[:, None, None, :]  # [C, H, W, 3]
    info = {
        "means2d": projection.means2d,
        "radii": projection.radii,
        "depths": projection.depths,
        "conics": projection.conics,
        "width": width,
        "height": height,
        "n_cameras": len(cameras),
        "gaussian_ids": None,
    }
    return RenderOutput(images=images, alphas=alphas, info=info, depths=depths)
