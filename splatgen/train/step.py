"""One training step over one state: cameras -> render -> prior -> objective -> optimiser -> densify.

    state = assemble.initial_state(config, prior, view_prompts, device, console, lora_score)
    result = train_step(state)             # advances state.step by one
    result = train_step(state, region)     # the same, each part wrapped in `region(name)`

`TrainState` is everything a step reads and changes; `state_dict()` is its changing part, what a
checkpoint holds. `train_step` does no logging, checkpointing or viewer work: `loop.py` does that
with the `StepResult`, which carries the step's truncation and timestep range, computed once.
Regions, in order: cameras, render, densify, vae_encode, text, noise, unet_cfg, unet_lora,
objective, backward, finite_check, optimizer, densify, lora_train ("densify" twice: before and
after backward).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from splatgen.prior.base import DiffusionPrior, views_per_group
from splatgen.prompts import PerpNegWeights, ViewPrompts, assign_views, perp_neg_plan, view_interpolation_weights
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import CameraBatch, sample_cameras
from splatgen.scene.densify import Densifier, DensifyThresholds, RefineReport, densify_thresholds
from splatgen.scene.gaussians import activate
from splatgen.train.config import TrainConfig
from splatgen.train.distill import DistillationResult, PromptEmbeddings, Region, distillation_step, no_region
from splatgen.train.optim import means_learning_rate, set_means_learning_rate

if TYPE_CHECKING:
    from splatgen.prior.lora import LoraScore
    from splatgen.viewer import TrainingSnapshot


@dataclass
class TextConditions:
    """Text embeddings of the four view prompts, the negative, empty and plain prompts, computed once."""

    view_prompts: ViewPrompts
    view_embeddings: torch.Tensor  # [4, L, D] in VIEW_NAMES order
    other_embeddings: torch.Tensor  # [3, L, D]: negative prompt, empty prompt, plain prompt
    interpolate: bool
    multi_view: bool = False  # the prior sees every view with the plain prompt (MVDream)
    perp_neg: PerpNegWeights | None = None  # Perp-Neg's weights when it is on

    @staticmethod
    def build(prior: DiffusionPrior, view_prompts: ViewPrompts, config: TrainConfig) -> TextConditions:
        negative = config.prior.negative_prompt
        embeddings = prior.embed_prompts(
            [*view_prompts.in_view_order(), negative, "", view_prompts.prompt]
        )  # [7, L, D]
        prompts_encoded = getattr(prior, "prompts_encoded", None)  # optional hook: the run's prompts are encoded
        if prompts_encoded is not None:
            prompts_encoded()
        return TextConditions(
            view_prompts,
            embeddings[:4],
            embeddings[4:],
            config.prompts.interpolate_views,
            multi_view=views_per_group(prior) > 1,
            perp_neg=config.prompts.perp_neg_weights if config.prompts.perp_neg else None,
        )

    def for_cameras(self, cameras: CameraBatch) -> PromptEmbeddings:
        """The prompt embeddings of a camera batch, each [B, L, D] (Perp-Neg's negatives [B, 2, L, D])."""
        azimuth, elevation = cameras.azimuth_deg, cameras.elevation_deg  # on the cameras' device: no host sync
        negative, empty, plain = (
            embedding.expand(len(cameras), -1, -1) for embedding in self.other_embeddings[:, None]
        )
        if self.multi_view:
            return PromptEmbeddings(view=plain, negative=negative, empty=empty, plain=plain)
        if self.perp_neg is not None:
            plan = perp_neg_plan(azimuth, elevation, self.view_prompts, self.perp_neg)
            view = torch.einsum("bv,vld->bld", plan.positive_mix.to(self.view_embeddings), self.view_embeddings)
            negatives = self.view_embeddings[plan.negative_views.to(self.view_embeddings.device)]  # [B, 2, L, D]
            return PromptEmbeddings(view, negative, empty, plain, negatives, plan.negative_weights)
        if self.interpolate:
            weights = view_interpolation_weights(azimuth, elevation, self.view_prompts).to(self.view_embeddings)
            view = torch.einsum("bv,vld->bld", weights, self.view_embeddings)
        else:
            view = self.view_embeddings[
                assign_views(azimuth, elevation, self.view_prompts).to(self.view_embeddings.device)
            ]
        return PromptEmbeddings(view=view, negative=negative, empty=empty, plain=plain)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The random state a resumed run needs to draw what an uninterrupted one would."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "generator_device": generator.device.type,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # the global CUDA generators (gsplat's split draws there)
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> str | None:
    """Put back what `rng_state` saved (CUDA states only where this machine has those devices).

    A resume may change `--device`; a generator state of another device type cannot be set, so the
    step generator is then seeded from a digest of the saved state (the same checkpoint always gives
    the same draws) and the returned note says that the draws differ from an uninterrupted run's.
    """
    torch.set_rng_state(state["torch"])
    saved_device = state.get("generator_device", "cpu")  # earlier checkpoints: the step generator was a CPU one
    note = None
    if saved_device == generator.device.type:
        generator.set_state(state["generator"])
    else:
        digest = hashlib.sha256(state["generator"].numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        note = (
            f"the checkpoint's step generator was on {saved_device}, this run's is on {generator.device.type}: "
            "it continues with draws seeded from the saved state, not those an uninterrupted run would make"
        )
    if state.get("cuda") and torch.cuda.is_available():
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
    return note


@dataclass
class TrainState:
    """Everything one training step reads (config, prior, text) and changes (the rest)."""

    config: TrainConfig
    device: torch.device
    prior: DiffusionPrior
    text: TextConditions
    splats: torch.nn.ParameterDict  # means, scales, quats, opacities, sh0, shN (raw)
    optimizers: dict[str, torch.optim.Optimizer]  # one Adam per key of `splats`
    densifier: Densifier
    generator: torch.Generator  # cameras, backgrounds, timesteps, noise, LoRA sampling
    lora_score: LoraScore | None = None  # VSD/ESD's eps_phi
    step: int = 0  # completed steps
    skipped_steps: int = 0  # steps skipped for non-finite values, in all
    consecutive_bad: int = 0  # non-finite steps in a row, up to the last one

    @property
    def progress(self) -> float:
        """Training progress of the next step, in [0, 1)."""
        return self.step / self.config.steps

    def state_dict(self) -> dict[str, Any]:
        """The changing part, as `checkpoint.py` stores it (tensors on their devices)."""
        return {
            "step": self.step,
            "splats": {key: value.detach() for key, value in self.splats.items()},
            "optimizers": {key: optimizer.state_dict() for key, optimizer in self.optimizers.items()},
            "densifier": self.densifier.state_dict(),
            "lora": self.lora_score.state_dict() if self.lora_score is not None else None,
            "rng": rng_state(self.generator),
            "nan_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> str | None:
        """Continue from what `state_dict` returned (loaded on the CPU); the inverse of `state_dict`.

        Returns a note for the user when the random state could not be restored exactly (see `restore_rng_state`).
        """
        for key, value in state["splats"].items():
            self.splats[key] = torch.nn.Parameter(value.to(self.device))
            optimizer = self.optimizers[key]
            optimizer.param_groups[0]["params"] = [self.splats[key]]
            optimizer.state.clear()
            optimizer.load_state_dict(state["optimizers"][key])
        self.densifier.load_state_dict(
            {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in state["densifier"].items()}
        )
        if self.lora_score is not None and state.get("lora") is not None:
            self.lora_score.load_state_dict(state["lora"])
        note = restore_rng_state(state["rng"], self.generator)
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("nan_steps", 0))
        self.consecutive_bad = 0
        return note


@dataclass
class StepResult:
    """What one step did (the loop logs, checkpoints and shows it)."""

    step: int  # completed steps, this one included
    finite: bool  # False: the step was skipped (NaN/Inf in the loss or a gradient)
    distillation: DistillationResult
    cameras: CameraBatch  # the views of this step
    grad_norm: float  # of the Gaussians' gradients; NaN except on log steps (it costs a host sync)
    refinement: RefineReport | None  # set when this step densified / pruned
    thresholds: DensifyThresholds | None = None  # the densify thresholds in force (finite steps)

    @property
    def loss(self) -> torch.Tensor:  # scalar
        return self.distillation.loss

    @property
    def truncation(self) -> float | None:
        return self.distillation.truncation

    @property
    def timestep_range(self) -> tuple[int, int]:
        return self.distillation.timestep_range


def all_finite(loss: torch.Tensor, splats: torch.nn.ParameterDict) -> bool:
    """The loss and every gradient of the Gaussians are finite (one host sync)."""
    checks = [torch.isfinite(loss)] + [torch.isfinite(p.grad).all() for p in splats.values() if p.grad is not None]
    return bool(torch.stack(checks).all())


def grad_norm(splats: torch.nn.ParameterDict) -> float:
    """The L2 norm of all the Gaussians' gradients together."""
    squares = [p.grad.pow(2).sum() for p in splats.values() if p.grad is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def train_step(state: TrainState, region: Region = no_region) -> StepResult:
    """One step of the run at `state.step`; updates `state` in place and advances `state.step`.

    A non-finite step changes no parameter (its gradients are dropped) and is counted in
    `state.skipped_steps` / `state.consecutive_bad`; the loop decides when that is too many.
    """
    config, splats, optimizers, densifier = state.config, state.splats, state.optimizers, state.densifier
    step, progress, generator = state.step, state.progress, state.generator
    # 1. cameras and backgrounds
    with region("cameras"):
        size = config.render_size_at(progress)
        group = views_per_group(state.prior)  # a multi-view prior gets whole groups of views
        cameras = sample_cameras(config.cameras, config.batch_size, size, size, generator, group).to(state.device)
        backgrounds = make_backgrounds(config.background, config.batch_size, generator, state.device)
    # 2. render
    with region("render"):
        render = rasterize(activate(splats, config.sh_degree), cameras, backgrounds, config.render_backend)
    with region("densify"):
        densifier.step_pre_backward(splats, optimizers, step, render.info)
    # 3. prior and objective
    with region("vae_encode"):
        latents = state.prior.encode_images(render.images.permute(0, 3, 1, 2))  # [B, 3, H, W] -> [B, c, h, w]
    with region("text"):
        prompts = state.text.for_cameras(cameras)
    distillation = distillation_step(
        state.prior, config.objective, latents, cameras, prompts, progress, generator, state.lora_score, region
    )
    # 4. optimiser step, unless the step went non-finite
    with region("backward"):
        distillation.loss.backward()
    with region("finite_check"):
        finite = all_finite(distillation.loss, splats)
    norm, refinement, thresholds = math.nan, None, None
    if finite:
        state.consecutive_bad = 0
        with region("optimizer"):
            set_means_learning_rate(optimizers, means_learning_rate(config.optim, progress))
            norm = grad_norm(splats) if (step + 1) % config.log_every == 0 else math.nan
            for optimizer in optimizers.values():
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        # 5. densify / prune, the growth threshold following the truncation schedule
        with region("densify"):
            truncation, ceiling = distillation.truncation, config.objective.max_truncation
            fraction = None if truncation is None or ceiling is None else truncation / ceiling
            thresholds = densify_thresholds(config.densify, fraction)
            refinement = densifier.step_post_backward(splats, optimizers, step, render.info, thresholds)
        if state.lora_score is not None:
            with region("lora_train"):
                for _ in range(config.objective.lora_updates_per_step):
                    state.lora_score.train_step(
                        latents.detach(), prompts.plain, distillation.camera_conditions, generator
                    )
    else:
        state.skipped_steps += 1
        state.consecutive_bad += 1
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return StepResult(state.step, finite, distillation, cameras, norm, refinement, thresholds)


def snapshot_factory(state: TrainState, result: StepResult) -> Callable[[], TrainingSnapshot]:
    """A closure the viewer calls only when a push is due (so the loop pays nothing otherwise)."""
    from splatgen.viewer import TrainingSnapshot

    config, splats = state.config, state.splats

    def build() -> TrainingSnapshot:
        return TrainingSnapshot(
            step=result.step,
            total_steps=config.steps,
            loss=float(result.loss.detach()),
            num_gaussians=len(splats["means"]),
            truncation=result.truncation,
            timestep_range=result.timestep_range,
            splats=dict(splats),
            cameras=result.cameras,
            view_prompts=state.text.view_prompts.to_json(),
            views_per_group=views_per_group(state.prior),
        )

    return build
