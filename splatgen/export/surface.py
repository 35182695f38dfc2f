"""Geometry from the density grid: fill cavities, marching cubes, clean-up, smoothing, decimation.

- Cavities enclosed by the dense region are filled (`scipy.ndimage.binary_fill_holes`), so a
  hollow shell of surface splats gives one outward surface instead of an outer and an inner one.
- Marching cubes (Lorensen and Cline 1987; PyMCubes) at the iso-level.
- Clean-up (trimesh): merged duplicate vertices, degenerate and duplicate faces dropped, connected
  pieces with fewer than `min_component` of all faces removed (floaters), faces wound outward.
- Taubin smoothing (Taubin 1995, lambda/mu filtering: smooths without shrinking).
- Quadric edge-collapse decimation (Garland and Heckbert 1997; `fast-simplification`).
"""

from __future__ import annotations

import numpy as np

from splatgen.export.density import DensityGrid
from splatgen.export.options import MeshError, MeshOptions


def extract_surface(grid: DensityGrid, options: MeshOptions) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] (world, float64) and triangles [F, 3] (int64, outward winding)."""
    import mcubes
    import scipy.ndimage

    field = grid.values
    inside = field > options.iso
    if not inside.any():
        peak = float(field.max())
        raise MeshError(
            f"the asset's density never reaches --iso {options.iso} (its peak is {peak:.3g}); lower --iso "
            f"(e.g. {max(peak / 2, 1e-3):.3g}) or raise --resolution"
        )
    if options.fill_interior:
        cavities = scipy.ndimage.binary_fill_holes(inside) & ~inside
        if cavities.any():
            field = field.copy()
            field[cavities] = max(float(field.max()), 2.0 * options.iso)
    padded = np.pad(field, 1)  # zero margin: every surface closes
    vertices, faces = mcubes.marching_cubes(padded, options.iso)
    vertices = grid.to_world(vertices - 1.0)
    return clean_mesh(vertices, faces.astype(np.int64), options)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, options: MeshOptions) -> tuple[np.ndarray, np.ndarray]:
    """Clean-up, smoothing and decimation of a triangle soup (see the module docstring)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)  # merges duplicate vertices
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh = drop_small_components(mesh, options.min_component)
    if options.smooth > 0:
        trimesh.smoothing.filter_taubin(mesh, iterations=options.smooth)
    if len(mesh.faces) > options.faces:
        import fast_simplification

        points, triangles = fast_simplification.simplify(
            mesh.vertices.astype(np.float32), mesh.faces, target_reduction=1.0 - options.faces / len(mesh.faces)
        )
        mesh = trimesh.Trimesh(points.astype(np.float64), triangles, process=True)
        mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    if len(mesh.faces) == 0:
        raise MeshError("nothing is left of the surface after clean-up; lower --min-component or --iso")
    orient_outward(mesh)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)


def drop_small_components(mesh, min_fraction: float):
    """Keep the connected pieces with at least `min_fraction` of all faces (the largest always stays)."""
    import trimesh

    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    counts = np.bincount(labels)
    keep = (counts >= min_fraction * len(mesh.faces)) | (counts == counts.max())
    mesh.update_faces(keep[labels])
    mesh.remove_unreferenced_vertices()
    return mesh


def orient_outward(mesh) -> None:
    """Marching cubes winds every face alike; flip them all if that encloses a negative volume."""
    if mesh.volume < 0:
        mesh.invert()
