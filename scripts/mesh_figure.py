"""Draw docs/mesh-sample.png: the sample asset's splat renders above its exported mesh (textured, then shaded).

Row 1: the splat asset (`splatgen.render`); row 2: the .glb's mesh with its baked texture, unlit
(`splatgen.export.preview.render_mesh`); row 3: the same mesh's geometry, grey with one light.
Four views: front, right, back, left, 15 deg above the horizon. Default mesh options.

    .venv/bin/python scripts/mesh_figure.py assets/sample.ply docs/mesh-sample.png
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from splatgen.export import MeshOptions
from splatgen.export.mesh import mesh_from_gaussians
from splatgen.export.preview import render_mesh
from splatgen.io.ply import read_ply
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import evaluation_orbit
from splatgen.scene.gaussians import SPLAT_KEYS, activate

LIGHT = np.array([0.3, 0.8, 0.5]) / np.linalg.norm([0.3, 0.8, 0.5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("asset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=256, help="pixels per view")
    args = parser.parse_args()
    gaussians = read_ply(args.asset)
    mesh = mesh_from_gaussians(gaussians, MeshOptions(), log=print)
    cameras = evaluation_orbit(4, args.size, args.size)
    with torch.no_grad():
        splat = rasterize(
            activate({key: getattr(gaussians, key) for key in SPLAT_KEYS}), cameras, make_backgrounds("white", 4)
        )
    textured, _ = render_mesh(mesh, cameras)
    shade = 0.25 + 0.75 * np.clip(mesh.normals @ LIGHT, 0.0, 1.0)
    grey = replace(
        mesh, texture=None, uvs=None, vertex_colors=np.repeat((220 * shade)[:, None], 3, axis=1).astype(np.uint8)
    )
    shaded, _ = render_mesh(grey, cameras)
    rows = [torch.cat(list(images), dim=1) for images in (splat.images, textured, shaded)]
    picture = (torch.cat(rows, dim=0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    PIL.Image.fromarray(picture).save(args.out)
    print(f"wrote {args.out}: {len(mesh.faces):,} triangles")


if __name__ == "__main__":
    main()
