"""A simulated training run, to try the live viewer and measure what it costs (no model, no GPU).

    python -m splatgen.viewer.demo                                   # marker ball, until Ctrl-C
    python -m splatgen.viewer.demo --ply assets/sample.ply           # grow the sample asset instead
    python -m splatgen.viewer.demo --gaussians 50000 --seconds 30 --viewer.port 0   # measure, then report

A thread plays the training loop: every step it calls `publish` and `wait_while_paused`, exactly
as `train.py` does. The splats move from a grey ball to the target asset over the run, and every
step samples a new batch of orbit cameras. The marker ball is red at the front (+z), blue at the
back and green on top, so a wrong axis convention is obvious at a glance.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro
from rich.console import Console

from splatgen.io import read_asset
from splatgen.scene.cameras import CameraBatch, OrbitSampler, sample_cameras
from splatgen.scene.gaussians import SPLAT_KEYS, Gaussians, rgb_to_sh0
from splatgen.viewer.live import LiveViewer, ViewerConfig
from splatgen.viewer.snapshot import TrainingSnapshot

MARKER_FRONT, MARKER_BACK, MARKER_TOP, MARKER_SIDE = (0.9, 0.1, 0.1), (0.1, 0.1, 0.9), (0.1, 0.8, 0.1), (0.6, 0.6, 0.6)


def demo_view_prompts(prompt: str) -> dict[str, object]:
    """prompts.json-shaped view prompts with the design's default ranges (what the GUI lists)."""
    ranges = {
        "front": ([[-45, 45]], [-90, 60]),
        "side": ([[45, 135], [-135, -45]], [-90, 60]),
        "back": ([[135, 180], [-180, -135]], [-90, 60]),
        "overhead": ([[-180, 180]], [60, 90]),
    }
    views = {
        view: {"prompt": f"{prompt}, {view} view", "removed": [], "azimuth": azimuth, "elevation": elevation}
        for view, (azimuth, elevation) in ranges.items()
    }
    return {"prompt": prompt, "views": views}


def marker_ball(count: int = 3000, radius: float = 0.5, sigma: float = 0.04, seed: int = 0) -> Gaussians:
    """Opaque Gaussians on a sphere: red front (+z), blue back (-z), green top (+y), grey sides (SH degree 1)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    rgb = torch.tensor(MARKER_SIDE).repeat(count, 1)
    rgb[directions[:, 2] > 0.3] = torch.tensor(MARKER_FRONT)
    rgb[directions[:, 2] < -0.3] = torch.tensor(MARKER_BACK)
    rgb[directions[:, 1] > 0.6] = torch.tensor(MARKER_TOP)
    quats = torch.zeros(count, 4)
    quats[:, 0] = 1.0
    return Gaussians(
        means=radius * directions,
        scales=torch.full((count, 3), math.log(sigma)),
        quats=quats,
        opacities=torch.full((count,), 4.0),
        sh0=rgb_to_sh0(rgb).unsqueeze(1),
        shN=torch.zeros(count, 3, 3),
    )


def grey_start(target: Gaussians) -> dict[str, torch.Tensor]:
    """Where the simulated run starts: the target's Gaussians shrunk to a faint grey ball."""
    start = {key: getattr(target, key).clone() for key in SPLAT_KEYS}
    start["means"] = 0.5 * start["means"]
    start["sh0"] = torch.zeros_like(start["sh0"])  # rgb 0.5
    start["opacities"] = torch.full_like(start["opacities"], -2.0)
    return start


@dataclass
class PublishTimings:
    """Time the training thread spent inside `publish`, split by whether a push was due."""

    due: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # factory called + CPU copy
    idle: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # clock check only


class SimulatedTraining:
    """A thread that drives `viewer` like the training loop; use as a context manager.

    `published` is set after the first step has been published. Each step samples `batch_size`
    orbit cameras, unless a fixed `cameras` batch is given.
    """

    def __init__(
        self,
        viewer: LiveViewer,
        target: Gaussians,
        total_steps: int = 1000,
        step_seconds: float = 0.01,
        batch_size: int = 4,
        cameras: CameraBatch | None = None,
        prompt: str = "a marker ball",
    ) -> None:
        self.viewer = viewer
        self.view_prompts = demo_view_prompts(prompt)
        self.fixed_cameras = cameras
        self.total_steps = total_steps
        self.step_seconds = step_seconds
        self.batch_size = batch_size
        self.published = threading.Event()
        self.timings = PublishTimings()
        self.steps_done = 0
        self._start = grey_start(target)
        self._target = {key: getattr(target, key).clone() for key in SPLAT_KEYS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="simulated-training", daemon=True)

    def splats_at(self, step: int) -> dict[str, torch.Tensor]:
        progress = min(step / max(0.6 * self.total_steps, 1.0), 1.0)
        return {key: torch.lerp(self._start[key], self._target[key], progress) for key in SPLAT_KEYS}

    def snapshot_at(self, step: int, cameras: CameraBatch) -> TrainingSnapshot:
        progress = step / self.total_steps
        return TrainingSnapshot(
            step=step,
            total_steps=self.total_steps,
            loss=0.5 * math.exp(-4.0 * progress) + 0.01,
            num_gaussians=self._target["means"].shape[0],
            truncation=2.0 + 6.0 * progress,
            timestep_range=(20, int(980 - 600 * progress)),
            splats=self.splats_at(step),
            cameras=cameras,
            view_prompts=self.view_prompts,
        )

    def _loop(self) -> None:
        generator = torch.Generator().manual_seed(0)
        step = 0
        while not self._stop.is_set() and step <= self.total_steps:
            cameras = self.fixed_cameras
            if cameras is None:
                cameras = sample_cameras(OrbitSampler(), self.batch_size, 64, 64, generator)
            factory_called = []

            def factory(step: int = step) -> TrainingSnapshot:
                factory_called.append(True)  # noqa: B023 (called before the loop moves on)
                return self.snapshot_at(step, cameras)  # noqa: B023

            started = time.perf_counter()
            self.viewer.publish(factory)
            (self.timings.due if factory_called else self.timings.idle).append(time.perf_counter() - started)
            self.published.set()
            self.viewer.wait_while_paused()
            self.steps_done = step
            step += 1
            time.sleep(self.step_seconds)

    def __enter__(self) -> SimulatedTraining:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.viewer.set_paused(False)
        self._thread.join(timeout=10.0)


@dataclass
class DemoConfig:
    """Serve a simulated training run in the live viewer; optionally stop after a while and report costs."""

    gaussians: int = 3000
    """Size of the marker ball (ignored with --ply)."""
    ply: Path | None = None
    """Grow this PLY instead of the marker ball."""
    prompt: str = "a marker ball"
    """The prompt shown in the GUI's view prompts."""
    seconds: float | None = None
    """Stop after this long and print the measured costs (default: run until Ctrl-C)."""
    total_steps: int = 2000
    """Length of the simulated run."""
    step_seconds: float = 0.01
    """Sleep per simulated step (a stand-in for render + prior + optimiser)."""
    viewer: ViewerConfig = field(default_factory=ViewerConfig)


def cost_report(viewer: LiveViewer, training: SimulatedTraining, elapsed: float, gaussians: int) -> str:
    """Measured costs as a few plain lines (what docs/viewer.md quotes)."""
    pushes = viewer.timings.durations
    lines = [
        f"Gaussians: {gaussians:,}; steps: {training.steps_done}; elapsed: {elapsed:.1f} s",
        f"pushes: {viewer.timings.count}; achieved rate: {viewer.timings.count / elapsed:.2f} Hz (configured {viewer.config.update_hz:g} Hz)",
    ]
    if pushes:
        lines.append(
            f"worker time per push (covariances, colours, set_gaussians, GUI): median {1e3 * statistics.median(pushes):.1f} ms, "
            f"max {1e3 * max(pushes):.1f} ms"
        )
    if training.timings.due:
        lines.append(
            f"training thread per due publish (factory + CPU copy): median {1e3 * statistics.median(training.timings.due):.2f} ms"
        )
    if training.timings.idle:
        lines.append(
            f"training thread per publish with no push due: median {1e6 * statistics.median(training.timings.idle):.2f} us"
        )
    return "\n".join(lines)


def run_demo(config: DemoConfig, console: Console | None = None, stop: threading.Event | None = None) -> str:
    """Serve the simulated run until `config.seconds` pass or `stop` is set; returns the cost report
    (empty if stopped by Ctrl-C)."""
    console = console if console is not None else Console()
    target = read_asset(config.ply) if config.ply is not None else marker_ball(config.gaussians)
    run_dir = Path(tempfile.mkdtemp(prefix="splatgen-viewer-demo-"))
    try:
        report = serve_simulation(config, target, run_dir, console, stop)
    finally:
        if not any(run_dir.iterdir()):  # keep the folder only if a PLY was exported into it
            run_dir.rmdir()
    if report:
        console.print(report)
    return report


def serve_simulation(
    config: DemoConfig, target: Gaussians, run_dir: Path, console: Console, stop: threading.Event | None = None
) -> str:
    """Run the viewer and the simulated loop for `config.seconds` or until `stop` (or Ctrl-C: returns "")."""
    with (
        LiveViewer(config.viewer, run_dir, console) as viewer,
        SimulatedTraining(viewer, target, config.total_steps, config.step_seconds, prompt=config.prompt) as training,
    ):
        console.print(f"Simulated run of {len(target):,} Gaussians; exports go to {run_dir}. Ctrl-C stops.")
        started = time.perf_counter()
        try:
            while config.seconds is None or time.perf_counter() - started < config.seconds:
                if stop is not None and stop.is_set():
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            return ""
        return cost_report(viewer, training, time.perf_counter() - started, len(target))


if __name__ == "__main__":
    run_demo(tyro.cli(DemoConfig))
