"""The pipeline from Gaussians to a coloured mesh: density grid -> surface -> colours."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from splatgen.export.bake import bake_cameras, bake_texture, render_views, sample_colors, unwrap
from splatgen.export.density import density_grid
from splatgen.export.options import MeshError, MeshOptions
from splatgen.export.surface import extract_surface
from splatgen.scene.gaussians import Gaussians

DEPTH_TOLERANCE_VOXELS = 3.0  # a surface point is visible if within this of the rendered depth ...
DEPTH_TOLERANCE_RADIUS = 0.02  # ... plus this fraction of the asset's radius


@dataclass
class ColoredMesh:
    """A triangle mesh in splatgen's world frame (+y up, front +z: glTF's), with one kind of colour."""

    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int64, counter-clockwise seen from outside
    normals: np.ndarray  # [V, 3] float32 unit, outward
    uvs: np.ndarray | None = None  # [V, 2] float32 in [0, 1], v up (OBJ convention)
    texture: np.ndarray | None = None  # [T, T, 3] uint8, row 0 = top (v = 1)
    vertex_colors: np.ndarray | None = None  # [V, 3] uint8
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage


def mesh_from_gaussians(
    gaussians: Gaussians, options: MeshOptions, log: Callable[[str], None] | None = None
) -> ColoredMesh:
    """Mesh the Gaussians (all finite) with `options`; raises `MeshError` for what a user can change."""
    options.validate()
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now
        if log is not None:
            log(f"{stage}: {seconds[stage]:.1f} s")

    grid = density_grid(gaussians, options.resolution, options.min_opacity)
    lap("density grid")
    vertices, faces = extract_surface(grid, options)
    lap("surface")
    normals = vertex_normals(vertices, faces)
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    tolerance = DEPTH_TOLERANCE_VOXELS * grid.voxel + DEPTH_TOLERANCE_RADIUS * radius
    cameras = bake_cameras(centre, radius, options.bake_views, options.bake_size)
    views = render_views(gaussians, cameras, torch.from_numpy(vertices), torch.from_numpy(faces), tolerance)
    lap("renders")
    opaque = gaussians.select(torch.sigmoid(gaussians.opacities) > options.min_opacity)

    def color_at(points: torch.Tensor, point_normals: torch.Tensor) -> torch.Tensor:
        return sample_colors(points, point_normals, views, tolerance, opaque)

    mesh = ColoredMesh(vertices=vertices.astype(np.float32), faces=faces, normals=normals, seconds=seconds)
    if options.appearance == "vertex":
        colors = color_at(torch.from_numpy(mesh.vertices), torch.from_numpy(normals))
        mesh.vertex_colors = (colors * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
        lap("vertex colours")
        return mesh
    mapping, atlas_faces, uvs = unwrap(vertices, faces, options.texture_size)
    lap("uv atlas")
    mesh = ColoredMesh(
        vertices=mesh.vertices[mapping],
        faces=atlas_faces,
        normals=normals[mapping],
        uvs=uvs,
        seconds=seconds,
    )
    mesh.texture = bake_texture(
        torch.from_numpy(mesh.vertices),
        torch.from_numpy(mesh.normals),
        torch.from_numpy(mesh.faces),
        torch.from_numpy(uvs),
        options.texture_size,
        color_at,
    )
    lap("texture")
    return mesh


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (float32)."""
    face_normals = np.cross(
        vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    )
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)


def finite_gaussians(gaussians: Gaussians) -> tuple[Gaussians, int]:
    """The rows without NaN/Inf, and how many were dropped; refuses an asset with none left."""
    finite = gaussians.finite_mask()
    dropped = int((~finite).sum())
    if dropped == len(gaussians):
        raise MeshError(f"every one of the asset's {len(gaussians):,} Gaussians has NaN/Inf values; nothing to mesh")
    return (gaussians.select(finite) if dropped else gaussians), dropped
