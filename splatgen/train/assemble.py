"""Building a run's parts from its config: device, run folder, prior, prompts, initial state, LoRA, viewer.

`loop.py` reads top to bottom as the loop; everything it needs created once lives here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console

from splatgen.errors import OutputError, SplatgenError
from splatgen.io.config_file import ConfigError, dump_yaml, load_config
from splatgen.io.ply import NonFiniteDropped
from splatgen.io.run_folder import RunFolder, RunLock, slugify
from splatgen.prior.base import DiffusionPrior
from splatgen.prior.mvdream import MVDreamConfig
from splatgen.prompts import PromptConfig, ViewPrompts, ViewScorer, build_view_prompts
from splatgen.scene.densify import Densifier
from splatgen.scene.gaussians import Gaussians
from splatgen.scene.init import initial_gaussians
from splatgen.tiny_models import resolve_lm, resolve_mvdream_unet, resolve_sd_model
from splatgen.train.checkpoint import describe_changes, identity_changes
from splatgen.train.config import TrainConfig, run_identity
from splatgen.train.optim import make_optimizers
from splatgen.train.step import TextConditions, TrainState

if TYPE_CHECKING:
    from splatgen.prior.lora import LoraScore


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cuda' | 'cpu' -> a device torch can use; a GPU torch cannot see is a one-line error."""
    from splatgen.gpu import resolve_device as resolve

    return resolve(name)


def check_render_backend(config: TrainConfig, device: torch.device, console: Console) -> None:
    """Before any model loads: the backend can run on `device`, and gsplat's kernels are there (built once if not)."""
    from splatgen.gpu import check_render_backend as check

    check(config.render_backend, device, announce=lambda text: console.print(text, highlight=False, soft_wrap=True))


def make_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(initialisation generator, step generator), both seeded with `seed`.

    The step's draws (cameras, backgrounds, timesteps, noise, the LoRA's dropout, noise and
    timesteps) come from a generator on the training device, so none is a blocking host-to-device
    copy. The initial Gaussians are drawn once on the CPU. On CPU both are one generator, whose
    stream runs on from the initialisation into the steps.
    """
    init_generator = torch.Generator().manual_seed(seed)
    if device.type == "cpu":
        return init_generator, init_generator
    return init_generator, torch.Generator(device).manual_seed(seed)


def plan_run_folder(config: TrainConfig, console: Console | None = None) -> RunFolder:
    """Where the run goes, checked before any model loads; creates nothing.

    A fresh run is refused over another run or over files it would overwrite; a resume is refused
    when a flag changes what the run is (`--prompt`, the objective, ...: see `RESUME_MAY_CHANGE`).
    Both are refused while a live run owns the folder, or when it is not writable. A fresh run into
    an existing folder that is not a run folder is warned about on `console` (its files are left alone).
    """
    if config.resume is not None:
        run = RunFolder(Path(config.resume), slugify(config.prompt))
        saved = load_config(TrainConfig, run.config_path)
        changes = identity_changes(run_identity(saved), run_identity(config))
        if changes:
            raise ConfigError(
                f"--resume {run.path} continues that run as configured; these cannot change: {describe_changes(changes)}"
            )
    else:
        path = Path(config.out) if config.out is not None else RunFolder.default_path(config.prompt)
        run = RunFolder(path, slugify(config.prompt))
        refuse_occupied(run)
        if console is not None and path.is_dir() and any(path.iterdir()):
            console.print(
                f"[yellow]warning:[/] --out {path} already exists and is not a splatgen run folder; the run's "
                "files are written into it next to what is there",
                highlight=False,
                soft_wrap=True,
            )
    _check_writable(run.path)
    run.check_free()
    return run


def refuse_occupied(run: RunFolder) -> None:
    """A fresh run never writes over another run or over files someone else put in --out."""
    from splatgen.render.turntable import GIF_NAME, VIDEO_NAME, VIEWS_NAME

    if run.path.exists() and not run.path.is_dir():
        raise OutputError(f"--out {run.path} is a file, not a folder")
    if run.checkpoint_dir.exists() and not run.checkpoint_dir.is_dir():
        raise OutputError(f"{run.checkpoint_dir} is a file; splatgen needs that name for the run's checkpoints")
    if run.last_checkpoint.exists():
        raise SplatgenError(
            f"{run.path} already holds a run; continue it with --resume {run.path}, or pick another --out"
        )
    names = (run.config_path.name, run.prompts_path.name, run.ply_path.name, VIDEO_NAME, GIF_NAME, VIEWS_NAME)
    present = [name for name in names if (run.path / name).exists()]
    if present:
        raise OutputError(
            f"{run.path} already has {', '.join(present)}, which this run would overwrite; pick another --out or move them"
        )


def _check_writable(path: Path) -> None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the run folder {path}: {existing} is not writable")


def announce_tiny_models(config: TrainConfig, console: Console) -> None:
    """Say on screen that a run with the random-weight test models makes noise, not an asset."""
    from splatgen.tiny_models import RESERVED_MODEL_IDS

    if config.prior.model in RESERVED_MODEL_IDS:
        console.print(
            f"[yellow]note:[/] --prior.model {config.prior.model} has random weights: this run checks the "
            "installation end to end; the asset it writes is noise, not an object",
            highlight=False,
            soft_wrap=True,
        )


def open_run_folder(run: RunFolder, config: TrainConfig, view_prompts: ViewPrompts, console: Console) -> RunLock:
    """Take the run folder (its lock, held until the run ends) once everything that can fail at start has
    succeeded, so a failed start leaves nothing behind; write the resolved config (fresh runs; a resume
    keeps its own) and prompts.json. Returns the lock for the caller to release."""
    lock = run.lock()
    try:
        if config.resume is None:
            refuse_occupied(run)  # again, under the lock: another run may have started here meanwhile
            run.write_config(dump_yaml(config))
        run.write_prompts(view_prompts.to_json())
    except BaseException:
        lock.release()
        raise
    console.print(f"run folder: {run.path}", highlight=False, soft_wrap=True)
    return lock


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
    trains_lora = config.objective.uses_lora
    dtype = prior_config.torch_dtype(device, trains_lora)
    dtype_name = str(dtype).removeprefix("torch.")
    if trains_lora and dtype == torch.float16:
        console.print(
            "[yellow]fp16 prior with a LoRA objective: part of the LoRA gradient underflows to zero in fp16 "
            "(scripts/precision_probe.py measures it); --prior.dtype bf16 or fp32 avoids it[/]"
        )
    if isinstance(prior_config, MVDreamConfig):
        from splatgen.prior.mvdream import MVDreamPrior

        prior_config = replace(prior_config, unet=resolve_mvdream_unet(prior_config.unet, console))
        console.print(
            f"loading MVDream's UNet from {prior_config.unet}, SD 2.1-base's parts from {prior_config.model} "
            f"({dtype_name}) ..."
        )
        return MVDreamPrior.from_config(prior_config, device, trains_lora)
    console.print(f"loading Stable Diffusion from {prior_config.model} ({dtype_name}) ...")
    return StableDiffusionPrior.from_config(prior_config, device, trains_lora)


class ModelCache:
    """The models a long-lived worker keeps loaded between runs (`splatgen batch`): the prior and the
    debiasing LM, each keyed by the config that loads it. A run asking for another key replaces that
    model (one of each stays in memory). `train(config, models=cache)` takes its models from here.
    """

    def __init__(self) -> None:
        self._prior: tuple[str, DiffusionPrior] | None = None
        self._scorer: tuple[str, ViewScorer] | None = None
        self.loads = 0  # models loaded so far (the prior and the LM count one each)

    def prior(self, config: TrainConfig, device: torch.device, console: Console) -> DiffusionPrior:
        """The prior of `config.prior` on `device`, loaded on first use; without the LoRA a VSD/ESD run left on it."""
        key = self.prior_key(config, device)
        if self._prior is None or self._prior[0] != key:
            self._prior = None  # free the old one before loading the new one
            self._prior = (key, load_prior(config, device, console))
            self.loads += 1
        prior = self._prior[1]
        from splatgen.prior.stable_diffusion import StableDiffusionPrior

        if isinstance(prior, StableDiffusionPrior):
            from splatgen.prior.lora import LoraScore

            LoraScore.remove_from(prior)
        return prior

    @staticmethod
    def prior_key(config: TrainConfig, device: torch.device) -> str:
        """What a loaded prior depends on: the device, the dtype it resolves to (auto depends on whether the
        objective trains a LoRA) and its config."""
        dtype = config.prior.torch_dtype(device, config.objective.uses_lora)
        return f"{device}\n{dtype}\n{dump_yaml(config.prior)}"

    def view_scorer(self, prompt_config: PromptConfig) -> ViewScorer:
        """The masked LM that scores views for debiasing (`prompt_config.lm` already resolved), loaded on first use."""
        from splatgen.prompts import MaskedLMViewScorer

        key = f"{prompt_config.lm}\n{prompt_config.template}\n{prompt_config.device}"
        if self._scorer is None or self._scorer[0] != key:
            self._scorer = None
            scorer = MaskedLMViewScorer.from_pretrained(
                prompt_config.lm, prompt_config.template, device=prompt_config.device
            )
            self._scorer = (key, scorer)
            self.loads += 1
        return self._scorer[1]


def prepare_view_prompts(config: TrainConfig, console: Console, models: ModelCache | None = None) -> ViewPrompts:
    """The per-view prompts (LM-debiased unless --no-debias; plain and unused with the multi-view prior)."""
    prompt_config = config.prompts
    quiet_library_progress_bars()
    if isinstance(config.prior, MVDreamConfig):
        console.print("multi-view prior: the plain prompt conditions every view (no view prompts, no LM debiasing)")
        return build_view_prompts(config.prompt, replace(prompt_config, debias=False))
    if prompt_config.debias:
        prompt_config = replace(prompt_config, lm=resolve_lm(prompt_config.lm, console))
    scorer = models.view_scorer(prompt_config) if models is not None and prompt_config.debias else None
    view_prompts = build_view_prompts(config.prompt, prompt_config, scorer)
    for view, text in view_prompts.texts.items():
        removed = view_prompts.removed.get(view, ())
        console.print(
            f"  {view:>8}: {text}" + (f"   (removed: {', '.join(removed)})" if removed else ""), highlight=False
        )
    return view_prompts


def make_lora_score(config: TrainConfig, prior: DiffusionPrior, device: torch.device) -> LoraScore | None:
    """The VSD/ESD LoRA score eps_phi, created once (None for objectives without one)."""
    objective = config.objective
    if not objective.uses_lora:
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


def initial_state(
    config: TrainConfig,
    prior: DiffusionPrior,
    view_prompts: ViewPrompts,
    device: torch.device,
    console: Console,
    lora_score: LoraScore | None,
) -> TrainState:
    """The state of a fresh run at step 0: text embeddings, initial Gaussians, optimisers, densifier.

    Seeds torch's global generator (gsplat's split() draws from it) and creates the generators
    (`make_generators`) from `config.seed`; `lora_score` is `make_lora_score(...)` (one per prior).
    """
    init_generator, generator = make_generators(config.seed, device)
    torch.manual_seed(config.seed)
    text = TextConditions.build(prior, view_prompts, config)
    splats = initial_gaussians(
        config.init, config.prompt, config.sh_degree, config.densify.max_gaussians, init_generator, console
    ).to_parameters(device)
    return TrainState(
        config=config,
        device=device,
        prior=prior,
        text=text,
        splats=splats,
        optimizers=make_optimizers(splats, config.optim),
        densifier=Densifier(config.densify, config.steps),
        generator=generator,
        lora_score=lora_score,
    )


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
