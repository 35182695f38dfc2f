"""Turntable video, views grid, and the shipped sample asset (rendered with the torch backend on CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

import splatgen.render.turntable as media
from splatgen.errors import SplatgenError
from splatgen.io import read_ply
from splatgen.scene.gaussians import Gaussians

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "sample.ply"
RENDER = dict(resolution=32, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def sample() -> Gaussians:
    return read_ply(SAMPLE)


def load_sample_script():
    spec = importlib.util.spec_from_file_location("make_sample_asset", REPO / "scripts" / "make_sample_asset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_turntable_writes_mp4_and_views(sample: Gaussians, tmp_path: Path) -> None:
    calls = []
    result = media.render_turntable(
        sample,
        tmp_path / "out",
        num_frames=8,
        grid_views=4,
        grid_columns=2,
        progress=lambda *a: calls.append(a),
        **RENDER,
    )
    assert result.video == tmp_path / "out" / "turntable.mp4" and result.note == ""
    data = result.video.read_bytes()
    assert len(data) > 1000 and data[4:8] == b"ftyp"
    reader = imageio.get_reader(result.video, format="FFMPEG")
    frames = [frame for frame in reader]
    reader.close()
    assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    with Image.open(result.views) as views:
        assert views.format == "PNG" and views.size == (64, 64)
    assert calls[-1] == (8, 8)  # grid reused turntable frames: nothing rendered twice
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["turntable.mp4", "views.png"]


def test_front_and_back_of_the_sample_differ(sample: Gaussians, tmp_path: Path) -> None:
    """The sample asset is yellow with a face on +z and blue on the back; azimuth 0 must show the front."""
    result = media.render_turntable(
        sample, tmp_path, num_frames=4, grid_views=2, grid_columns=2, labels=False, **RENDER
    )
    views = np.asarray(Image.open(result.views).convert("RGB"), dtype=np.float32)  # [32, 64, 3]
    front, back = views[8:24, 8:24], views[8:24, 40:56]  # tile centres
    assert front[..., 0].mean() > front[..., 2].mean() + 0.3 * 255  # yellow
    assert back[..., 2].mean() > back[..., 0].mean() + 0.2 * 255  # blue


def test_grid_rendered_separately_when_frames_do_not_divide(sample: Gaussians, tmp_path: Path) -> None:
    calls = []
    result = media.render_turntable(
        sample,
        tmp_path,
        num_frames=3,
        grid_views=4,
        grid_columns=4,
        background="black",
        progress=lambda *a: calls.append(a),
        **RENDER,
    )
    assert calls[-1] == (7, 7)
    with Image.open(result.views) as views:
        assert views.size == (128, 32)


def test_gif_fallback_without_ffmpeg(sample: Gaussians, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "ffmpeg_executable", lambda: None)
    result = media.render_turntable(sample, tmp_path, num_frames=4, grid_views=2, **RENDER)
    assert result.video.name == "turntable.gif" and "GIF" in result.note and "GIF" in result.summary()
    with Image.open(result.video) as gif:
        assert gif.n_frames == 4 and gif.size == (32, 32)


def test_settings_are_checked_and_resolution_rounded(sample: Gaussians, tmp_path: Path) -> None:
    small = sample.select(torch.arange(len(sample)) % 10 == 0)
    result = media.render_turntable(small, tmp_path, num_frames=2, grid_views=2, resolution=20, device="cpu")
    assert result.resolution == 32 and "rounded up to 32" in result.note
    for bad in (dict(num_frames=0), dict(resolution=8), dict(background="grey"), dict(fps=0), dict(chunk_size=0)):
        with pytest.raises(SplatgenError, match="render:"):
            media.render_turntable(small, tmp_path / "bad", **{"device": "cpu", **bad})
    assert not (tmp_path / "bad").exists()


def test_cpu_defaults_are_cheap() -> None:
    defaults = media.device_defaults(torch.device("cpu"))
    assert defaults.resolution <= 256 and defaults.num_frames <= 64
    assert defaults.num_frames % 8 == 0  # the default 8-view grid reuses turntable frames
    assert media.device_defaults(torch.device("cuda")).resolution == 512


def test_sample_asset_is_small_and_matches_the_script(sample: Gaussians, tmp_path: Path) -> None:
    assert SAMPLE.stat().st_size < 1_000_000
    assert 2000 <= len(sample) <= 4000 and sample.sh_degree == 0
    assert torch.sigmoid(sample.opacities).min() > 0.85
    rebuilt = load_sample_script().make_sample_asset(count=len(sample), seed=0)
    torch.testing.assert_close(rebuilt.means, sample.means, rtol=0, atol=1e-6)
    torch.testing.assert_close(rebuilt.sh0, sample.sh0, rtol=0, atol=1e-6)
    radius = sample.means.norm(dim=1)
    assert radius.max() < 1.5 and sample.means[:, 2].min() < -1.0  # the spike sticks out of the back
