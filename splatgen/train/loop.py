"""The training loop: `train_step` (cameras -> render -> prior -> objective -> step -> densify), then log.

One loop serves every objective and every prior (Stable Diffusion, the oracle). The step itself
is `step.py`'s `train_step` over a `TrainState` that `assemble.py` builds once; the loop adds the
progress display, checkpoints, the viewer and Ctrl-C handling around it. Nothing a user made is
lost: checkpoints are atomic, Ctrl-C finishes the current step and saves, non-finite steps are
skipped and counted, and a PLY never contains NaN.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from splatgen.errors import SplatgenError
from splatgen.io.config_file import ConfigError
from splatgen.io.ply import write_ply
from splatgen.io.run_folder import RunFolder
from splatgen.prior.base import DiffusionPrior
from splatgen.scene.densify import RefineReport
from splatgen.scene.gaussians import Gaussians
from splatgen.train import assemble
from splatgen.train.checkpoint import restore_checkpoint, save_checkpoint
from splatgen.train.config import TrainConfig
from splatgen.train.metrics import METRICS_FILE, REFINEMENTS_FILE, MetricsLog, StepRecord
from splatgen.train.progress import StepMetrics, TrainingProgress
from splatgen.train.step import StepResult, TrainState, snapshot_factory, train_step


class TrainingDiverged(SplatgenError):
    """Too many consecutive steps produced NaN/Inf; the last good checkpoint is kept."""


@dataclass
class RunResult:
    run_dir: Path
    ply_path: Path
    steps_completed: int
    total_steps: int
    interrupted: bool
    seconds: float
    skipped_steps: int
    refinements: list[RefineReport] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps_completed / self.seconds if self.seconds > 0 else 0.0


class _StopRequest:
    """First Ctrl-C: finish the current step, then save and stop. Second: abandon the step."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.requested = False

    def handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("\n[yellow]Ctrl-C: finishing this step, then saving (Ctrl-C again to abandon the step)[/]")

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def train(
    config: TrainConfig,
    *,
    prior: DiffusionPrior | None = None,
    console: Console | None = None,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Run (or resume) one training run and leave its files in the run folder.

    `prior` overrides the configured one (the oracle fit uses this); `on_step(step)` is called
    after every completed step (tests use it to interrupt or inject faults).
    """
    console = console or Console()
    try:
        config.validate()  # every bad value is refused here, before any model loads
    except ValueError as error:
        raise ConfigError(str(error)) from error
    device = assemble.resolve_device(config.device)
    run = assemble.plan_run_folder(config)
    assemble.check_render_backend(config, device, console)  # gsplat's kernels, before any model loads
    view_prompts = assemble.prepare_view_prompts(config, console)  # the small LM first: fail fast
    prior = prior if prior is not None else assemble.load_prior(config, device, console)
    assemble.open_run_folder(run, config, view_prompts, console)
    lora_score = assemble.make_lora_score(config, prior, device)
    state = assemble.initial_state(config, prior, view_prompts, device, console, lora_score)
    if config.resume is not None:
        restore_checkpoint(run.checkpoint_dir, state)
        console.print(f"resuming {run.path} from step {state.step}")
    start_step = state.step
    viewer = assemble.start_viewer(config, run, console)
    metrics_log, refinement_log = MetricsLog(run.path / METRICS_FILE), MetricsLog(run.path / REFINEMENTS_FILE)
    earlier = metrics_log.resume(start_step)  # a resume replays the steps after its checkpoint
    refinements_before = len(refinement_log.resume(start_step))
    seconds_before = float(earlier[-1]["seconds"]) if earlier else 0.0

    refinements: list[RefineReport] = []
    stop = _StopRequest(console)
    started = time.perf_counter()
    interrupted = False
    try:
        with stop.installed(), TrainingProgress(console, config.steps, start_step, config.log_every) as bar:
            while state.step < config.steps and not stop.requested:
                if viewer is not None:
                    viewer.wait_while_paused()
                result = train_step(state)  # 1-5: cameras, render, prior + objective, optimiser, densify
                if state.consecutive_bad >= config.max_bad_steps:
                    raise TrainingDiverged(
                        f"{state.consecutive_bad} consecutive steps produced NaN/Inf (last at step {state.step}); "
                        f"stopped, the last good checkpoint is in {run.checkpoint_dir}"
                    )
                # 6. log, checkpoint, viewer
                if result.refinement is not None:
                    refinements.append(result.refinement)
                    bar.log(_describe_refinement(result.refinement, result.truncation))
                    refinement_log.append(_refinement_record(result.refinement, result.truncation))
                if result.finite and state.step % config.log_every == 0:
                    metrics = _metrics(state, result)
                    bar.update(metrics)
                    seconds = seconds_before + time.perf_counter() - started
                    metrics_log.append(_step_record(metrics, result, refinements_before + len(refinements), seconds))
                else:
                    bar.advance(state.step)
                if result.finite and state.step % config.checkpoint_every == 0 and state.step < config.steps:
                    save_checkpoint(run.checkpoint_dir, state)
                if viewer is not None:
                    viewer.publish(snapshot_factory(state, result))
                if on_step is not None:
                    on_step(state.step)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if viewer is not None:
            viewer.close()
    step = state.step
    interrupted = interrupted or step < config.steps
    seconds = time.perf_counter() - started
    save_checkpoint(run.checkpoint_dir, state)
    ply_path = _export(run, state.splats, config, console)
    if interrupted:
        console.print(
            f"[yellow]stopped at step {step}/{config.steps}[/]; checkpoint in {run.checkpoint_dir}, asset so far in {ply_path}"
        )
        console.print(f"resume with: splatgen train --resume {run.path}")
    else:
        assemble.write_media(config, state.splats, run, device, console)
    return RunResult(
        run.path, ply_path, step - start_step, config.steps, interrupted, seconds, state.skipped_steps, refinements
    )


def _metrics(state: TrainState, result: StepResult) -> StepMetrics:
    return StepMetrics(
        step=result.step,
        loss=float(result.loss.detach()),
        grad_norm=result.grad_norm,
        num_gaussians=len(state.splats["means"]),
        truncation=result.truncation,
        timestep_range=result.timestep_range,
        skipped_steps=state.skipped_steps,
    )


def _step_record(metrics: StepMetrics, result: StepResult, refinements: int, seconds: float) -> dict:
    lo, hi = metrics.timestep_range
    grow_threshold = result.thresholds.grow_grad2d if result.thresholds is not None else None
    return StepRecord(
        metrics.step,
        metrics.loss,
        metrics.grad_norm,
        metrics.num_gaussians,
        metrics.truncation,
        grow_threshold,
        lo,
        hi,
        metrics.skipped_steps,
        refinements,
        round(seconds, 3),
    ).to_json()


def _refinement_record(report: RefineReport, truncation: float | None) -> dict:
    return {
        "step": report.step + 1,  # completed steps, as in metrics.jsonl
        "truncation": truncation,
        "grow_threshold": report.thresholds.grow_grad2d,  # in the growth rule's units
        "effective_grow_grad2d": report.effective_grow_grad2d,  # what the mean screen-space gradient is compared with
        "median_grad2d": report.median_grad2d,
        "reference": report.reference,
        "prune_opacity": report.thresholds.prune_opacity,
        "duplicated": report.duplicated,
        "split": report.split,
        "pruned": report.pruned,
        "capped": report.capped,
        "num_gaussians": report.num_gaussians,
    }


def _describe_refinement(report: RefineReport, truncation: float | None) -> str:
    truncation_text = "-" if truncation is None else f"{truncation:.2f}"
    return (
        f"refine @ step {report.step}: truncation {truncation_text}, grow threshold {report.effective_grow_grad2d:.3g}"
        + (f" ({report.thresholds.grow_grad2d:.3g} x reference {report.reference:.3g})" if report.reference else "")
        + f", median gradient {report.median_grad2d:.3g}, "
        f"+{report.duplicated} duplicated +{report.split} split -{report.pruned} pruned"
        + (f" ({report.capped} held back by the cap)" if report.capped else "")
        + f" -> {report.num_gaussians:,} Gaussians"
    )


def _export(run: RunFolder, splats, config: TrainConfig, console: Console) -> Path:
    gaussians = Gaussians.from_parameters(splats)
    write_ply(run.ply_path, gaussians, sh_degree=config.export_sh_degree)
    if config.export_mesh:
        from splatgen.export import write_mesh

        try:
            console.print(write_mesh(gaussians, run.ply_path.with_suffix(".glb"), config.mesh), highlight=False)
        except SplatgenError as error:  # the PLY is written: a mesh that cannot be made costs nothing else
            console.print(f"[yellow]mesh not written[/]: {error}", highlight=False)
    return run.ply_path
