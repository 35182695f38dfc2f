"""A CPU triangle rasterizer in PyTorch: UV-space (texture baking) and screen-space (mesh renders).

Pixel (x, y) is covered by a triangle when its centre (x + 0.5, y + 0.5) lies inside (edge
functions, Pineda 1988); with depths, the nearest triangle wins (z-buffer) and barycentrics are
perspective-corrected (b_i / z_i, renormalised). Triangles are grouped by the size of their pixel
bounding box so each group is one batched tensor expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_PAIRS = 2**22  # (triangle, pixel) candidates tested at once
NEAR_PLANE = 1e-3


@dataclass
class Coverage:
    face: torch.Tensor  # [H, W] long, the triangle seen at each pixel, -1 = none
    barycentric: torch.Tensor  # [H, W, 3] weights of its three corners


def rasterize_triangles(
    corners: torch.Tensor,  # [F, 3, 2] pixel coordinates of each triangle's corners
    width: int,
    height: int,
    depths: torch.Tensor | None = None,  # [F, 3] camera-space z (> 0); None: no overlaps expected (UV)
) -> Coverage:
    """Which triangle covers each pixel centre, and where inside it."""
    corners = corners.double()
    low = torch.ceil(corners.amin(dim=1) - 0.5).long().clamp_min(0)  # [F, 2] first covered pixel
    high = torch.floor(corners.amax(dim=1) - 0.5).long()  # [F, 2] last
    high[:, 0].clamp_(max=width - 1)
    high[:, 1].clamp_(max=height - 1)
    edge_a, edge_b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = edge_a[:, 0] * edge_b[:, 1] - edge_a[:, 1] * edge_b[:, 0]  # [F] twice the signed area
    valid = (high >= low).all(dim=1) & (area.abs() > 1e-12)
    span = torch.where(valid, (high - low + 1).amax(dim=1), 0)  # [F] side of each triangle's square box
    pixel_ids, face_ids, weights = [], [], []
    for side in torch.unique(span[valid]).tolist():
        members = torch.nonzero(span == side).squeeze(1)
        steps = torch.arange(side)
        offsets = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).reshape(-1, 2)  # [K, 2]
        per_chunk = max(1, CHUNK_PAIRS // len(offsets))
        for begin in range(0, len(members), per_chunk):
            ids = members[begin : begin + per_chunk]
            pixels = low[ids, None, :] + offsets[None]  # [G, K, 2]
            centres = pixels.double() + 0.5
            bary = barycentric(corners[ids], area[ids], centres)  # [G, K, 3]
            hit = (bary >= -1e-9).all(dim=-1) & (pixels <= high[ids, None, :]).all(dim=-1)
            group, slot = torch.nonzero(hit, as_tuple=True)
            pixel_ids.append(pixels[group, slot, 1] * width + pixels[group, slot, 0])
            face_ids.append(ids[group])
            weights.append(bary[group, slot])
    face = torch.full((height * width,), -1, dtype=torch.long)
    bary_image = torch.zeros(height * width, 3, dtype=torch.float64)
    if pixel_ids:
        pixel_ids, face_ids, weights = torch.cat(pixel_ids), torch.cat(face_ids), torch.cat(weights)
        if depths is not None:
            inverse = weights / depths.double()[face_ids]  # perspective-correct interpolation of 1/z
            pixel_depth = 1.0 / inverse.sum(dim=-1)
            weights = inverse * pixel_depth[:, None]
            nearest = torch.full((height * width,), torch.inf, dtype=torch.float64)
            nearest.scatter_reduce_(0, pixel_ids, pixel_depth, reduce="amin")
            front = pixel_depth <= nearest[pixel_ids]
            pixel_ids, face_ids, weights = pixel_ids[front], face_ids[front], weights[front]
        face[pixel_ids] = face_ids
        bary_image[pixel_ids] = weights
    return Coverage(face=face.reshape(height, width), barycentric=bary_image.reshape(height, width, 3).float())


def barycentric(
    corners: torch.Tensor,  # [G, 3, 2]
    doubled_area: torch.Tensor,  # [G]
    points: torch.Tensor,  # [G, K, 2]
) -> torch.Tensor:
    """Barycentric coordinates [G, K, 3] of points in their triangle (any winding)."""
    a, b, c = corners[:, None, 0], corners[:, None, 1], corners[:, None, 2]  # [G, 1, 2]

    def cross(p: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])

    w_a = cross(b, c, points) / doubled_area[:, None]
    w_b = cross(c, a, points) / doubled_area[:, None]
    return torch.stack([w_a, w_b, 1.0 - w_a - w_b], dim=-1)


def project_vertices(
    vertices: torch.Tensor,  # [V, 3] world
    viewmat: torch.Tensor,  # [4, 4] world-to-camera, OpenCV
    K: torch.Tensor,  # [3, 3]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates [V, 2] and camera-space z [V] (the rasterizer's convention: centres at +0.5)."""
    camera = vertices @ viewmat[:3, :3].T + viewmat[:3, 3]  # [V, 3]
    z = camera[:, 2]
    safe = z.clamp_min(NEAR_PLANE)
    pixels = torch.stack([K[0, 0] * camera[:, 0] / safe + K[0, 2], K[1, 1] * camera[:, 1] / safe + K[1, 2]], dim=-1)
    return pixels, z


def render_coverage(
    vertices: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3]
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
) -> tuple[Coverage, torch.Tensor]:
    """Screen-space coverage of a mesh from one pinhole camera, and each vertex's depth [V]."""
    pixels, z = project_vertices(vertices, viewmat, K)
    in_front = (z[faces] > NEAR_PLANE).all(dim=1)  # triangles crossing the near plane are left out
    kept = torch.nonzero(in_front).squeeze(1)
    coverage = rasterize_triangles(pixels[faces[kept]], width, height, depths=z[faces[kept]])
    hit = coverage.face >= 0
    coverage.face[hit] = kept[coverage.face[hit]]
    return coverage, z
