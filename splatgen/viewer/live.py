"""The live viewer: watch (and pause, export, compare with the last checkpoint) a run in a browser.

The training loop calls `publish` every step and `wait_while_paused` every step. `publish` reads
a clock and returns unless a push is due (`update_hz`); when one is due it calls the snapshot
factory, copies the tensors to the CPU and drops the copy in a one-slot mailbox. A worker thread
turns the newest copy into covariances and colours and sends it to viser. Nothing the viewer does
can raise into the loop: every failure is printed once and training continues.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from splatgen.io.ply import write_ply
from splatgen.io.run_folder import LAST_CHECKPOINT_PATH, RunFolder
from splatgen.scene.gaussians import Gaussians
from splatgen.viewer.config import ViewerConfig
from splatgen.viewer.convert import front_camera
from splatgen.viewer.layers import FrustumLayer, SplatLayer
from splatgen.viewer.panel import TrainingPanel
from splatgen.viewer.server import new_token, start_server, stop_server, url_for
from splatgen.viewer.snapshot import TrainingSnapshot, detached_cpu_copy
from splatgen.viewer.threads import ErrorReporter, LatestMailbox

if TYPE_CHECKING:
    import torch

INITIAL_CAMERA_DISTANCE = 3.5  # a bit outside the training orbit (2.5-3), so nearby frustums show too
INITIAL_CAMERA_ELEVATION_DEG = 20.0


@dataclass
class PushTimings:
    """How long the worker spent per push (conversion + set_gaussians + GUI), seconds."""

    count: int = 0  # pushes so far
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # the latest ones

    def record(self, seconds: float) -> None:
        self.count += 1
        self.durations.append(seconds)

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else 0.0


def load_checkpoint_splats(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The raw splats (and step, when stored) of a trainer checkpoint; reads only what it needs (mmap)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    splats = {key: value.clone() for key, value in state["splats"].items()}
    step = state.get("step")
    return splats, None if step is None else int(step)


class LiveViewer:
    """A viser server showing a training run; see the module docstring for the threading contract."""

    def __init__(self, config: ViewerConfig, run_dir: Path, console: Console | None = None) -> None:
        config.validate()
        self.config = config
        self.run_dir = Path(run_dir)
        self.console = console if console is not None else Console()
        self.errors = ErrorReporter(self.console)
        self.timings = PushTimings()
        self._push_interval = 1.0 / config.update_hz
        self._next_push_at = 0.0
        self._paused = False
        self._pause_changed = threading.Condition()
        self._display_lock = threading.RLock()
        self._latest: TrainingSnapshot | None = None
        self._checkpoint_mtime: float | None = None
        self._mailbox: LatestMailbox[TrainingSnapshot] = LatestMailbox()
        self._server = None
        self._token = new_token() if config.token == "auto" else config.token
        if config.enabled:
            self.errors.guarded("starting the viewer", self._start)

    def _start(self) -> None:
        self._server = start_server(
            self.config.host,
            self.config.port,
            self.console,
            front_camera(distance=INITIAL_CAMERA_DISTANCE, elevation_deg=INITIAL_CAMERA_ELEVATION_DEG),
            exposed="see the run and control it (pause it, write PLY files next to it)",
            token=self._token,
        )
        self.panel = TrainingPanel(self._server.gui)
        self._splat_layer = SplatLayer(self._server.scene)
        self._frustum_layer = FrustumLayer(self._server.scene)
        self._wire_callbacks()
        self._worker = threading.Thread(target=self._run_worker, name="splatgen-viewer", daemon=True)
        self._worker.start()
        self.console.print(f"Live viewer: [link={self.url}]{self.url}[/link]")

    @property
    def url(self) -> str:
        """The address to open in a browser ("" when the viewer is off or failed to start)."""
        if self._server is None:
            return ""
        return url_for(self.config.host, self._server.get_port(), self._token)

    @property
    def paused(self) -> bool:
        return self._paused

    def publish(self, snapshot_factory: Callable[[], TrainingSnapshot]) -> None:
        """Called every step: returns at once unless a push is due, then hands a CPU copy to the worker."""
        now = time.monotonic()
        if now < self._next_push_at or self._server is None:
            return
        self._next_push_at = now + self._push_interval
        snapshot = self.errors.guarded("taking a training snapshot", lambda: detached_cpu_copy(snapshot_factory()))
        if snapshot is not None:
            self._mailbox.put(snapshot)

    def wait_while_paused(
        self,
        snapshot_factory: Callable[[], TrainingSnapshot] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Block while the GUI's pause is on; returns at once otherwise.

        With `snapshot_factory`, the state the run paused at is pushed first, so the browser shows it.
        `should_stop` is polled (every 0.2 s): a Ctrl-C or SIGTERM while paused ends the wait.
        """
        if not self._paused:
            return
        if snapshot_factory is not None:
            self._next_push_at = 0.0
            self.publish(snapshot_factory)
        with self._pause_changed:
            while self._paused and self._server is not None and not (should_stop is not None and should_stop()):
                self._pause_changed.wait(timeout=0.2)

    def set_paused(self, paused: bool) -> None:
        """What the GUI button does (any tab): pause or resume the run."""
        with self._pause_changed:
            self._paused = paused
            self._pause_changed.notify_all()
        if self._server is not None:
            self.errors.guarded("updating the pause button", self.panel.show_paused, paused)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every published snapshot has been sent to the browser; False on timeout."""
        return self._server is not None and self._mailbox.wait_idle(timeout)

    def export_now(self) -> Path | None:
        """Write the latest live snapshot to `run_dir/export_step_XXXXXX.ply` (atomic); None if none yet."""
        snapshot = self._latest
        if snapshot is None:
            self._set_export_note("_Nothing to export yet: no training step has arrived._")
            return None
        path = RunFolder(self.run_dir).live_export_path(snapshot.step)
        self._set_export_note(f"Writing `{path.name}` ...")
        report = write_ply(path, Gaussians.from_parameters(snapshot.splats))
        self._set_export_note(f"Wrote `{path}` ({report.written:,} Gaussians).")
        self.console.print(f"viewer: {escape(report.summary())}")
        return path

    def _export_from_gui(self) -> None:
        try:
            self.export_now()
        except Exception as error:
            self._set_export_note(f"Export failed: {type(error).__name__}: {error}")
            self.errors.report("exporting a PLY", error)

    def _set_export_note(self, text: str) -> None:
        if self._server is not None:
            self.panel.export_note.content = text

    def close(self) -> None:
        """Stop the worker and the server (the port is free afterwards) and release a paused loop."""
        server, self._server = self._server, None
        self._mailbox.close()
        with self._pause_changed:
            self._paused = False
            self._pause_changed.notify_all()
        if server is not None:
            self._worker.join(timeout=10.0)
            self.errors.guarded("stopping the viewer", stop_server, server)

    def __enter__(self) -> LiveViewer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _wire_callbacks(self) -> None:
        panel = self.panel
        panel.pause_button.on_click(lambda _: self.set_paused(not self._paused))
        panel.export_button.on_click(lambda _: self._export_from_gui())
        panel.source.on_update(lambda _: self.errors.guarded("switching what is shown", self._refresh_display))
        panel.show_cameras.on_update(lambda _: self.errors.guarded("showing the cameras", self._refresh_display))

    def _run_worker(self) -> None:
        while (snapshot := self._mailbox.take()) is not None:
            started = time.perf_counter()
            self.errors.guarded("showing a training step", self._show_snapshot, snapshot)
            self.timings.record(time.perf_counter() - started)

    def _show_snapshot(self, snapshot: TrainingSnapshot) -> None:
        with self._display_lock:
            self._latest = snapshot
            self.panel.show_snapshot(snapshot)
            self._refresh_display()

    def _refresh_display(self) -> None:
        """Draw what the GUI asks for: the live splats or the checkpoint, and the cameras or none."""
        with self._display_lock:
            snapshot = self._latest
            if not (self.panel.showing_checkpoint and self._show_checkpoint()) and snapshot is not None:
                self._checkpoint_mtime = None
                self._splat_layer.show(snapshot.splats)
                self.panel.display_note.content = self._live_note(snapshot)
            cameras = snapshot.cameras if snapshot is not None and self.panel.show_cameras.value else None
            self._frustum_layer.show(cameras, snapshot.views_per_group if snapshot is not None else 1)

    def _live_note(self, snapshot: TrainingSnapshot) -> str:
        if self.panel.showing_checkpoint:
            return f"_No checkpoint yet (`{LAST_CHECKPOINT_PATH}`)_: showing the live splats of step {snapshot.step}."
        return f"Showing the live splats of step {snapshot.step}."

    def _show_checkpoint(self) -> bool:
        """Show `checkpoints/last.pt` (reloaded only when the file changed); False if there is none."""
        path = RunFolder(self.run_dir).last_checkpoint
        if not path.is_file():
            return False
        mtime = path.stat().st_mtime
        if mtime == self._checkpoint_mtime:
            return True
        splats, step = load_checkpoint_splats(path)
        count = self._splat_layer.show(splats)
        self._checkpoint_mtime = mtime
        saved_at = time.strftime("%H:%M:%S", time.localtime(mtime))
        at_step = f"step {step}, " if step is not None else ""
        self.panel.display_note.content = (
            f"Showing `{LAST_CHECKPOINT_PATH}` ({at_step}{count:,} Gaussians, saved {saved_at})."
        )
        return True
