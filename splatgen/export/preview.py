"""Renders of a `ColoredMesh` on CPU (unlit: the baked colours as they are), for checks and pictures.

Same cameras and image layout as the splat rasterizer (`splatgen.render`): images [C, H, W, 3]
over a background, coverage [C, H, W, 1] (1 where a triangle is hit).
"""

from __future__ import annotations

import torch

from splatgen.export.mesh import ColoredMesh
from splatgen.export.triangles import render_coverage
from splatgen.scene.cameras import CameraBatch


@torch.no_grad()
def render_mesh(
    mesh: ColoredMesh, cameras: CameraBatch, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [C, H, W, 3] in [0, 1] and coverage [C, H, W, 1] of the mesh from every camera."""
    vertices = torch.from_numpy(mesh.vertices).double()
    faces = torch.from_numpy(mesh.faces)
    images, coverages = [], []
    for view in range(len(cameras)):
        coverage, _ = render_coverage(
            vertices, faces, cameras.viewmats[view].double(), cameras.Ks[view].double(), cameras.width, cameras.height
        )
        hit = coverage.face >= 0  # [H, W]
        corners = faces[coverage.face[hit]]  # [P, 3]
        weights = coverage.barycentric[hit][..., None]  # [P, 3, 1]
        image = torch.tensor(background, dtype=torch.float32).expand(cameras.height, cameras.width, 3).clone()
        if mesh.texture is not None:
            uv = (torch.from_numpy(mesh.uvs)[corners] * weights).sum(dim=1)  # [P, 2], v up
            grid = torch.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1]], dim=-1)  # grid_sample: y = -1 is the top row
            texture = torch.from_numpy(mesh.texture).float().permute(2, 0, 1)[None] / 255.0
            colors = torch.nn.functional.grid_sample(texture, grid[None, None], align_corners=False)[0, :, 0].T
        else:
            colors = (torch.from_numpy(mesh.vertex_colors).float()[corners] / 255.0 * weights).sum(dim=1)
        image[hit] = colors
        images.append(image)
        coverages.append(hit.float()[..., None])
    return torch.stack(images), torch.stack(coverages)
