"""Building a run's parts from its config: device, run folder, prior, prompts, Gaussians, LoRA, viewer.

`train.py` reads top to bottom as the loop; everything it needs created once lives here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from rich.console import Console

from splatgen.errors import SplatgenError
from splatgen.io.config_file import dump_yaml
from splatgen.io.ply import NonFiniteDropped
from splatgen.objectives.schedules import timestep_range, truncation_at
from splatgen.prior.base import DiffusionPrior
from splatgen.prompts import ViewPrompts, assign_views, build_view_prompts, view_interpolation_weights
from splatgen.scene.cameras import CameraBatch
from splatgen.scene.gaussians import Gaussians
from splatgen.tiny_models import resolve_lm, resolve_sd_model
from splatgen.train.config import TrainConfig
from splatgen.train.distill import PromptEmbeddings
from splatgen.train.run_folder import RunFolder, slugify


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SplatgenError("--device cuda was asked for, but torch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device(name)


def plan_run_folder(config: TrainConfig) -> RunFolder:
    """Where the run goes; refuses to start a fresh run over an existing one. Creates nothing yet."""
    if config.resume is not None:
        return RunFolder(Path(config.resume), slugify(config.prompt))
    path = Path(config.out) if config.out is not None else RunFolder.default_path(config.prompt)
    if (path / "checkpoints" / "last.pt").exists():
        raise SplatgenError(f"{path} already holds a run; continue it with --resume {path}, or pick another --out")
    return RunFolder(path, slugify(config.prompt))


def open_run_folder(run: RunFolder, config: TrainConfig, view_prompts: ViewPrompts, console: Console) -> None:
    """Create the folder once the models have loaded (a failed start leaves nothing behind) and write
    the resolved config (fresh runs; a resume keeps its own) and prompts.json."""
    run.create()
    if config.resume is None:
        run.write_config(dump_yaml(config))
    run.write_prompts(view_prompts.to_json())
    console.print(f"run folder: {run.path}", highlight=False, soft_wrap=True)


def quiet_library_progress_bars() -> None:
    """transformers/diffusers print a tqdm bar per weight file; the run's own progress is enough."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def load_prior(config: TrainConfig, device: torch.device, console: Console) -> DiffusionPrior:
    from splatgen.prior.stable_diffusion import StableDiffusionPrior

    quiet_library_progress_bars()
    prior_config = replace(config.prior, model=resolve_sd_model(config.prior.model, console))
    console.print(f"loading Stable Diffusion from {prior_config.model} ...")
    return StableDiffusionPrior.from_config(prior_config, device)


def prepare_view_prompts(config: TrainConfig, console: Console) -> ViewPrompts:
    """The per-view prompts (LM-debiased unless --no-debias)."""
    prompt_config = config.prompts
    quiet_library_progress_bars()
    if prompt_config.debias:
        prompt_config = replace(prompt_config, lm=resolve_lm(prompt_config.lm, console))
    view_prompts = build_view_prompts(config.prompt, prompt_config)
    for view, text in view_prompts.texts.items():
        removed = view_prompts.removed.get(view, ())
        console.print(
            f"  {view:>8}: {text}" + (f"   (removed: {', '.join(removed)})" if removed else ""), highlight=False
        )
    return view_prompts


@dataclass
class TextConditions:
    """Text embeddings of the four view prompts, the negative, empty and plain prompts, computed once."""

    view_prompts: ViewPrompts
    view_embeddings: torch.Tensor  # [4, L, D] in VIEW_NAMES order
    other_embeddings: torch.Tensor  # [3, L, D]: negative prompt, empty prompt, plain prompt
    interpolate: bool

    @staticmethod
    def build(prior: DiffusionPrior, view_prompts: ViewPrompts, config: TrainConfig) -> TextConditions:
        negative = getattr(getattr(prior, "config", None), "negative_prompt", config.prior.negative_prompt)
        embeddings = prior.embed_prompts(
            [*view_prompts.in_view_order(), negative, "", view_prompts.prompt]
        )  # [7, L, D]
        return TextConditions(view_prompts, embeddings[:4], embeddings[4:], config.prompts.interpolate_views)

    def for_cameras(self, cameras: CameraBatch) -> PromptEmbeddings:
        """The prompt embeddings of a camera batch, each [B, L, D]."""
        azimuth, elevation = cameras.azimuth_deg, cameras.elevation_deg  # on the cameras' device: no host sync
        if self.interpolate:
            weights = view_interpolation_weights(azimuth, elevation, self.view_prompts).to(self.view_embeddings)
            view = torch.einsum("bv,vld->bld", weights, self.view_embeddings)
        else:
            view = self.view_embeddings[
                assign_views(azimuth, elevation, self.view_prompts).to(self.view_embeddings.device)
            ]
        negative, empty, plain = (
            embedding.expand(len(cameras), -1, -1) for embedding in self.other_embeddings[:, None]
        )
        return PromptEmbeddings(view=view, negative=negative, empty=empty, plain=plain)


def make_lora_score(config: TrainConfig, prior: DiffusionPrior, device: torch.device):
    """The VSD/ESD LoRA score eps_phi, created once (None for objectives without one)."""
    objective = config.objective
    if not getattr(objective, "uses_lora", False):
        return None
    from splatgen.prior.lora import LoraScore, LoraScoreConfig
    from splatgen.prior.stable_diffusion import StableDiffusionPrior

    if not isinstance(prior, StableDiffusionPrior):
        raise SplatgenError(
            f"objective {type(objective).__name__} trains a LoRA of the Stable Diffusion UNet; this prior has none"
        )
    lora_config = LoraScoreConfig(
        rank=objective.lora_rank, learning_rate=objective.lora_lr, camera_dropout=objective.camera_dropout
    )
    return LoraScore(prior, lora_config, seed=config.seed)


def start_viewer(config: TrainConfig, run: RunFolder, console: Console):
    """The live viewer, or None when off or when it cannot start (training goes on without it)."""
    if not config.viewer.enabled:
        return None
    from splatgen.viewer import LiveViewer

    try:
        return LiveViewer(config.viewer, run.path, console)
    except Exception as error:  # the viewer is a convenience: never let it stop a run
        console.print(
            f"[yellow]live viewer not started ({type(error).__name__}: {error}); training continues without it[/]"
        )
        return None


def snapshot_factory(
    step, config: TrainConfig, splats, result, progress: float, num_timesteps: int, cameras, view_prompts: ViewPrompts
):
    """A closure the viewer calls only when a push is due (so the loop pays nothing otherwise)."""
    from splatgen.viewer import TrainingSnapshot

    def build() -> TrainingSnapshot:
        return TrainingSnapshot(
            step=step,
            total_steps=config.steps,
            loss=float(result.loss.detach()),
            num_gaussians=len(splats["means"]),
            truncation=truncation_at(config.objective, progress),
            timestep_range=timestep_range(config.objective.timesteps, progress, num_timesteps),
            splats=dict(splats),
            cameras=cameras,
            view_prompts=view_prompts.to_json(),
        )

    return build


def write_media(config: TrainConfig, splats, run: RunFolder, device: torch.device, console: Console) -> None:
    """Turntable video and view grid of the finished asset (skipped with --video-frames 0)."""
    if config.video_frames == 0:
        return
    from splatgen.render.turntable import render_turntable

    gaussians = Gaussians.from_parameters(splats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteDropped)
        result = render_turntable(
            gaussians,
            run.path,
            num_frames=config.video_frames,
            background="white",
            backend=config.render_backend,
            device=device,
        )
    console.print(result.summary(), highlight=False, soft_wrap=True)
