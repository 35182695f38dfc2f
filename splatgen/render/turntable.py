"""Turntable video and a grid of views of a Gaussian asset: what `splatgen render` and a finished
training run leave behind.

    render_turntable(gaussians, out_dir)  ->  out_dir/turntable.mp4 and out_dir/views.png

The cameras are `splatgen.cameras.evaluation_orbit` (azimuth 0 = the front, elevation 15 deg,
distance 2.75, vertical field of view 50 deg); the Gaussians go through `splatgen.scene.activate`
and `splatgen.render.rasterize`, a chunk of cameras at a time so memory stays bounded.

Defaults depend on the device, because the pure-torch rasterizer is slow (about 0.2 s per
64 x 64 frame for 2k Gaussians on two cores):

    CUDA (gsplat):  512 px, 120 frames (4 s at 30 fps), 16 cameras per chunk
    CPU  (torch):   256 px,  64 frames (~2 s at 30 fps),  4 cameras per chunk

With a frame count divisible by the number of grid views (both defaults are) the grid reuses
turntable frames instead of rendering again. The video is H.264 (libx264, yuv420p, +faststart)
so browsers play it; if no ffmpeg executable is found, a GIF (`turntable.gif`) is written
instead and the result says so. Every file is written atomically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from splatgen.errors import SplatgenError
from splatgen.io.atomic import atomic_path
from splatgen.render import Backend, make_backgrounds, rasterize
from splatgen.scene.cameras import CameraBatch, evaluation_orbit
from splatgen.scene.gaussians import SPLAT_KEYS, ActivatedGaussians, Gaussians, activate

MAX_FRAMES = 3600  # two minutes at 30 fps; more is a typo, not a turntable
MAX_RESOLUTION = 4096  # a 4096 px RGB frame is 50 MB before encoding
VIDEO_NAME = "turntable.mp4"
GIF_NAME = "turntable.gif"
VIEWS_NAME = "views.png"
MACRO_BLOCK = 16  # H.264 players want frame sizes that are multiples of 16


@dataclass(frozen=True)
class DeviceDefaults:
    resolution: int
    num_frames: int
    chunk_size: int


CUDA_DEFAULTS = DeviceDefaults(resolution=512, num_frames=120, chunk_size=16)
CPU_DEFAULTS = DeviceDefaults(resolution=256, num_frames=64, chunk_size=4)


@dataclass(frozen=True)
class TurntableResult:
    video: Path  # turntable.mp4, or turntable.gif without ffmpeg
    views: Path  # views.png
    num_frames: int
    resolution: int
    seconds: float
    note: str  # "" or what was changed (GIF fallback, rounded resolution)

    def summary(self) -> str:
        line = f"wrote {self.video} ({self.num_frames} frames, {self.resolution} px) and {self.views} in {self.seconds:.1f} s"
        return f"{line}; {self.note}" if self.note else line


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_defaults(device: torch.device) -> DeviceDefaults:
    return CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS


def ffmpeg_executable() -> str | None:
    """The ffmpeg binary imageio-ffmpeg would use (bundled or on PATH), or None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def activate_on(gaussians: Gaussians, device: torch.device) -> ActivatedGaussians:
    """Activated float32 Gaussians on `device`, leaving out rows with NaN/Inf (they would blank pixels)."""
    gaussians = gaussians.select(gaussians.finite_mask())
    splats = {key: getattr(gaussians, key).detach().to(device, torch.float32) for key in SPLAT_KEYS}
    return activate(splats)


def render_frames(
    gaussians: ActivatedGaussians,
    cameras: CameraBatch,
    background: torch.Tensor,
    backend: Backend,
    chunk_size: int,
) -> Iterator[np.ndarray]:
    """Yield one uint8 [H, W, 3] image per camera, rendering `chunk_size` cameras at a time.

    `background` is one colour [3].
    """
    device = gaussians.means.device
    for start in range(0, len(cameras), chunk_size):
        chunk = cameras.select(slice(start, start + chunk_size)).to(device)
        backgrounds = background.to(device).expand(len(chunk), 3)  # [C, 3]
        with torch.no_grad():
            images = rasterize(gaussians, chunk, backgrounds, backend=backend).images  # [C, H, W, 3]
        pixels = (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
        yield from pixels


def view_label(azimuth_deg: float) -> str:
    azimuth = round(azimuth_deg) % 360
    return {0: "front", 180: "back"}.get(azimuth, f"az {azimuth}")


def views_grid(
    images: list[np.ndarray], azimuths: list[float], columns: int, labels: bool, background: str
) -> Image.Image:
    """Tile equal-size [H, W, 3] images row by row; optional azimuth labels in each tile's corner."""
    height, width = images[0].shape[:2]
    rows = math.ceil(len(images) / columns)
    fill = (255, 255, 255) if background == "white" else (0, 0, 0)
    grid = Image.new("RGB", (columns * width, rows * height), fill)
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=max(10, height // 16))
    ink = (0, 0, 0) if background == "white" else (255, 255, 255)
    for index, (image, azimuth) in enumerate(zip(images, azimuths)):
        left, top = (index % columns) * width, (index // columns) * height
        grid.paste(Image.fromarray(image), (left, top))
        if labels:
            draw.text((left + 4, top + 2), view_label(azimuth), fill=ink, font=font)
    return grid


def _report_progress(
    frames: Iterator[np.ndarray],
    progress: Callable[[int, int], None] | None,
    offset: int,
    total: int,
) -> Iterator[np.ndarray]:
    for done, frame in enumerate(frames, start=offset + 1):
        if progress is not None:
            progress(done, total)
        yield frame


def _keep_every(frames: Iterator[np.ndarray], step: int, kept: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Pass frames through, appending every `step`-th one (from the first) to `kept`."""
    for index, frame in enumerate(frames):
        if index % step == 0:
            kept.append(frame)
        yield frame


def _write_video(out_dir: Path, frames: Iterator[np.ndarray], fps: float) -> tuple[Path, str]:
    """turntable.mp4 with ffmpeg, else turntable.gif; returns the path and a note ("" for MP4)."""
    if ffmpeg_executable() is not None:
        _write_mp4(out_dir / VIDEO_NAME, frames, fps)
        return out_dir / VIDEO_NAME, ""
    _write_gif(out_dir / GIF_NAME, frames, fps)
    return out_dir / GIF_NAME, "ffmpeg not found: wrote a GIF instead of an MP4"


def _write_mp4(path: Path, frames: Iterator[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    with atomic_path(path) as temporary:
        writer = imageio.get_writer(
            temporary,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=8,
            macro_block_size=MACRO_BLOCK,
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"],
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()


def _write_gif(path: Path, frames: Iterator[np.ndarray], fps: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    with atomic_path(path) as temporary:
        images[0].save(
            temporary, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )


def _write_png(path: Path, image: Image.Image) -> None:
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def _validate(
    num_frames: int, resolution: int, fps: float, background: str, grid_views: int, grid_columns: int, chunk_size: int
) -> None:
    checks = [
        (1 <= num_frames <= MAX_FRAMES, f"num_frames must be in 1..{MAX_FRAMES}, got {num_frames}"),
        (
            MACRO_BLOCK <= resolution <= MAX_RESOLUTION,
            f"resolution must be in {MACRO_BLOCK}..{MAX_RESOLUTION} px, got {resolution}",
        ),
        (fps > 0, f"fps must be > 0, got {fps}"),
        (background in ("white", "black"), f"background must be 'white' or 'black', got {background!r}"),
        (
            grid_views >= 1 and grid_columns >= 1,
            f"grid_views and grid_columns must be >= 1, got {grid_views}, {grid_columns}",
        ),
        (chunk_size >= 1, f"chunk_size must be >= 1, got {chunk_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise SplatgenError(f"render: {message}")


def render_turntable(
    gaussians: Gaussians,
    out_dir: str | Path,
    num_frames: int | None = None,
    resolution: int | None = None,
    fps: float = 30.0,
    background: Literal["white", "black"] = "white",
    backend: Backend = "auto",
    device: torch.device | str | None = None,
    grid_views: int = 8,
    grid_columns: int = 4,
    labels: bool = True,
    elevation_deg: float = 15.0,
    distance: float = 2.75,
    fovy_deg: float = 50.0,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TurntableResult:
    """Write `out_dir/turntable.mp4` (a full orbit from the front) and `out_dir/views.png`.

    num_frames, resolution, chunk_size: None picks the device default (module docstring).
    resolution is the square frame size, rounded up to a multiple of 16 for H.264.
    grid_views: views evenly spaced in azimuth from the front, tiled `grid_columns` per row.
    progress: called as progress(frames_done, frames_total) after each frame.
    Raises `SplatgenError` for invalid settings or an unwritable `out_dir`; a failed write
    leaves any previous file in place.
    """
    started = time.perf_counter()
    device = torch.device(device) if device is not None else default_device()
    defaults = device_defaults(device)
    num_frames = defaults.num_frames if num_frames is None else num_frames
    resolution = defaults.resolution if resolution is None else resolution
    chunk_size = defaults.chunk_size if chunk_size is None else chunk_size
    _validate(num_frames, resolution, fps, background, grid_views, grid_columns, chunk_size)
    notes = []
    if resolution % MACRO_BLOCK:
        rounded = MACRO_BLOCK * math.ceil(resolution / MACRO_BLOCK)
        notes.append(f"resolution {resolution} rounded up to {rounded}")
        resolution = rounded

    out_dir = Path(out_dir)
    activated = activate_on(gaussians, device)
    background_rgb = make_backgrounds(background, 1)[0]  # [3]
    orbit = dict(elevation_deg=elevation_deg, distance=distance, fovy_deg=fovy_deg)
    reuse = num_frames % grid_views == 0  # the grid's azimuths are turntable frames
    total = num_frames if reuse else num_frames + grid_views

    def render(cameras: CameraBatch, offset: int) -> Iterator[np.ndarray]:
        frames = render_frames(activated, cameras, background_rgb, backend, chunk_size)
        return _report_progress(frames, progress, offset, total)

    grid_images: list[np.ndarray] = []
    frames = render(evaluation_orbit(num_frames, resolution, resolution, **orbit), 0)
    if reuse:
        frames = _keep_every(frames, num_frames // grid_views, grid_images)
    video, note = _write_video(out_dir, frames, fps)
    notes += [note] if note else []
    if not reuse:
        grid_images = list(render(evaluation_orbit(grid_views, resolution, resolution, **orbit), num_frames))
    azimuths = [360.0 * i / grid_views for i in range(grid_views)]
    views = out_dir / VIEWS_NAME
    _write_png(views, views_grid(grid_images, azimuths, grid_columns, labels, background))
    return TurntableResult(video, views, num_frames, resolution, time.perf_counter() - started, "; ".join(notes))
