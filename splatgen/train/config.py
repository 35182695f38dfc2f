"""The training configuration: one dataclass tree; every field's docstring is its `--help` text.

Selection is by type, not by string: the objective and the initialisation are unions of
dataclasses, chosen on the command line as subcommands (`objective:dsds`, `init:ball`).
Presets are YAML files in `splatgen/presets/` holding any subset of these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro
import yaml

from splatgen.export.options import MeshOptions
from splatgen.io.config_file import to_dict
from splatgen.objectives import DSDS, ObjectiveChoice
from splatgen.prior.multiview import VIEWS_PER_GROUP
from splatgen.prior.mvdream import MVDreamConfig
from splatgen.prior.stable_diffusion import StableDiffusionConfig
from splatgen.prompts import PromptConfig
from splatgen.render import Backend, BackgroundKind
from splatgen.scene.cameras import OrbitSampler
from splatgen.scene.densify import DensifyConfig
from splatgen.scene.frames import DEFAULT_FRAME, Frame
from splatgen.scene.gaussians import MAX_SH_DEGREE
from splatgen.scene.init import BallInit, Init
from splatgen.train.limits import check_numbers
from splatgen.train.optim import OptimConfig
from splatgen.viewer import ViewerConfig

PriorConfig = Union[
    Annotated[StableDiffusionConfig, tyro.conf.subcommand("sd")],
    Annotated[MVDreamConfig, tyro.conf.subcommand("mvdream")],
]
"""The diffusion prior, chosen by type: prior:sd (Stable Diffusion, default) | prior:mvdream (4-view MVDream)."""

RESUME_MAY_CHANGE = (
    "out",
    "resume",
    "steps",
    "device",
    "render_backend",
    "checkpoint_every",
    "log_every",
    "max_bad_steps",
    "video_frames",
    "export_sh_degree",
    "viewer",
    "batch_size",  # the out-of-memory advice lowers these three on resume
    "render_size",
    "densify.max_gaussians",
    "prior.dtype",
    "prior.channels_last",  # speed and memory switches: the same run either way
    "prior.compile",
    "prior.cudnn_benchmark",
    "prior.free_unused",
)
"""Fields a `--resume` may override; every other field is the run's identity, checked on resume."""


@dataclass
class TrainConfig:
    """Turn a text prompt into a 3D Gaussian-splatting asset by score distillation."""

    prompt: str = ""
    """What to make, e.g. "a ceramic mug shaped like an owl"."""
    out: Path | None = None
    """Run folder; default outputs/<slug-of-prompt>-<timestamp>/."""
    steps: int = 1200
    """Optimisation steps (GaussianDreamer: 1,200 with 4 views)."""
    seed: int = 0
    """Random seed: the same seed and config give the same asset on CPU."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint, with its saved config."""
    batch_size: int = 4
    """Views rendered and distilled per step."""
    render_size: int = 512
    """Square render resolution (pixels); renders are resized to the prior's image size."""
    render_schedule: tuple[tuple[float, int], ...] = ()
    """Progressive resolution: (progress, size) milestones, e.g. `0 128 0.3 256 0.6 512` (DreamGaussian); before the first milestone and when empty, --render-size."""
    sh_degree: int = 0
    """SH degree trained (0 = view-independent colour, the usual choice for text-to-3D)."""
    export_sh_degree: int | None = None
    """SH degree written to the PLY; default = the trained degree (3 pads zeros for Unity plugins)."""
    export_mesh: bool = False
    """Also write a textured mesh <name>.glb beside the PLY, at the end and on Ctrl-C (options: --mesh.*)."""
    mesh: MeshOptions = field(default_factory=MeshOptions)
    """How --export-mesh meshes the asset (the options of `splatgen export x.glb`)."""
    export_frame: Frame = DEFAULT_FRAME
    """Frame of the written PLY: inria = -y up (SuperSplat, PlayCanvas), opengl = +y up (three.js), blender = +z up. The --export-mesh .glb is always +y up (glTF's frame)."""
    background: BackgroundKind = "random"
    """Render background: black, white, or a random colour per view (discourages background-coloured floaters)."""
    objective: ObjectiveChoice = field(default_factory=DSDS)
    """The distillation objective."""
    prior: PriorConfig = field(default_factory=StableDiffusionConfig)
    """The diffusion prior: prior:sd (Stable Diffusion 2.1-base) or prior:mvdream (multi-view, against Janus)."""
    prompts: PromptConfig = field(default_factory=PromptConfig)
    """View prompts and LM prompt debiasing."""
    init: Init = field(default_factory=BallInit)
    """How the Gaussians start."""
    cameras: OrbitSampler = field(default_factory=OrbitSampler)
    """Random training cameras."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Densify / prune schedule (tied to the truncation schedule)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Learning rates."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to train: auto = CUDA when available."""
    render_backend: Backend = "auto"
    """Rasterizer: gsplat (CUDA), torch (CPU), or auto."""
    checkpoint_every: int = 200
    """Steps between checkpoints (one is always written at the end and on Ctrl-C)."""
    log_every: int = 25
    """Steps between progress lines / metric updates."""
    max_bad_steps: int = 20
    """Consecutive NaN/Inf steps after which the run stops (the last good checkpoint is kept)."""
    video_frames: int = 120
    """Frames of the turntable video written at the end (0 = no video)."""
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    """The live browser viewer."""

    def render_size_at(self, progress: float) -> int:
        """The render resolution at this training progress: the last milestone reached, else --render-size."""
        size = self.render_size
        for milestone, milestone_size in self.render_schedule:
            if progress >= milestone:
                size = milestone_size
        return size

    def validate(self) -> None:
        """Refuse bad values with a message naming the field, before anything loads."""
        if not self.prompt.strip() and self.resume is None:
            raise ValueError('--prompt is empty: say what to make, e.g. --prompt "a ceramic mug shaped like an owl"')
        check_numbers(self)  # every number finite and in its declared range (splatgen/train/limits.py)
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "max_bad_steps": self.max_bad_steps,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.batch_size > 64:
            raise ValueError(f"--batch-size {self.batch_size} is more views than fit in one step; use <= 64")
        if self.render_size < 16 or self.render_size % 8 != 0 or self.render_size > 2048:
            raise ValueError(f"--render-size must be a multiple of 8 in [16, 2048], got {self.render_size}")
        previous = -1.0
        for progress, size in self.render_schedule:
            if not (0.0 <= progress <= 1.0 and progress > previous):
                raise ValueError(
                    f"--render-schedule milestones must be increasing progress values in [0, 1], got {self.render_schedule}"
                )
            if size < 16 or size % 8 != 0 or size > 2048:
                raise ValueError(f"--render-schedule sizes must be multiples of 8 in [16, 2048], got {size}")
            previous = progress
        if self.export_mesh:
            self.mesh.validate()
        for name in ("sh_degree", "export_sh_degree"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_SH_DEGREE:
                raise ValueError(f"--{name.replace('_', '-')} must be in 0..{MAX_SH_DEGREE}, got {value}")
        if self.video_frames < 0:
            raise ValueError(f"--video-frames must be >= 0, got {self.video_frames}")
        for part in (self.objective, self.prior, self.prompts, self.cameras, self.densify, self.optim, self.viewer):
            validate = getattr(part, "validate", None)
            if validate is not None:
                validate()
        if isinstance(self.init, BallInit):
            self.init.validate()
        count = getattr(self.init, "count", None)  # checked before the Gaussians are allocated
        if count is not None and count > self.densify.max_gaussians:
            raise ValueError(
                f"--init.count {count:,} is more than --densify.max-gaussians {self.densify.max_gaussians:,}"
            )

        self.validate_prior_pairing()

    def validate_prior_pairing(self) -> None:
        """Refuse combinations the prior cannot serve (multi-view groups, LoRA objectives, Perp-Neg)."""
        objective = type(self.objective).__name__.lower()
        if isinstance(self.prior, MVDreamConfig):
            if self.batch_size % VIEWS_PER_GROUP != 0:
                raise ValueError(
                    f"--batch-size counts views and must be a multiple of {VIEWS_PER_GROUP} with prior:mvdream "
                    f"(it denoises groups of {VIEWS_PER_GROUP} views), got {self.batch_size}"
                )
            if getattr(self.objective, "uses_lora", False):
                raise ValueError(
                    f"objective:{objective} trains a LoRA of a single-view UNet; with prior:mvdream use sds, dsds, csd or ssd"
                )
            if self.prompts.perp_neg:
                raise ValueError(
                    "--prompts.perp-neg works on view prompts, which prior:mvdream does not use (its cameras say the view); "
                    "use it with prior:sd"
                )
        if self.prompts.perp_neg and getattr(self.objective, "uses_lora", False):
            raise ValueError(f"--prompts.perp-neg works with sds, dsds, csd and ssd, not objective:{objective}")


def run_identity(config: TrainConfig) -> str:
    """The config as YAML minus `RESUME_MAY_CHANGE`: what a checkpoint belongs to."""
    data = to_dict(config)
    for dotted in RESUME_MAY_CHANGE:
        *parents, name = dotted.split(".")
        section = data
        for parent in parents:
            section = section.get(parent, {}) if isinstance(section, dict) else {}
        if isinstance(section, dict):
            section.pop(name, None)
    return yaml.safe_dump(data, sort_keys=True, allow_unicode=True)
