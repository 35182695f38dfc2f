"""Mesh export: density field, triangle rasterizer, the sample asset's mesh against its splat renders,
glTF orientation, Khronos' glTF validator, .obj round trip, bad input, `train --export-mesh`."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from splatgen.cli import main
from splatgen.export import MeshError, MeshOptions
from splatgen.export.density import FILTER_VOXELS, density_grid
from splatgen.export.mesh import finite_gaussians, mesh_from_gaussians
from splatgen.export.preview import render_mesh
from splatgen.export.triangles import rasterize_triangles
from splatgen.export.writers import write_glb, write_obj
from splatgen.io.ply import read_ply, write_ply
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import evaluation_orbit
from splatgen.scene.gaussians import SPLAT_KEYS, Gaussians, activate

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "assets" / "sample.ply"
# lighter than the defaults (the defaults are timed by scripts/bench_mesh.py), same pipeline
TEST_OPTIONS = MeshOptions(resolution=96, faces=15_000, texture_size=512, bake_views=8, bake_size=192)
GLTF_VALIDATOR = "gltf-validator@2.0.0-dev.3.10"

pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def sample_mesh(tmp_path_factory):
    """The sample asset meshed once; written as .glb and as .obj."""
    gaussians = read_ply(SAMPLE)
    mesh = mesh_from_gaussians(gaussians, TEST_OPTIONS)
    folder = tmp_path_factory.mktemp("mesh")
    write_glb(mesh, folder / "sample.glb")
    write_obj(mesh, folder / "sample.obj")
    return gaussians, mesh, folder


def read_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON chunk and the binary chunk of a .glb (glTF 2.0 spec, 4.4 "GLB File Format")."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert magic == b"glTF" and version == 2 and length == len(data)
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    document = json.loads(data[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<I4s", data, 20 + json_length)
    assert bin_type == b"BIN\0"
    return document, data[28 + json_length : 28 + json_length + bin_length]


def accessor_array(document: dict, binary: bytes, index: int) -> np.ndarray:
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[accessor["componentType"]]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[accessor["type"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    return np.frombuffer(binary, dtype=dtype, count=accessor["count"] * width, offset=start).reshape(-1, width)


def test_density_matches_brute_force_sum():
    """Box-splatted density = sum_i o_i exp(-0.5 d^T (Sigma_i + (voxel/2)^2 I)^-1 d) at every voxel, up to the 3-sigma cut."""
    generator = torch.Generator().manual_seed(0)
    count = 12
    gaussians = Gaussians(
        means=0.4 * torch.randn(count, 3, generator=generator),
        scales=torch.log(0.03 + 0.1 * torch.rand(count, 3, generator=generator)),
        quats=torch.randn(count, 4, generator=generator),
        opacities=torch.randn(count, generator=generator),
        sh0=torch.zeros(count, 1, 3),
        shN=torch.zeros(count, 0, 3),
    )
    grid = density_grid(gaussians, resolution=24, min_opacity=0.0)
    index = np.stack(np.meshgrid(*(np.arange(n) for n in grid.values.shape), indexing="ij"), axis=-1).reshape(-1, 3)
    points = torch.from_numpy(grid.to_world(index)).float()  # [P, 3]
    activated = activate({key: getattr(gaussians, key) for key in SPLAT_KEYS})
    rotations = torch.stack([quat_to_matrix(q) for q in activated.quats])  # [N, 3, 3]
    covars = rotations @ torch.diag_embed(activated.scales**2) @ rotations.transpose(1, 2)
    covars = covars + (FILTER_VOXELS * grid.voxel) ** 2 * torch.eye(3)
    delta = points[:, None, :] - activated.means[None]  # [P, N, 3]
    mahalanobis = torch.einsum("pni,nij,pnj->pn", delta, torch.linalg.inv(covars), delta)
    reference = (activated.opacities * torch.exp(-0.5 * mahalanobis)).sum(dim=1).reshape(grid.values.shape)
    ours = torch.from_numpy(grid.values)
    assert reference.max() > 0.5
    # outside a Gaussian's 3-sigma box its terms are left out: at most exp(-4.5) = 1.1 % of its opacity each
    assert (ours - reference).abs().max() < count * math.exp(-4.5)
    torch.testing.assert_close(ours[ours > 0.2], reference[ours > 0.2], atol=0.03, rtol=0.03)


def quat_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a unit quaternion w, x, y, z (the textbook formula)."""
    w, x, y, z = quat.tolist()
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_triangle_rasterizer_matches_point_in_triangle_and_z_buffer():
    """Random overlapping triangles: coverage by pixel-centre tests and the nearest depth, brute force."""
    generator = torch.Generator().manual_seed(1)
    width, height, count = 37, 29, 40
    corners = torch.rand(count, 3, 2, generator=generator) * torch.tensor([width, height]) * 1.2 - 2
    depths = 1 + torch.rand(count, 3, generator=generator)
    coverage = rasterize_triangles(corners, width, height, depths=depths)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2).double() + 0.5  # [P, 2]
    a, b, c = corners.double().unbind(1)  # [F, 2] each

    def edge(p, q, r):  # [F] x [P] -> [P, F]
        return (q[None, :, 0] - p[None, :, 0]) * (r[:, None, 1] - p[None, :, 1]) - (q[None, :, 1] - p[None, :, 1]) * (
            r[:, None, 0] - p[None, :, 0]
        )

    doubled = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])  # [F]
    weights = torch.stack([edge(b, c, centres), edge(c, a, centres)], dim=-1) / doubled[None, :, None]
    weights = torch.cat([weights, 1 - weights.sum(-1, keepdim=True)], dim=-1)  # [P, F, 3]
    inside = (weights >= -1e-9).all(dim=-1)
    inverse_depth = (weights / depths.double()[None]).sum(-1)  # perspective-correct 1/z
    depth = torch.where(inside, 1 / inverse_depth, torch.inf)
    nearest = depth.argmin(dim=1)
    expected_face = torch.where(inside.any(dim=1), nearest, -1).reshape(height, width)
    assert (expected_face >= 0).float().mean() > 0.5
    assert torch.equal(coverage.face, expected_face)
    hit = expected_face.reshape(-1) >= 0
    picked = weights[hit, nearest[hit]] / depths.double()[nearest[hit]]
    torch.testing.assert_close(
        coverage.barycentric.reshape(-1, 3)[hit].double(), picked / picked.sum(-1, keepdim=True), atol=1e-5, rtol=0
    )


def test_mesh_silhouette_and_colours_match_the_splat_renders(sample_mesh):
    """8 views at 128x128: IoU of the mesh's coverage with splat alpha > 0.5 >= 0.9, PSNR inside both >= 20 dB."""
    gaussians, mesh, _ = sample_mesh
    cameras = evaluation_orbit(8, 128, 128)
    with torch.no_grad():
        splat = rasterize(
            activate({key: getattr(gaussians, key) for key in SPLAT_KEYS}), cameras, make_backgrounds("white", 8)
        )
    images, coverage = render_mesh(mesh, cameras)
    splat_mask, mesh_mask = splat.alphas[..., 0] > 0.5, coverage[..., 0] > 0.5
    for view in range(8):
        both = splat_mask[view] & mesh_mask[view]
        iou = float(both.sum() / (splat_mask[view] | mesh_mask[view]).sum())
        psnr = float(-10 * torch.log10(((images[view] - splat.images[view]) ** 2)[both].mean()))
        assert iou >= 0.9 and psnr >= 20.0, (view, iou, psnr)


def test_glb_is_oriented_as_gltf_expects(sample_mesh):
    """Read back from the .glb itself: up +Y (eyes above the mouth), front +Z (nose), the spike to -Z."""
    document, binary = read_glb(sample_mesh[2] / "sample.glb")
    assert document["asset"]["version"] == "2.0"
    primitive = document["meshes"][0]["primitives"][0]
    positions = accessor_array(document, binary, primitive["attributes"]["POSITION"])
    texcoords = accessor_array(document, binary, primitive["attributes"]["TEXCOORD_0"])
    assert "nodes" not in document or all("matrix" not in node and "rotation" not in node for node in document["nodes"])
    image = document["images"][0]
    view = document["bufferViews"][image["bufferView"]]
    import io

    import PIL.Image

    png = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
    texture = np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32) / 255.0

    def colour_near(point: tuple[float, float, float]) -> np.ndarray:
        vertex = np.argmin(np.linalg.norm(positions - np.array(point), axis=1))
        s, t = texcoords[vertex]  # glTF: (0, 0) is the image's top-left corner
        return texture[
            min(int(t * texture.shape[0]), texture.shape[0] - 1), min(int(s * texture.shape[1]), texture.shape[1] - 1)
        ]

    assert positions[:, 2].min() < -1.15 and positions[:, 2].max() < 0.95  # spike on -Z, nose (0.85) on +Z
    assert abs(positions[:, 1].max() + positions[:, 1].min()) < 0.1  # the body is centred on y = 0

    def on_body(x: float, y: float) -> tuple[float, float, float]:  # the sample's body: radius 0.75, front +z
        return (0.75 * x, 0.75 * y, 0.75 * math.sqrt(1 - x * x - y * y))

    eye_white, pupil, mouth, nose = on_body(0.42, 0.25), on_body(0.3, 0.22), on_body(0.0, -0.42), (0.0, 0.0, 0.85)
    assert (colour_near(eye_white) > 0.7).all()  # scripts/make_sample_asset.py: eyes above ...
    assert (colour_near(pupil) < 0.35).all()
    red = colour_near(mouth)  # ... the mouth
    assert red[0] > 0.45 and red[1] < 0.3 and red[2] < 0.3
    orange = colour_near(nose)
    assert orange[0] > 0.6 and 0.2 < orange[1] < 0.6 and orange[2] < 0.3


def gltf_validator() -> Path:
    """Khronos' glTF-Validator from npm, installed once into a cache folder."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm/node not found: cannot install Khronos' gltf-validator")
    cache = Path(os.environ.get("SPLATGEN_NPM_CACHE", Path(tempfile.gettempdir()) / "splatgen-test-npm"))
    package = cache / "node_modules" / "gltf-validator"
    if not package.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", GLTF_VALIDATOR],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install {GLTF_VALIDATOR}: {done.stderr.strip().splitlines()[-1:]}")
    return package


def test_glb_passes_khronos_gltf_validator(sample_mesh):
    package = gltf_validator()
    script = (
        "const v = require(process.argv[1]); const fs = require('fs');"
        "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))"
        ".then(r => console.log(JSON.stringify(r.issues)), e => { console.error(e); process.exit(1); });"
    )
    done = subprocess.run(
        ["node", "-e", script, str(package), str(sample_mesh[2] / "sample.glb")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    issues = json.loads(done.stdout)
    errors = [message for message in issues["messages"] if message["severity"] == 0]
    assert issues["numErrors"] == 0, errors


def test_obj_mtl_and_texture_round_trip_through_trimesh(sample_mesh):
    import trimesh

    _, mesh, folder = sample_mesh
    assert {path.name for path in folder.iterdir()} >= {"sample.obj", "sample.mtl", "sample.png"}
    loaded = trimesh.load(folder / "sample.obj", process=False, force="mesh")
    assert len(loaded.faces) == len(mesh.faces)
    assert isinstance(loaded.visual, trimesh.visual.TextureVisuals)
    texture = np.asarray(loaded.visual.material.image.convert("RGB"))
    np.testing.assert_array_equal(texture, mesh.texture)
    # same corners, same texture coordinates (OBJ keeps 8 digits)
    ours = mesh.vertices[mesh.faces].reshape(-1, 3)
    theirs = np.asarray(loaded.vertices)[loaded.faces].reshape(-1, 3)
    np.testing.assert_allclose(theirs, ours, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(loaded.visual.uv)[loaded.faces].reshape(-1, 2), mesh.uvs[mesh.faces].reshape(-1, 2), atol=1e-6
    )


def test_cli_writes_a_vertex_coloured_glb(tmp_path, capsys):
    out = tmp_path / "sample.glb"
    status = main(
        ["export", str(SAMPLE), "--out", str(out), "--appearance", "vertex", "--resolution", "48", "--bake-views", "4",
         "--bake-size", "64"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().out
    document, binary = read_glb(out)
    primitive = document["meshes"][0]["primitives"][0]
    colors = (
        accessor_array(document, binary, primitive["attributes"]["COLOR_0"])
        if "COLOR_0" in primitive["attributes"]
        else None
    )
    assert colors is not None and len(colors) == document["accessors"][primitive["attributes"]["POSITION"]]["count"]
    assert "triangles" in capsys.readouterr().out


def write_asset(path: Path, gaussians: Gaussians) -> Path:
    write_ply(path, gaussians)
    return path


@pytest.mark.parametrize(
    ("change", "arguments", "message"),
    [
        ("transparent", [], "empty or transparent"),
        ("nan", [], "NaN/Inf"),
        ("none", ["--resolution", "2048"], "lower --resolution"),
        ("none", ["--iso", "1000"], "never reaches --iso"),
        ("none", ["--faces", "3"], "--faces must be"),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_output_untouched(
    tmp_path, capsys, monkeypatch, change, arguments, message
):
    gaussians = read_ply(SAMPLE)
    if change == "transparent":
        gaussians = replace(gaussians, opacities=torch.full_like(gaussians.opacities, -12.0))
    source = tmp_path / "asset.ply"
    if change == "nan":  # write_ply refuses NaN: write the file by hand through plyfile
        write_ply(source, gaussians)
        from plyfile import PlyData

        ply = PlyData.read(str(source), mmap=False)
        for name in ("x", "y", "z"):
            ply["vertex"].data[name] = np.nan
        ply.write(str(source))
    else:
        write_asset(source, gaussians)
    if "--resolution" in arguments:  # a machine with 20 GiB free: a 2048^3 grid needs ~256 GiB
        monkeypatch.setattr("splatgen.export.density.available_memory", lambda: 20 * 2**30)
    out = tmp_path / "asset.glb"
    out.write_bytes(b"previous")
    status = main(["export", str(source), "--out", str(out), *arguments])
    printed = capsys.readouterr().out
    assert status == 2 and message in printed, printed
    assert len(printed.strip().splitlines()) == 1, printed
    assert out.read_bytes() == b"previous"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["asset.glb", "asset.ply"]  # no temporary files left


def test_rows_with_nan_are_dropped_and_counted():
    gaussians = read_ply(SAMPLE)
    means = gaussians.means.clone()
    means[:7, 1] = float("nan")
    kept, dropped = finite_gaussians(replace(gaussians, means=means))
    assert dropped == 7 and len(kept) == len(gaussians) - 7 and torch.isfinite(kept.means).all()
    everything = replace(gaussians, means=torch.full_like(means, float("nan")))
    with pytest.raises(MeshError, match="NaN/Inf"):
        finite_gaussians(everything)


def test_unknown_suffix_names_every_format(tmp_path, capsys):
    out = tmp_path / "asset.fbx"
    assert main(["export", str(SAMPLE), "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert ".ply, .splat, .glb, .obj" in printed and not out.exists()


def test_train_export_mesh_writes_a_glb_beside_the_ply_on_ctrl_c(tmp_path, tiny_models):
    from splatgen.io.config_file import from_dict, load_yaml
    from splatgen.train.config import TrainConfig
    from splatgen.train.loop import train
    from splatgen.viewer import ViewerConfig

    config = replace(
        from_dict(TrainConfig, load_yaml(REPO / "splatgen" / "presets" / "smoke.yaml")),
        prompt="a red apple",
        out=tmp_path / "apple",
        steps=4,
        video_frames=0,
        viewer=ViewerConfig(enabled=False),
        export_mesh=True,
        mesh=MeshOptions(resolution=48, faces=5000, texture_size=128, bake_views=4, bake_size=64),
    )

    def interrupt(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    result = train(config, console=Console(file=open(os.devnull, "w")), on_step=interrupt)
    assert result.interrupted
    document, _ = read_glb(result.ply_path.with_suffix(".glb"))
    assert document["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"] is not None


def test_a_mesh_is_upright_whatever_frame_its_input_was_written_in(tmp_path, capsys):
    """Reading undoes the input's recorded frame, so a +z-up (blender) PLY meshes to the same +Y-up glTF."""
    fast = ["--appearance", "vertex", "--resolution", "48", "--bake-views", "4", "--bake-size", "64"]
    z_up = tmp_path / "sample_zup.ply"
    assert main(["export", str(SAMPLE), "--out", str(z_up), "--frame", "blender"]) == 0
    stored = read_ply(z_up, keep_file_frame=True).means  # [N, 3] as the file holds them: (x, -z, y) of the world's
    np.testing.assert_allclose(stored[:, 2].numpy(), read_ply(SAMPLE).means[:, 1].numpy(), atol=1e-6)  # up is +z
    positions = {}
    for name, source in (("world", SAMPLE), ("zup", z_up)):
        assert main(["export", str(source), "--out", str(tmp_path / f"{name}.glb"), *fast]) == 0, capsys.readouterr()
        document, binary = read_glb(tmp_path / f"{name}.glb")
        primitive = document["meshes"][0]["primitives"][0]
        positions[name] = accessor_array(document, binary, primitive["attributes"]["POSITION"])
    assert positions["zup"].shape == positions["world"].shape
    np.testing.assert_allclose(positions["zup"], positions["world"], atol=1e-4)


def test_an_asset_frame_for_a_mesh_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "sample.glb"
    assert main(["export", str(SAMPLE), "--out", str(out), "--frame", "inria"]) == 2
    printed = capsys.readouterr().out
    assert "always +y up" in printed and len(printed.strip().splitlines()) == 1
    assert not out.exists()
