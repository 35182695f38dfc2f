"""The training loop: sample cameras -> render -> prior -> objective -> step -> densify -> log.

One loop serves every objective and every prior (Stable Diffusion, the oracle). Objective-specific
state (the VSD/ESD LoRA score) is created once by `assemble.py` and has one hook per step. Nothing a
user made is lost: checkpoints are atomic, Ctrl-C finishes the current step and saves, non-finite
steps are skipped and counted, and a PLY never contains NaN.
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
from splatgen.objectives.schedules import densify_thresholds, timestep_range, truncation_at
from splatgen.prior.base import DiffusionPrior
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import sample_cameras
from splatgen.scene.densify import Densifier, RefineReport
from splatgen.scene.gaussians import Gaussians, activate
from splatgen.scene.init import initial_gaussians
from splatgen.train import assemble
from splatgen.train.checkpoint import load_checkpoint, save_checkpoint
from splatgen.train.config import TrainConfig
from splatgen.train.distill import distillation_step
from splatgen.train.optim import make_optimizers, means_learning_rate, set_means_learning_rate
from splatgen.train.progress import StepMetrics, TrainingProgress
from splatgen.train.run_folder import RunFolder


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


def _all_finite(loss: torch.Tensor, splats: torch.nn.ParameterDict) -> bool:
    checks = [torch.isfinite(loss)] + [torch.isfinite(p.grad).all() for p in splats.values() if p.grad is not None]
    return bool(torch.stack(checks).all())


def _grad_norm(splats: torch.nn.ParameterDict) -> float:
    squares = [p.grad.pow(2).sum() for p in splats.values() if p.grad is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


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
    generator = torch.Generator().manual_seed(config.seed)

    view_prompts = assemble.prepare_view_prompts(config, console)  # the small LM first: fail fast
    prior = prior if prior is not None else assemble.load_prior(config, device, console)
    assemble.open_run_folder(run, config, view_prompts, console)
    torch.manual_seed(config.seed)  # after loading (which may draw from it): gsplat's split() uses this generator
    text = assemble.TextConditions.build(prior, view_prompts, config)
    num_timesteps = prior.alphas_cumprod.shape[0]

    splats = initial_gaussians(
        config.init, config.prompt, config.sh_degree, config.densify.max_gaussians, generator, console
    ).to_parameters(device)
    optimizers = make_optimizers(splats, config.optim)
    densifier = Densifier(config.densify, config.steps)
    objective = config.objective
    lora_score = assemble.make_lora_score(config, prior, device)
    start_step, skipped_steps = 0, 0
    if config.resume is not None:
        start_step, skipped_steps = _restore(run, splats, optimizers, densifier, lora_score, generator, device, console)
    viewer = assemble.start_viewer(config, run, console)

    refinements: list[RefineReport] = []
    consecutive_bad = 0
    step = start_step
    stop = _StopRequest(console)
    started = time.perf_counter()
    interrupted = False
    try:
        with stop.installed(), TrainingProgress(console, config.steps, start_step, config.log_every) as bar:
            while step < config.steps and not stop.requested:
                progress = step / config.steps
                if viewer is not None:
                    viewer.wait_while_paused()
                # 1. cameras and backgrounds
                cameras = sample_cameras(
                    config.cameras,
                    config.batch_size,
                    config.render_size_at(progress),
                    config.render_size_at(progress),
                    generator,
                ).to(device)
                backgrounds = make_backgrounds(config.background, config.batch_size, generator, device)
                # 2. render
                render = rasterize(activate(splats, config.sh_degree), cameras, backgrounds, config.render_backend)
                densifier.step_pre_backward(splats, optimizers, step, render.info)
                # 3. prior and objective
                latents = prior.encode_images(render.images.permute(0, 3, 1, 2))  # [B, 3, H, W] -> [B, c, h, w]
                prompts = text.for_cameras(cameras)
                result = distillation_step(prior, objective, latents, cameras, prompts, progress, generator, lora_score)
                # 4. optimiser step, unless the step went non-finite
                result.loss.backward()
                finite = _all_finite(result.loss, splats)
                if finite:
                    consecutive_bad = 0
                    set_means_learning_rate(optimizers, means_learning_rate(config.optim, progress))
                    grad_norm = _grad_norm(splats) if (step + 1) % config.log_every == 0 else float("nan")
                    for optimizer in optimizers.values():
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    # 5. densify / prune, thresholds derived from the truncation schedule
                    thresholds = densify_thresholds(config.densify, objective, progress)
                    report = densifier.step_post_backward(splats, optimizers, step, render.info, thresholds)
                    if report is not None:
                        refinements.append(report)
                        bar.log(_describe_refinement(report, truncation_at(objective, progress)))
                    if lora_score is not None:
                        for _ in range(objective.lora_updates_per_step):
                            lora_score.train_step(latents.detach(), prompts.plain, result.camera_conditions, generator)
                else:
                    skipped_steps += 1
                    consecutive_bad += 1
                    for optimizer in optimizers.values():
                        optimizer.zero_grad(set_to_none=True)
                    if consecutive_bad >= config.max_bad_steps:
                        raise TrainingDiverged(
                            f"{consecutive_bad} consecutive steps produced NaN/Inf (last at step {step + 1}); "
                            f"stopped, the last good checkpoint is in {run.checkpoint_dir}"
                        )
                step += 1
                # 6. log, checkpoint, viewer
                if finite and step % config.log_every == 0:
                    bar.update(
                        StepMetrics(
                            step,
                            float(result.loss.detach()),
                            grad_norm,
                            len(splats["means"]),
                            truncation_at(objective, progress),
                            timestep_range(objective.timesteps, progress, num_timesteps),
                            skipped_steps,
                        )
                    )
                else:
                    bar.advance(step)
                if finite and step % config.checkpoint_every == 0 and step < config.steps:
                    _checkpoint(run, step, splats, optimizers, densifier, lora_score, generator, skipped_steps)
                if viewer is not None:
                    viewer.publish(
                        assemble.snapshot_factory(
                            step, config, splats, result, progress, num_timesteps, cameras, view_prompts
                        )
                    )
                if on_step is not None:
                    on_step(step)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if viewer is not None:
            viewer.close()
    interrupted = interrupted or step < config.steps
    seconds = time.perf_counter() - started
    _checkpoint(run, step, splats, optimizers, densifier, lora_score, generator, skipped_steps)
    ply_path = _export(run, splats, config)
    if interrupted:
        console.print(
            f"[yellow]stopped at step {step}/{config.steps}[/]; checkpoint in {run.checkpoint_dir}, asset so far in {ply_path}"
        )
        console.print(f"resume with: splatgen train --resume {run.path}")
    else:
        assemble.write_media(config, splats, run, device, console)
    return RunResult(
        run.path, ply_path, step - start_step, config.steps, interrupted, seconds, skipped_steps, refinements
    )


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


def _checkpoint(run: RunFolder, step, splats, optimizers, densifier, lora_score, generator, skipped_steps) -> None:
    save_checkpoint(
        run.checkpoint_dir,
        {
            "step": step,
            "splats": {key: value.detach() for key, value in splats.items()},
            "optimizers": {key: optimizer.state_dict() for key, optimizer in optimizers.items()},
            "densifier": densifier.state_dict(),
            "lora": lora_score.state_dict() if lora_score is not None else None,
            "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state()},
            "nan_steps": skipped_steps,
        },
    )


def _restore(run, splats, optimizers, densifier, lora_score, generator, device, console) -> tuple[int, int]:
    state = load_checkpoint(run.checkpoint_dir)
    for key, value in state["splats"].items():
        splats[key] = torch.nn.Parameter(value.to(device))
        optimizers[key].param_groups[0]["params"] = [splats[key]]
        optimizers[key].state.clear()
        optimizers[key].load_state_dict(state["optimizers"][key])
    densifier.load_state_dict(
        {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state["densifier"].items()}
    )
    if lora_score is not None and state.get("lora") is not None:
        lora_score.load_state_dict(state["lora"])
    torch.set_rng_state(state["rng"]["torch"])
    generator.set_state(state["rng"]["generator"])
    console.print(f"resuming {run.path} from step {state['step']}")
    return int(state["step"]), int(state.get("nan_steps", 0))


def _export(run: RunFolder, splats, config: TrainConfig) -> Path:
    gaussians = Gaussians.from_parameters(splats)
    write_ply(run.ply_path, gaussians, sh_degree=config.export_sh_degree)
    return run.ply_path
