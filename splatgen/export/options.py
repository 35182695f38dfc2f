"""The mesh exporter's settings: one dataclass, each field's docstring is its `--help` text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from splatgen.errors import SplatgenError


class MeshError(SplatgenError):
    """An asset cannot be meshed as asked (nothing opaque, a grid too large for memory, a bad option)."""


@dataclass
class MeshOptions:
    """How a splat asset becomes a mesh: density grid -> marching cubes -> clean-up -> decimation -> appearance."""

    resolution: int = 128
    """Density-grid voxels along the asset's longest side (memory and time grow with its cube)."""
    iso: float = 1.0
    """Density level of the surface (density = sum_i opacity_i exp(-d^T Sigma_i^-1 d / 2)); lower = fatter."""
    min_opacity: float = 0.005
    """Gaussians fainter than this are ignored (DreamGaussian's cut)."""
    fill_interior: bool = True
    """Fill cavities enclosed by the surface, so a hollow shell of splats gives one outer surface."""
    min_component: float = 0.01
    """Drop connected pieces with fewer than this fraction of all faces (floaters); 0 keeps everything."""
    smooth: int = 5
    """Taubin smoothing iterations (shrink-free; 0 = off)."""
    faces: int = 50_000
    """Decimate to at most this many triangles (quadric simplification)."""
    appearance: Literal["texture", "vertex"] = "texture"
    """'texture': UV atlas + baked PNG (xatlas); 'vertex': one colour per vertex (no UVs, faster)."""
    texture_size: int = 1024
    """Width and height of the baked texture, pixels."""
    bake_views: int = 8
    """Renders of the splat asset that colours are taken from (an orbit, plus top and bottom)."""
    bake_size: int = 384
    """Size of those renders, pixels."""

    def validate(self) -> None:
        checks = [
            ("resolution", 16 <= self.resolution <= 2048, "between 16 and 2048"),
            ("iso", self.iso > 0, "positive"),
            ("min-opacity", 0 <= self.min_opacity < 1, "in [0, 1)"),
            ("min-component", 0 <= self.min_component < 1, "in [0, 1)"),
            ("smooth", 0 <= self.smooth <= 1000, "between 0 and 1000"),
            ("faces", self.faces >= 100, "at least 100"),
            ("texture-size", 64 <= self.texture_size <= 8192, "between 64 and 8192"),
            ("bake-views", 2 <= self.bake_views <= 200, "between 2 and 200"),
            ("bake-size", 32 <= self.bake_size <= 4096, "between 32 and 4096"),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise MeshError(f"--{name} must be {wanted}, got {getattr(self, name.replace('-', '_'))}")
