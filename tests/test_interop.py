"""splatgen's files against PlayCanvas splat-transform (the library behind SuperSplat's import/export).

The committed fixture `data/splat_transform/random_sh1.compressed.ply` was written by
splat-transform 2.7.1 from a 600-Gaussian SH-degree-1 splatgen PLY (`splat-transform a.ply
random_sh1.compressed.ply`), and `random_sh1.decoded.ply` is splat-transform's own decode of it
(`splat-transform random_sh1.compressed.ply random_sh1.decoded.ply`): splatgen's decoder must give
the same numbers. The live tests run splat-transform itself (`npm install @playcanvas/splat-transform`;
`scripts/test.sh` installs it into `.tools/`) and skip with the reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
from conftest import REPO
from test_ply import random_gaussians

from splatgen.cli import main
from splatgen.errors import BadAssetFile
from splatgen.io import read_asset
from splatgen.io.ply import read_ply, write_ply
from splatgen.io.splat import write_splat
from splatgen.scene.gaussians import Gaussians

FIXTURES = Path(__file__).resolve().parent / "data" / "splat_transform"
COMPRESSED = FIXTURES / "random_sh1.compressed.ply"
DECODED = FIXTURES / "random_sh1.decoded.ply"
KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def splat_transform() -> str | None:
    candidates = [os.environ.get("SPLAT_TRANSFORM"), shutil.which("splat-transform")]
    candidates.append(str(REPO / ".tools" / "node_modules" / ".bin" / "splat-transform"))
    return next((path for path in candidates if path and Path(path).is_file()), None)


needs_splat_transform = pytest.mark.skipif(
    splat_transform() is None or shutil.which("node") is None,
    reason="splat-transform is not installed (npm install @playcanvas/splat-transform, or bash scripts/install_splat_transform.sh)",
)


def run_splat_transform(*args: str | Path) -> None:
    subprocess.run([splat_transform(), "-q", "-w", *map(str, args)], check=True, capture_output=True, timeout=120)


def unit(quats: torch.Tensor) -> torch.Tensor:
    """Normalised with w >= 0 (q and -q are the same rotation)."""
    quats = torch.nn.functional.normalize(quats, dim=-1)
    return torch.where(quats[:, :1] < 0, -quats, quats)


def test_compressed_ply_decodes_like_splat_transform():
    ours, theirs = read_ply(COMPRESSED), read_ply(DECODED)
    assert len(ours) == 600 and ours.sh_degree == 1
    for key in KEYS:
        torch.testing.assert_close(getattr(ours, key), getattr(theirs, key), atol=1e-6, rtol=1e-6)


def test_compressed_ply_is_read_by_export_view_paths(tmp_path, capsys):
    assert main(["export", str(COMPRESSED), "--out", str(tmp_path / "plain.ply")]) == 0
    assert "600 Gaussians, SH degree 1" in capsys.readouterr().out
    torch.testing.assert_close(read_asset(tmp_path / "plain.ply").means, read_asset(COMPRESSED).means)


def test_a_damaged_compressed_ply_says_what_it_is(tmp_path):
    data = plyfile.PlyData.read(str(COMPRESSED))
    chunk = np.empty(data["chunk"].count, dtype=[("min_x", "f4"), ("max_x", "f4")])  # drops the other bounds
    for name in ("min_x", "max_x"):
        chunk[name] = data["chunk"].data[name]
    damaged = plyfile.PlyData([plyfile.PlyElement.describe(chunk, "chunk"), data["vertex"]])
    damaged.write(str(tmp_path / "bad.compressed.ply"))
    with pytest.raises(BadAssetFile, match="looks like a SuperSplat compressed PLY, but its chunk element lacks min_y"):
        read_asset(tmp_path / "bad.compressed.ply")


def nearest(reference: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """[Q] index of the nearest reference point for each query point."""
    return torch.cdist(query, reference).argmin(dim=1)


def compressible_gaussians(n: int = 700) -> Gaussians:
    gaussians = random_gaussians(n, 1, seed=11)
    gaussians.means.mul_(0.5)
    gaussians.scales.mul_(0.3).sub_(3.0)
    gaussians.sh0.mul_(0.5)
    gaussians.shN.mul_(0.2)
    return gaussians


@needs_splat_transform
def test_supersplat_load_rotation_turns_an_inria_file_into_splatgen_world(tmp_path):
    """SuperSplat rolls a PLY 180 deg about z on load (playcanvas/supersplat#451); splat-transform's
    `-r 0,0,180` is that rotation. Applied to splatgen's default file it gives splatgen's world frame
    (+y up, which is up in PlayCanvas too), so the asset stands upright in SuperSplat."""
    gaussians = compressible_gaussians()
    write_ply(tmp_path / "a.ply", gaussians)
    run_splat_transform(tmp_path / "a.ply", "-r", "0,0,180", tmp_path / "loaded.ply")
    loaded = read_ply(tmp_path / "loaded.ply", keep_file_frame=True)
    for key in ("means", "scales", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(loaded, key), getattr(gaussians, key), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(unit(loaded.quats), unit(gaussians.quats), atol=1e-6, rtol=1e-6)


@needs_splat_transform
def test_splat_transform_reads_the_ply_and_writes_it_back_identically(tmp_path):
    write_ply(tmp_path / "a.ply", compressible_gaussians())
    run_splat_transform(tmp_path / "a.ply", tmp_path / "b.ply")
    before, after = read_ply(tmp_path / "a.ply"), read_ply(tmp_path / "b.ply")
    for key in KEYS:
        assert torch.equal(getattr(before, key), getattr(after, key)), key


@needs_splat_transform
def test_compressed_ply_from_splat_transform_matches_the_source_within_its_quantisation(tmp_path):
    gaussians = compressible_gaussians()
    write_ply(tmp_path / "a.ply", gaussians)
    run_splat_transform(tmp_path / "a.ply", tmp_path / "a.compressed.ply")  # reorders the Gaussians
    decoded = read_asset(tmp_path / "a.compressed.ply")
    order = nearest(gaussians.means, decoded.means)
    assert len(set(order.tolist())) == len(gaussians)  # a one-to-one match
    source = gaussians.select(order)
    extent = gaussians.means.max(dim=0).values - gaussians.means.min(dim=0).values  # [3]
    assert ((decoded.means - source.means).abs() <= extent / 1023).all()  # 10-11 bit positions per chunk
    assert (torch.sigmoid(decoded.opacities) - torch.sigmoid(source.opacities)).abs().max() < 1 / 255
    assert (unit(decoded.quats) - unit(source.quats)).abs().max() < 5e-3


@needs_splat_transform
def test_splat_transform_reads_our_splat_file_the_way_we_do(tmp_path):
    gaussians = compressible_gaussians()
    write_splat(tmp_path / "a.splat", gaussians)
    run_splat_transform(tmp_path / "a.splat", tmp_path / "from_splat.ply")
    ours, theirs = read_asset(tmp_path / "a.splat"), read_ply(tmp_path / "from_splat.ply")
    order = nearest(ours.means, theirs.means)
    torch.testing.assert_close(theirs.means, ours.means[order], atol=0, rtol=0)
    torch.testing.assert_close(theirs.sh0, ours.sh0[order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs.scales, ours.scales[order], atol=1e-6, rtol=1e-6)
