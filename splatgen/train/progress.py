"""Training progress: a live rich bar in a terminal, a plain line every N steps otherwise.

rich's live display prints only its last frame when stdout is not a terminal (CI logs, nohup),
so there the same metrics go out as one line per `log_every` steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass
class StepMetrics:
    step: int  # completed steps
    loss: float
    grad_norm: float
    num_gaussians: int
    truncation: float | None
    timestep_range: tuple[int, int]
    skipped_steps: int

    def describe(self) -> str:
        truncation = "-" if self.truncation is None else f"{self.truncation:.2f}"
        lo, hi = self.timestep_range
        text = (
            f"loss {self.loss:.4g}  |g| {self.grad_norm:.3g}  gaussians {self.num_gaussians:,}  "
            f"trunc {truncation}  t [{lo}, {hi}]"
        )
        if self.skipped_steps:
            text += f"  skipped {self.skipped_steps}"
        return text


class TrainingProgress:
    """Context manager; call `update(metrics)` at log intervals and `advance()` every step."""

    def __init__(self, console: Console, total_steps: int, start_step: int = 0, log_every: int = 25) -> None:
        self.console = console
        self.total_steps = total_steps
        self.start_step = start_step
        self.log_every = max(1, log_every)
        self.live = console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._started = time.perf_counter()
        self._completed = start_step

    def __enter__(self) -> TrainingProgress:
        self._started = time.perf_counter()
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.total_steps, completed=self.start_step, rate="", metrics=""
            )
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc_info)

    def steps_per_second(self) -> float:
        elapsed = time.perf_counter() - self._started
        done = self._completed - self.start_step
        return done / elapsed if elapsed > 0 else 0.0

    def advance(self, completed: int) -> None:
        self._completed = completed
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, rate=f"{self.steps_per_second():.2f} it/s")

    def update(self, metrics: StepMetrics) -> None:
        self._completed = metrics.step
        rate = self.steps_per_second()
        if self._progress is not None:
            self._progress.update(
                self._task, completed=metrics.step, rate=f"{rate:.2f} it/s", metrics=metrics.describe()
            )
            return
        remaining = (self.total_steps - metrics.step) / rate if rate > 0 else float("nan")
        self.console.print(
            f"step {metrics.step}/{self.total_steps}  {metrics.describe()}  {rate:.2f} it/s  eta {remaining:.0f}s",
            highlight=False,
            soft_wrap=True,
        )

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)
