"""A batch worker: runs items one after another through `train()`, keeping the models loaded.

The same class runs in-process (`--engine local`) and as a Ray actor (`--engine ray`). Each item is
an ordinary `splatgen train` run in `DIR/<id>` (then its `report.html`, as `splatgen train` writes),
with the worker's `ModelCache` so the prior and the debiasing LM load once per worker. An item
whose folder holds a checkpoint is resumed from it (`--resume`); a folder left by a run that stopped
before its first checkpoint is cleared under the run's lock and started again. Whatever happens,
`run_item` returns an `Outcome` (a failed item never stops the worker); the run's console output
goes to `DIR/logs/<id>.log`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from splatgen.batch.plan import WorkItem
from splatgen.errors import SplatgenError
from splatgen.io.run_folder import LAST_CHECKPOINT_PATH, RunFolder, RunFolderBusy, slugify

OUTCOMES = ("done", "failed", "interrupted", "busy", "lost")
"""done | failed (the item's error) | interrupted (stopped; resumable) | busy (another process owns its
folder) | lost (its worker died; set by the engine, never by the worker)."""

LEFTOVERS = ("config.yaml", "prompts.json", "metrics.jsonl", "refinements.jsonl")
"""What a run writes before its first checkpoint: cleared when the folder has no checkpoint to resume."""


@dataclass
class Outcome:
    status: str  # one of OUTCOMES
    seconds: float = 0.0
    steps: int | None = None
    error: str | None = None


def one_line(error: BaseException) -> str:
    text = str(error) if isinstance(error, SplatgenError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


class BatchWorker:
    """Runs `WorkItem`s; `describe()` says where it runs, `request_stop()` stops the current item after its step."""

    def __init__(self, log_dir: Path) -> None:
        from splatgen.train.assemble import ModelCache

        self.log_dir = Path(log_dir)
        self.models = ModelCache()
        self._stop = threading.Event()

    def describe(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "loads": self.models.loads,
        }

    def request_stop(self) -> None:
        self._stop.set()

    def run_item(self, item: WorkItem) -> Outcome:
        """Train one item to its end (or resume it); never raises except for KeyboardInterrupt."""
        from rich.console import Console

        self._stop.clear()
        started = time.perf_counter()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{item.id}.log", "a", encoding="utf-8") as log:
            console = Console(file=log, width=120, force_terminal=False, soft_wrap=True)
            console.print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {item.id} ({item.where}) on {self.describe()}")
            try:
                outcome = self._train(item, console)
            except Exception as error:  # a failing item is recorded; the worker goes on with the next one
                console.print(traceback.format_exc(), markup=False, highlight=False)
                outcome = Outcome("busy" if isinstance(error, RunFolderBusy) else "failed", error=one_line(error))
            console.print(f"--- {outcome.status}" + (f": {outcome.error}" if outcome.error else ""), markup=False)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _train(self, item: WorkItem, console) -> Outcome:
        import torch

        from splatgen.report import write_run_report
        from splatgen.train.loop import train

        if item.cwd.is_dir() and Path.cwd() != item.cwd:  # a Ray worker starts elsewhere; one item at a time
            os.chdir(item.cwd)
        config = prepare_run_folder(item.config)
        try:
            result = train(config, models=self.models, console=console, on_step=self._check_stop)
        except torch.OutOfMemoryError as error:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise SplatgenError(f"out of memory: {str(error).splitlines()[0]}") from error
        if result.interrupted:
            return Outcome("interrupted", error="stopped; the next run resumes it from its checkpoint")
        console.print(f"report: {write_run_report(result.run_dir)}", highlight=False)
        return Outcome("done", steps=result.total_steps)

    def _check_stop(self, step: int) -> None:  # noqa: ARG002
        if self._stop.is_set():
            raise KeyboardInterrupt  # train() saves a checkpoint and returns `interrupted`


def prepare_run_folder(config):
    """Resume from the item's checkpoint if it has one; else clear what a run killed before its first
    checkpoint left (under the run's lock: `RunFolderBusy` when a live process owns the folder)."""
    run = RunFolder(Path(config.out), slugify(config.prompt))
    if (run.path / LAST_CHECKPOINT_PATH).is_file():
        return replace(config, resume=run.path)
    leftovers = [run.path / name for name in LEFTOVERS if (run.path / name).is_file()]
    if leftovers:
        lock = run.lock()
        try:
            for path in leftovers:
                path.unlink(missing_ok=True)
        finally:
            lock.release()
    return config
