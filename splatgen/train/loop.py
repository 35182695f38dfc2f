"""The training loop: `train_step` (cameras -> render -> prior -> objective -> step -> densify), then log.

One loop serves every objective and every prior (Stable Diffusion, the oracle). The step itself
is `step.py`'s `train_step` over a `TrainState` that `assemble.py` builds once; the loop adds the
progress display, checkpoints, the viewer and Ctrl-C / SIGTERM handling around it. Nothing a user
made is lost: checkpoints are atomic, checksummed and only taken between whole steps; Ctrl-C or
SIGTERM finishes the current step and saves; non-finite steps are skipped and counted, a
non-finite state is never saved, and a PLY never contains NaN. The run folder is locked from its
first write to the end (see docs/reliability.md).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from splatgen.errors import SplatgenError
from splatgen.io.config_file import ConfigError
from splatgen.io.ply import write_ply
from splatgen.io.run_folder import RunFolder
from splatgen.prior.base import DiffusionPrior
from splatgen.scene.densify import RefineReport
from splatgen.scene.gaussians import Gaussians
from splatgen.train import assemble
from splatgen.train.availability import check_models_available
from splatgen.train.checkpoint import NonFiniteCheckpoint, load_checkpoint, restore_checkpoint, save_checkpoint
from splatgen.train.config import TrainConfig, run_identity
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
    """First Ctrl-C (or any SIGTERM): finish the current step, then save and stop.

    A second Ctrl-C abandons the step, but only while the step has changed nothing yet (cameras,
    render, prior, objective, backward). From `train_step`'s finite check to its end (optimiser,
    densify, LoRA update), and inside `critical()` (checkpoint, export), it is deferred to the end
    of that part, so the state a checkpoint sees is always that of a whole number of steps.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.requested = False
        self._critical = 0
        self._in_update = False
        self._deferred = False

    def handle(self, signum, frame) -> None:  # noqa: ARG002
        if signum == signal.SIGTERM:
            if not self.requested:
                self.console.print("\n[yellow]SIGTERM: finishing this step, then saving[/]")
            self.requested = True
            return
        if self.requested:
            if self._critical:
                self._deferred = True
                return
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("\n[yellow]Ctrl-C: finishing this step, then saving (Ctrl-C again to abandon the step)[/]")

    @contextmanager
    def region(self, name: str) -> Iterator[None]:
        """`train_step`'s region hook: its update part (from the finite check on) is critical until `end_step`."""
        if name == "finite_check" and not self._in_update:
            self._in_update = True
            self._critical += 1
        yield

    def end_step(self, raise_deferred: bool = True) -> None:
        """After `train_step`: leave its update part; raise a Ctrl-C deferred during it (the step is whole)."""
        if self._in_update:
            self._in_update = False
            self._critical -= 1
        self._raise_deferred(raise_deferred)

    @contextmanager
    def critical(self, raise_deferred: bool = True) -> Iterator[None]:
        """A part a Ctrl-C must not cut in two (it is raised, if at all, when the part ends)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        self._raise_deferred(raise_deferred)

    def _raise_deferred(self, raise_deferred: bool) -> None:
        if self._deferred and not self._critical and raise_deferred:
            self._deferred = False
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self.handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def train(
    config: TrainConfig,
    *,
    prior: DiffusionPrior | None = None,
    models: assemble.ModelCache | None = None,
    console: Console | None = None,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Run (or resume) one training run and leave its files in the run folder.

    `prior` overrides the configured one (the oracle fit uses this); `models` keeps the prior and
    the debiasing LM loaded across runs (`splatgen batch`'s workers); `on_step(step)` is called
    after every completed step (tests use it to interrupt or inject faults).
    """
    console = console or Console()
    try:
        config.validate()  # every bad value is refused here, before any model loads
    except ValueError as error:
        raise ConfigError(str(error)) from error
    device = assemble.resolve_device(config.device)
    run = assemble.plan_run_folder(config, console)  # refuses a taken, occupied or unwritable folder; creates nothing
    assemble.check_render_backend(config, device, console)  # gsplat's kernels, before any model loads
    identity = run_identity(config)
    saved = load_checkpoint(run.checkpoint_dir, identity) if config.resume is not None else None  # verified first
    check_models_available(config, include_prior=prior is None)  # all missing models in one line, no hub retries
    assemble.announce_tiny_models(config, console)
    view_prompts = assemble.prepare_view_prompts(config, console, models)  # the small LM first: fail fast
    if prior is None:
        prior = (
            models.prior(config, device, console)
            if models is not None
            else assemble.load_prior(config, device, console)
        )
    lora_score = assemble.make_lora_score(config, prior, device)
    state = assemble.initial_state(config, prior, view_prompts, device, console, lora_score)
    if saved is not None:
        note = restore_checkpoint(state, saved, run.last_checkpoint)
        console.print(f"resuming {run.path} from step {state.step}")
        if note is not None:
            console.print(f"[yellow]note: {note}[/]", highlight=False, soft_wrap=True)
    stop = _StopRequest(console)
    with stop.installed():
        lock = assemble.open_run_folder(run, config, view_prompts, console)  # the first write: the start succeeded
        try:
            return _run(state, run, identity, stop, on_step)
        finally:
            lock.release()


def _run(state: TrainState, run: RunFolder, identity: str, stop: _StopRequest, on_step) -> RunResult:
    """The loop around `train_step`, from `state.step` to the end or a stop; then the checkpoint and the PLY."""
    config, console = state.config, stop.console
    start_step = state.step
    viewer = assemble.start_viewer(config, run, console)
    metrics_log, refinement_log = MetricsLog(run.path / METRICS_FILE), MetricsLog(run.path / REFINEMENTS_FILE)
    earlier = metrics_log.resume(start_step)  # a resume replays the steps after its checkpoint
    refinements_before = len(refinement_log.resume(start_step))
    seconds_before = float(earlier[-1]["seconds"]) if earlier else 0.0

    refinements: list[RefineReport] = []
    started = time.perf_counter()
    interrupted = False
    try:
        with TrainingProgress(console, config.steps, start_step, config.log_every) as bar:
            while state.step < config.steps and not stop.requested:
                if viewer is not None:
                    viewer.wait_while_paused(should_stop=lambda: stop.requested)
                    if stop.requested:
                        break
                rng, step_before = _rng_state(state), state.step
                try:
                    result = train_step(
                        state, stop.region
                    )  # 1-5: cameras, render, prior + objective, optimiser, densify
                    stop.end_step()  # a second Ctrl-C during the update is raised here, the step whole
                except KeyboardInterrupt:
                    stop.end_step(raise_deferred=False)
                    if state.step == step_before:  # abandoned before it changed anything: as if never begun
                        _abandon_step(state, rng)
                    raise
                if state.consecutive_bad >= config.max_bad_steps:
                    raise TrainingDiverged(
                        f"{state.consecutive_bad} consecutive steps produced NaN/Inf (last at step {state.step}); "
                        f"stopped, the last good checkpoint is in {run.checkpoint_dir}"
                    )
                # 6. log, checkpoint, viewer
                if result.refinement is not None:
                    refinements.append(result.refinement)
                    record = _refinement_record(result.refinement, result.truncation)
                    bar.log(_describe_refinement(record))
                    refinement_log.append(record)
                if result.finite and state.step % config.log_every == 0:
                    metrics = _metrics(state, result)
                    bar.update(metrics)
                    seconds = seconds_before + time.perf_counter() - started
                    metrics_log.append(_step_record(metrics, result, refinements_before + len(refinements), seconds))
                else:
                    bar.advance(state.step)
                if result.finite and state.step % config.checkpoint_every == 0 and state.step < config.steps:
                    with stop.critical():
                        _checkpoint(run, state, identity)
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
    with stop.critical(raise_deferred=False):  # more Ctrl-C now would only lose the run's end
        _checkpoint(run, state, identity)
        ply_path = _export(run, state.splats, config, console)
    if interrupted:
        console.print(
            f"[yellow]stopped at step {step}/{config.steps}[/]; checkpoint in {run.checkpoint_dir}, asset so far in {ply_path}"
        )
        console.print(f"resume with: splatgen train --resume {run.path}")
    else:
        assemble.write_media(config, state.splats, run, state.device, console)
    return RunResult(
        run.path, ply_path, step - start_step, config.steps, interrupted, seconds, state.skipped_steps, refinements
    )


def _rng_state(state: TrainState) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.get_rng_state(), state.generator.get_state()


def _abandon_step(state: TrainState, rng: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Undo what an abandoned step's forward pass left: its gradients and its random draws."""
    for optimizer in state.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    torch.set_rng_state(rng[0])
    state.generator.set_state(rng[1])


def _checkpoint(run: RunFolder, state: TrainState, identity: str) -> None:
    """Save the state after whole steps; a NaN/Inf anywhere stops the run and keeps the last good one."""
    try:
        save_checkpoint(run.checkpoint_dir, state, identity)
    except NonFiniteCheckpoint as error:
        raise TrainingDiverged(f"the run's state went non-finite by step {state.step}: {error}") from error


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


def _describe_refinement(record: dict) -> str:
    """The log line of a refinement, formatted from its `refinements.jsonl` record (one source for both)."""
    truncation = record["truncation"]
    truncation_text = "-" if truncation is None else f"{truncation:.2f}"
    return (
        f"refine @ step {record['step'] - 1}: truncation {truncation_text}, "
        f"grow threshold {record['effective_grow_grad2d']:.3g}"
        + (f" ({record['grow_threshold']:.3g} x reference {record['reference']:.3g})" if record["reference"] else "")
        + f", median gradient {record['median_grad2d']:.3g}, "
        f"+{record['duplicated']} duplicated +{record['split']} split -{record['pruned']} pruned"
        + (f" ({record['capped']} held back by the cap)" if record["capped"] else "")
        + f" -> {record['num_gaussians']:,} Gaussians"
    )


def _export(run: RunFolder, splats, config: TrainConfig, console: Console) -> Path:
    gaussians = Gaussians.from_parameters(splats)
    write_ply(run.ply_path, gaussians, sh_degree=config.export_sh_degree, frame=config.export_frame)
    if config.export_mesh:
        from splatgen.export import write_mesh

        try:
            console.print(write_mesh(gaussians, run.ply_path.with_suffix(".glb"), config.mesh), highlight=False)
        except SplatgenError as error:  # the PLY is written: a mesh that cannot be made costs nothing else
            console.print(f"[yellow]mesh not written[/]: {error}", highlight=False)
    return run.ply_path
