"""Writers: binary glTF 2.0 (.glb, one file) and Wavefront .obj + .mtl + .png (trimesh's exporters).

glTF 2.0 is +Y up with the asset's front towards +Z and metres as units (glTF 2.0 spec, 3.4
"Coordinate System and Units"), which is splatgen's world frame, so vertices are written as they
are. Textures use an unlit-looking PBR material (metallic 0, roughness 1); colours are the
renders' colours, lighting included. Every file is written atomically: a failure leaves the
previous files as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splatgen.export.mesh import ColoredMesh
from splatgen.io.atomic import write_bytes_atomic, write_text_atomic


def to_trimesh(mesh: ColoredMesh, material_name: str, for_obj: bool):
    import PIL.Image
    import trimesh

    result = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.normals, process=False)
    if mesh.texture is not None:
        image = PIL.Image.fromarray(mesh.texture)
        if for_obj:  # OBJ's Kd multiplies map_Kd: white keeps the texture's colours
            white = np.array([255, 255, 255, 255], dtype=np.uint8)
            material = trimesh.visual.material.SimpleMaterial(
                image=image, diffuse=white, ambient=white, specular=np.array([0, 0, 0, 255], dtype=np.uint8)
            )
            material.name = material_name
        else:
            material = trimesh.visual.material.PBRMaterial(
                name=material_name, baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0
            )
        result.visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
    elif mesh.vertex_colors is not None:
        result.visual = trimesh.visual.ColorVisuals(result, vertex_colors=mesh.vertex_colors)
    return result


def write_glb(mesh: ColoredMesh, path: Path) -> list[Path]:
    import trimesh

    data = trimesh.exchange.gltf.export_glb(
        trimesh.Scene(to_trimesh(mesh, path.stem, for_obj=False)), include_normals=True
    )
    write_bytes_atomic(path, data)
    return [path]


def write_obj(mesh: ColoredMesh, path: Path) -> list[Path]:
    """`path` (.obj), and beside it `<stem>.mtl` and `<stem>.png` when textured; returns every file written."""
    import trimesh

    text, files = trimesh.exchange.obj.export_obj(
        to_trimesh(mesh, path.stem, for_obj=True),
        include_normals=True,
        include_texture=True,
        return_texture=True,
        mtl_name=f"{path.stem}.mtl",
    )
    written = []
    for name, data in sorted(files.items(), key=lambda item: item[0].endswith(".mtl")):  # texture, then .mtl
        target = path.with_name(name)
        write_bytes_atomic(target, data)
        written.append(target)
    write_text_atomic(path, text)
    return [*written, path]


WRITERS = {".glb": write_glb, ".obj": write_obj}
