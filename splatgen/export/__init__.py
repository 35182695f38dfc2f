"""Mesh export: a textured (or vertex-coloured) triangle mesh, .glb or .obj, from any splat asset, on CPU.

Contract. `export_mesh(in_path, out_path, options)` reads an asset (`splatgen.io.read_asset`: a
3DGS PLY, SuperSplat compressed PLY or `.splat`), meshes it and writes
`out_path` (.glb: one binary glTF 2.0 file; .obj: plus `<stem>.mtl` and `<stem>.png` beside it),
returning a one-line summary. Every user-fixable problem (an unknown suffix, an unreadable PLY, an
empty or transparent asset, a grid too large for memory, a bad option) raises a
`splatgen.errors.SplatgenError` before anything is written, so existing outputs stay as they were.
Rows with NaN/Inf are dropped and counted in the summary. The mesh is in splatgen's world frame,
which is glTF's: +Y up, the front towards +Z, whatever frame the input was written in (reading
undoes a PLY's recorded frame; asset frames, `splatgen.scene.frames`, apply to .ply and .splat).

Pipeline (each stage its own module, all CPU, PyPI packages of the `mesh` extra):

    density.py    opacity field of the Gaussians on a voxel grid      [X, Y, Z]
    surface.py    cavity fill, marching cubes, clean-up, smoothing, decimation  -> vertices, faces
    bake.py       renders of the asset (with expected depth), visibility, xatlas UVs, texture bake
    triangles.py  CPU triangle rasterizer (UV space for baking, screen space for previews)
    mesh.py       the pipeline: `mesh_from_gaussians(gaussians, options) -> ColoredMesh`
    writers.py    .glb and .obj/.mtl/.png writers (trimesh), atomic
    preview.py    `render_mesh(mesh, cameras)`: unlit CPU renders for checks and pictures
"""

from __future__ import annotations

import os
from pathlib import Path

from splatgen.errors import UnsupportedFormat
from splatgen.export.options import MeshError, MeshOptions

MESH_FORMATS = (".glb", ".obj")

__all__ = ["MESH_FORMATS", "MeshError", "MeshOptions", "export_mesh", "write_mesh"]


def require_mesh_packages() -> None:
    """Refuse, in one line, when the `mesh` extra is not installed."""
    import importlib.util

    missing = [
        name
        for name in ("mcubes", "xatlas", "fast_simplification", "trimesh", "scipy")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise MeshError(
            f"mesh export needs the 'mesh' extra ({', '.join(missing)} missing): pip install 'splatgen[mesh]'"
        )


def write_mesh(gaussians, out_path: str | os.PathLike[str], options: MeshOptions | None = None, log=None) -> str:
    """Mesh in-memory Gaussians (raw parameters, `splatgen.scene.Gaussians`) to `out_path`; returns a summary."""
    from splatgen.export.mesh import finite_gaussians, mesh_from_gaussians
    from splatgen.export.writers import WRITERS

    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise UnsupportedFormat(f"{out_path}: unknown mesh format {suffix or '(no suffix)'!r}; use .glb or .obj")
    options = options or MeshOptions()
    options.validate()
    require_mesh_packages()
    gaussians, dropped = finite_gaussians(gaussians)
    mesh = mesh_from_gaussians(gaussians, options, log=log)
    written = WRITERS[suffix](mesh, out_path)
    colour = (
        f"{mesh.texture.shape[1]}x{mesh.texture.shape[0]} texture" if mesh.texture is not None else "vertex colours"
    )
    summary = (
        f"wrote {', '.join(str(path) for path in written)}: {len(mesh.faces):,} triangles, "
        f"{len(mesh.vertices):,} vertices, {colour}, in {sum(mesh.seconds.values()):.1f} s"
    )
    if dropped:
        summary += f"; {dropped:,} Gaussians with NaN/Inf values dropped"
    return summary


def export_mesh(
    in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], options: MeshOptions | None = None, log=None
) -> str:
    """Read the asset at `in_path` (`splatgen.io.read_asset`: .ply, .compressed.ply or .splat, its recorded
    frame undone), mesh it, write `out_path` (.glb or .obj, +Y up); returns a one-line summary."""
    from splatgen.io import read_asset

    suffix = Path(out_path).suffix.lower()
    if suffix not in MESH_FORMATS:
        raise UnsupportedFormat(f"{out_path}: unknown mesh format {suffix or '(no suffix)'!r}; use .glb or .obj")
    (options or MeshOptions()).validate()
    gaussians = read_asset(in_path)
    return write_mesh(gaussians, out_path, options, log=log) + f" (from {in_path})"
