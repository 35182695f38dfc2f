"""Asset frames: rotations between frames, the PLY header record, and that a frame change is only a
change of coordinates (the same camera, moved with the asset, renders the same image)."""

from __future__ import annotations

import dataclasses

import plyfile
import pytest
import torch
from conftest import REPO
from test_ply import assert_bit_exact, random_gaussians

from splatgen.cli import main
from splatgen.errors import BadAssetFile
from splatgen.io import read_asset
from splatgen.io.ply import read_ply, write_ply
from splatgen.io.splat import read_splat, write_splat
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import CameraBatch, evaluation_orbit
from splatgen.scene.frames import FRAMES, WORLD_FRAME, convert_frame, frame_rotation, sh_rotation
from splatgen.scene.gaussians import activate, sh0_to_rgb

SAMPLE = REPO / "assets" / "sample.ply"


def test_frames_are_proper_rotations_with_the_documented_up_axis():
    up = {"inria": [0.0, -1.0, 0.0], "opengl": [0.0, 1.0, 0.0], "blender": [0.0, 0.0, 1.0]}
    for name in FRAMES:
        rotation = frame_rotation(WORLD_FRAME, name)
        assert torch.allclose(rotation @ rotation.T, torch.eye(3, dtype=torch.float64))
        assert torch.linalg.det(rotation).item() == pytest.approx(1.0)
        assert rotation @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) == pytest.approx(
            torch.tensor(up[name], dtype=torch.float64)
        )


def test_half_turns_are_exact_signed_permutations_of_the_sh_coefficients():
    matrix = sh_rotation(frame_rotation(WORLD_FRAME, "inria"), 16)
    assert torch.equal(matrix, torch.diag(matrix.diagonal())) and set(matrix.diagonal().tolist()) == {1.0, -1.0}


@pytest.mark.parametrize("frame", ["inria", "opengl"])
def test_file_round_trip_through_a_half_turn_frame_is_bit_exact(tmp_path, frame):
    gaussians = random_gaussians(64, 3, seed=5)
    gaussians.means[0] = torch.tensor([-0.0, 1e-40, 3.4e38])
    write_ply(tmp_path / "a.ply", gaussians, frame=frame)
    assert_bit_exact(read_ply(tmp_path / "a.ply"), gaussians)


def test_blender_frame_round_trip_is_close_and_records_the_frame(tmp_path):
    gaussians = random_gaussians(64, 3, seed=6)
    report = write_ply(tmp_path / "b.ply", gaussians, frame="blender")
    assert report.frame == "blender" and "frame blender (+z up)" in report.summary()
    assert plyfile.PlyData.read(str(tmp_path / "b.ply")).comments == ["splatgen frame blender (+z up)"]
    back = read_ply(tmp_path / "b.ply")
    for key in ("means", "quats", "shN"):
        torch.testing.assert_close(getattr(back, key), getattr(gaussians, key), atol=1e-5, rtol=1e-5)
    stored = read_ply(tmp_path / "b.ply", keep_file_frame=True)
    torch.testing.assert_close(stored.means[:, 2], gaussians.means[:, 1])  # world +y is the file's +z


def moved_cameras(cameras: CameraBatch, rotation: torch.Tensor) -> CameraBatch:
    """The cameras carried along with an asset rotated by `rotation` (world-to-camera times R^T)."""
    transform = torch.eye(4)
    transform[:3, :3] = rotation.float()
    return dataclasses.replace(cameras, viewmats=cameras.viewmats @ transform.T)


@pytest.mark.parametrize("frame", ["inria", "blender"])
def test_a_frame_change_renders_the_same_image_from_the_moved_camera(frame):
    """Positions, rotations and every SH band move together: view-dependent colour included."""
    gaussians = random_gaussians(300, 3, seed=2)
    gaussians.means.mul_(0.4)
    gaussians.scales.fill_(-3.0)
    gaussians.shN.mul_(0.3)
    cameras = evaluation_orbit(num_views=3, width=48, height=48, elevation_deg=25.0, distance=2.5)
    backgrounds = make_backgrounds("white", len(cameras))
    expected = rasterize(activate(gaussians.to_parameters()), cameras, backgrounds, "torch").images
    rotated = convert_frame(gaussians, WORLD_FRAME, frame)
    rotation = frame_rotation(WORLD_FRAME, frame)
    actual = rasterize(activate(rotated.to_parameters()), moved_cameras(cameras, rotation), backgrounds, "torch").images
    assert expected.std() > 0.05  # the picture is not blank
    torch.testing.assert_close(actual, expected, atol=2e-4, rtol=0)


def test_a_file_without_a_frame_record_is_read_as_inria(tmp_path):
    gaussians = random_gaussians(8, 0)
    write_ply(tmp_path / "a.ply", gaussians, frame="inria")
    data = plyfile.PlyData.read(str(tmp_path / "a.ply"))
    plyfile.PlyData(data.elements, text=False, byte_order="<").write(str(tmp_path / "bare.ply"))  # no comment
    assert_bit_exact(read_ply(tmp_path / "bare.ply"), gaussians)


def test_an_unknown_frame_in_the_header_is_one_line(tmp_path):
    write_ply(tmp_path / "a.ply", random_gaussians(4, 0))
    data = plyfile.PlyData.read(str(tmp_path / "a.ply"))
    plyfile.PlyData(data.elements, comments=["splatgen frame sideways"]).write(str(tmp_path / "odd.ply"))
    with pytest.raises(BadAssetFile, match="unknown frame 'sideways'"):
        read_ply(tmp_path / "odd.ply")


def test_splat_files_are_written_in_the_chosen_frame(tmp_path):
    gaussians = random_gaussians(16, 0, seed=3)
    write_splat(tmp_path / "a.splat", gaussians)
    write_splat(tmp_path / "b.splat", gaussians, frame="opengl")
    inria, opengl = read_splat(tmp_path / "a.splat"), read_splat(tmp_path / "b.splat", frame="opengl")
    torch.testing.assert_close(inria.means, opengl.means, atol=0, rtol=0)
    raw = read_splat(tmp_path / "a.splat", frame="opengl")  # the stored coordinates
    assert torch.equal(raw.means[:, 2], opengl.means[:, 2]) and not torch.equal(raw.means, opengl.means)


def test_export_converts_between_frames(tmp_path, capsys):
    assert main(["export", str(SAMPLE), "--out", str(tmp_path / "z_up.ply"), "--frame", "blender"]) == 0
    assert "frame blender (+z up)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "z_up.ply"), "--out", str(tmp_path / "back.ply")]) == 0
    assert plyfile.PlyData.read(str(tmp_path / "back.ply")).comments == ["splatgen frame inria (-y up)"]
    torch.testing.assert_close(read_asset(tmp_path / "back.ply").means, read_asset(SAMPLE).means, atol=1e-6, rtol=0)


def test_sample_asset_reads_upright_in_the_world_frame():
    """The sample's face: white eyes above a red smile, so in the world frame (+y up) eyes have larger y."""
    gaussians = read_asset(SAMPLE)
    rgb, means = sh0_to_rgb(gaussians.sh0[:, 0]), gaussians.means  # [N, 3] each
    front = means[:, 2] > 0.3
    white = front & (rgb.min(dim=1).values > 0.8)
    red = front & (rgb[:, 0] > 0.6) & (rgb[:, 1] < 0.35) & (rgb[:, 2] < 0.35)
    assert white.sum() > 10 and red.sum() > 50
    assert means[white, 1].mean() > means[red, 1].mean() + 0.15
