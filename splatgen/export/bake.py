"""Colours for the mesh from the asset's own renders: views, visibility, UV atlas, texture bake.

1. The splat asset is rendered (splatgen's rasterizer, black background, expected depth) from
   `bake_views` cameras around the mesh: an orbit alternating 20 deg above and below the
   horizon, plus one view from the top and one from the bottom.
2. A surface point takes colour from every view that sees it: it must face the camera, land on a
   pixel with alpha > 0.5, and lie within `tolerance` of the rendered expected depth there.
   Colours are un-premultiplied (colour / alpha) and bilinearly sampled; views are weighted by
   alpha * cos^2 of the angle between the normal and the view direction. A point no view sees
   takes the colour of the nearest Gaussian.
3. Texture: `xatlas` (Young, "xatlas", https://github.com/jpcy/xatlas) cuts the mesh into charts
   and packs them into the texture; the UV triangles are rasterized (`triangles.py`) to find each
   texel's surface point and normal, which are coloured as in 2; texels around the charts are
   filled from their neighbours (dilation) so bilinear filtering and mip-maps do not bleed the
   empty background into the seams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from splatgen.export.triangles import project_vertices, rasterize_triangles, render_coverage
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import CameraBatch, make_cameras
from splatgen.scene.gaussians import Gaussians, activate, sh0_to_rgb

BAKE_FOVY_DEG = 40.0
ORBIT_ELEVATION_DEG = 20.0
MIN_ALPHA = 0.5
MIN_FACING = 0.05  # cos of the steepest view angle a colour is taken from
CHART_AREA_FRACTION = 0.005  # xatlas charts are at most this fraction of the surface: small charts unwrap fast
DILATION_TEXELS = 8


@dataclass
class BakeViews:
    """Renders of the splat asset that colours are looked up in."""

    cameras: CameraBatch
    premultiplied: torch.Tensor  # [C, H, W, 3] colour * alpha (black background)
    alphas: torch.Tensor  # [C, H, W, 1]
    depths: torch.Tensor  # [C, H, W, 1] expected depth


def bake_cameras(centre: np.ndarray, radius: float, count: int, size: int) -> CameraBatch:
    """`count` cameras framing a sphere (centre [3], radius): an orbit, plus the top and the bottom."""
    orbit = count - 2
    azimuth = torch.cat([360.0 * torch.arange(orbit) / orbit, torch.zeros(2)])
    elevation = torch.cat([ORBIT_ELEVATION_DEG * (1 - 2 * (torch.arange(orbit) % 2)), torch.tensor([89.0, -89.0])])
    distance = 1.1 * radius / math.sin(math.radians(BAKE_FOVY_DEG / 2))
    centres = torch.as_tensor(centre, dtype=torch.float32).expand(count, 3)
    return make_cameras(
        azimuth.float(),
        elevation.float(),
        torch.full((count,), distance),
        torch.full((count,), BAKE_FOVY_DEG),
        size,
        size,
        targets=centres,
        position_offsets=centres,
    )


@torch.no_grad()
def render_views(
    gaussians: Gaussians,
    cameras: CameraBatch,
    vertices: torch.Tensor,  # [V, 3] the mesh, for occlusion culling
    faces: torch.Tensor,  # [F, 3]
    tolerance: float,
) -> BakeViews:
    """Render the asset from every camera with expected depth, one view at a time.

    Gaussians whose centre lies more than `tolerance` behind the mesh's surface in a view (the
    far side, the inside) are left out of that view's render: they are hidden, and leaving them
    out saves most of the compositing work.
    """
    splats = {key: getattr(gaussians, key).float() for key in ("means", "scales", "quats", "opacities", "sh0", "shN")}
    parts = []
    for view in range(len(cameras)):
        camera = cameras.select(slice(view, view + 1))
        surface_depth = mesh_depth(vertices, faces, camera)  # [H, W], inf off the mesh
        pixels, z = project_vertices(splats["means"], camera.viewmats[0], camera.Ks[0])
        column = pixels[:, 0].floor().long().clamp(0, camera.width - 1)
        row = pixels[:, 1].floor().long().clamp(0, camera.height - 1)
        seen = z <= surface_depth[row, column] + tolerance  # [N]
        out = rasterize(
            activate({key: value[seen] for key, value in splats.items()}),
            camera,
            make_backgrounds("black", 1),
            depth=True,
        )
        parts.append((out.images, out.alphas, out.depths))
    images, alphas, depths = (torch.cat(tensors) for tensors in zip(*parts))
    return BakeViews(cameras=cameras, premultiplied=images, alphas=alphas, depths=depths)


def mesh_depth(vertices: torch.Tensor, faces: torch.Tensor, camera: CameraBatch) -> torch.Tensor:
    """Camera-space depth [H, W] of the nearest mesh surface (perspective-correct), inf where there is none."""
    coverage, z = render_coverage(
        vertices.double(), faces, camera.viewmats[0].double(), camera.Ks[0].double(), camera.width, camera.height
    )
    hit = coverage.face >= 0
    depth = torch.full((camera.height, camera.width), torch.inf)
    inverse = (coverage.barycentric[hit].double() / z[faces[coverage.face[hit]]]).sum(dim=-1)
    depth[hit] = (1.0 / inverse).float()
    return depth


def sample_colors(
    points: torch.Tensor,  # [M, 3] surface points
    normals: torch.Tensor,  # [M, 3] unit outward normals
    views: BakeViews,
    tolerance: float,
    fallback: Gaussians,
) -> torch.Tensor:
    """Colours [M, 3] in [0, 1] seen at the points in the views (module docstring, step 2)."""
    total = torch.zeros(len(points), 3)
    weight_sum = torch.zeros(len(points))
    camera_centres = views.cameras.camtoworlds[:, :3, 3]  # [C, 3]
    height, width = views.alphas.shape[1:3]
    for view in range(len(views.cameras)):
        pixels, z = project_vertices(points, views.cameras.viewmats[view], views.cameras.Ks[view])
        grid = torch.stack([2 * pixels[:, 0] / width - 1, 2 * pixels[:, 1] / height - 1], dim=-1)  # [M, 2]
        alphas = views.alphas[view]  # depth is sampled as sum w z (alpha * expected depth), then divided by alpha
        stack = torch.cat([views.premultiplied[view], alphas, alphas * views.depths[view]], dim=-1)  # [H, W, 5]
        sampled = torch.nn.functional.grid_sample(
            stack.permute(2, 0, 1)[None], grid[None, None], mode="bilinear", align_corners=False, padding_mode="zeros"
        )[0, :, 0].T  # [M, 5]
        premultiplied, alpha, depth = sampled[:, :3], sampled[:, 3], sampled[:, 4]
        direction = torch.nn.functional.normalize(camera_centres[view] - points, dim=-1)
        facing = (normals * direction).sum(dim=-1)
        on_screen = (grid.abs() <= 1).all(dim=-1) & (z > 0)
        visible = on_screen & (alpha > MIN_ALPHA) & (facing > MIN_FACING)
        visible &= (z - depth / alpha.clamp_min(1e-6)).abs() < tolerance
        weight = torch.where(visible, alpha * facing.square(), torch.zeros_like(alpha))
        total += weight[:, None] * premultiplied / alpha.clamp_min(1e-6)[:, None]
        weight_sum += weight
    colors = total / weight_sum.clamp_min(1e-12)[:, None]
    unseen = weight_sum <= 0
    if unseen.any():
        colors[unseen] = nearest_gaussian_colors(points[unseen], fallback)
    return colors.clamp(0.0, 1.0)


def nearest_gaussian_colors(points: torch.Tensor, gaussians: Gaussians) -> torch.Tensor:
    """Base colour [M, 3] of the nearest Gaussian (degree-0 SH) for points no view sees."""
    from scipy.spatial import cKDTree

    _, index = cKDTree(gaussians.means.numpy()).query(points.numpy())
    return sh0_to_rgb(gaussians.sh0[torch.as_tensor(index), 0].float()).clamp(0.0, 1.0)


def unwrap(vertices: np.ndarray, faces: np.ndarray, texture_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts: (original vertex of each new vertex [V'], new faces [F, 3], UVs [V', 2] in [0, 1], v up)."""
    import xatlas

    area = (
        0.5
        * np.linalg.norm(
            np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]),
            axis=1,
        ).sum()
    )
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    chart_options = xatlas.ChartOptions()
    chart_options.max_chart_area = CHART_AREA_FRACTION * area
    pack_options = xatlas.PackOptions()
    pack_options.padding = 2
    pack_options.bilinear = True
    pack_options.texels_per_unit = 0.8 * texture_size / math.sqrt(area)  # charts fill ~65 % of the atlas
    atlas.generate(chart_options, pack_options)
    mapping, new_faces, uvs = atlas[0]
    uvs = uvs * np.array([atlas.width, atlas.height]) / max(atlas.width, atlas.height)  # keep texel aspect 1:1
    return mapping.astype(np.int64), new_faces.astype(np.int64), uvs.astype(np.float32)


def bake_texture(
    vertices: torch.Tensor,  # [V, 3]
    normals: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3]
    uvs: torch.Tensor,  # [V, 2] in [0, 1], v up
    texture_size: int,
    color_at,  # (points [M, 3], normals [M, 3]) -> colours [M, 3]
) -> np.ndarray:
    """The texture [T, T, 3] uint8 (row 0 = top, v = 1): every covered texel coloured, seams dilated."""
    texel_corners = torch.stack([uvs[:, 0], 1.0 - uvs[:, 1]], dim=-1) * texture_size  # [V, 2] image coordinates
    coverage = rasterize_triangles(texel_corners[faces], texture_size, texture_size)
    covered = coverage.face >= 0  # [T, T]
    corner_ids = faces[coverage.face[covered]]  # [M, 3]
    weights = coverage.barycentric[covered][..., None]  # [M, 3, 1]
    points = (vertices[corner_ids] * weights).sum(dim=1)
    point_normals = torch.nn.functional.normalize((normals[corner_ids] * weights).sum(dim=1), dim=-1)
    texture = torch.zeros(texture_size, texture_size, 3)
    texture[covered] = color_at(points, point_normals)
    texture = dilate(texture, covered, DILATION_TEXELS)
    return (texture * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def dilate(image: torch.Tensor, filled: torch.Tensor, steps: int) -> torch.Tensor:
    """Grow the filled texels [H, W] of image [H, W, 3] outward by `steps`, then fill the rest with their mean."""
    mask = filled[None, None].float()  # [1, 1, H, W]
    stack = torch.cat([image.permute(2, 0, 1)[None] * mask, mask], dim=1)  # [1, 4, H, W]: colour sums, count
    kernel = torch.ones(4, 1, 3, 3)
    for _ in range(steps):
        sums = torch.nn.functional.conv2d(stack, kernel, padding=1, groups=4)
        grow = (stack[:, 3:] == 0) & (sums[:, 3:] > 0)
        grown = torch.cat([sums[:, :3] / sums[:, 3:].clamp_min(1), torch.ones_like(mask)], dim=1)
        stack = torch.where(grow, grown, stack)
    result = stack[0, :3].permute(1, 2, 0)
    empty = stack[0, 3] == 0
    if empty.any() and filled.any():
        result[empty] = image[filled].mean(dim=0)
    return result
