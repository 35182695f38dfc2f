"""The objective contract, what every objective sees, the timestep weightings, and the reparameterised loss.

Conventions: x = clean latent, eps ~ N(0, I), abar_t = alphas_cumprod[t],
x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps; eps_y / eps_0 = predictions with the view prompt /
the negative prompt; CFG is the diffusers convention eps_hat = eps_0 + s (eps_y - eps_0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from splatgen.objectives.schedules import TimestepSchedule

Weighting = Literal["sds", "uniform", "fantasia3d"]
CameraCondition = Literal["extrinsics", "mvp"]


@dataclass
class ScoreInputs:
    """Everything an objective's gradient rule may read. All tensors [B, c, h, w] unless noted."""

    latents: torch.Tensor  # x, clean latents (detached)
    noise: torch.Tensor  # eps added to make x_t
    timesteps: torch.Tensor  # [B] int64
    alphas_cumprod: torch.Tensor  # [T]
    eps_cond: torch.Tensor  # eps_y: view prompt
    eps_uncond: torch.Tensor  # eps_0: negative / empty prompt
    progress: float = 0.0  # training progress in [0, 1]
    eps_lora_camera: torch.Tensor | None = None  # eps_phi(x_t, t, y, c): LoRA score with the camera
    eps_lora_no_camera: torch.Tensor | None = None  # eps_phi(x_t, t, y, none): LoRA score, camera dropped
    eps_negative: torch.Tensor | None = None  # eps_neg: a separate negative prompt, for CSD's optional term
    views_per_group: int = 1  # views a multi-view prior denoised jointly (contiguous groups; MVDream: 4)


def timestep_weights(weighting: Weighting, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """w(t) as [B, 1, 1, 1]: 'sds' 1 - abar (DreamFusion), 'uniform' 1, 'fantasia3d' sqrt(abar)(1 - abar)."""
    import torch

    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    if weighting == "sds":
        w = 1.0 - abar
    elif weighting == "uniform":
        w = torch.ones_like(abar)
    elif weighting == "fantasia3d":
        w = abar.sqrt() * (1.0 - abar)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return w.view(-1, 1, 1, 1)


def reparameterised_loss(latents: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """0.5 ||x - (x - g).detach()||^2 summed, divided by the batch: d(loss)/dx = g / B exactly."""
    import torch

    target = (latents - gradient).detach()
    return 0.5 * torch.nn.functional.mse_loss(latents, target, reduction="sum") / latents.shape[0]


@runtime_checkable
class Objective(Protocol):
    """What the training step reads of an objective (`splatgen.train.distill`, `splatgen.train.step`).

    An objective is a dataclass (its fields are the `--objective.*` flags and the YAML keys) with a
    pure gradient rule. `ObjectiveDefaults` supplies the optional parts as class variables, so an
    objective declares only what it uses.
    """

    config_name: ClassVar[str]  # its name in `OBJECTIVES`, on the command line and in YAML
    timesteps: TimestepSchedule  # the range t is drawn from, and its annealing
    uses_lora: bool  # the step keeps a LoRA score eps_phi (VSD/ESD) and fills ScoreInputs.eps_lora_*
    negative_weight: float  # > 0: a third UNet batch with the negative prompt (ScoreInputs.eps_negative)
    entropy_weight: float  # > 0: the LoRA is also asked without its camera (ScoreInputs.eps_lora_no_camera)
    camera_condition: CameraCondition  # what the LoRA's camera embedding reads (uses_lora only)
    lora_updates_per_step: int  # AdamW steps of the LoRA per training step (uses_lora only)

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        ...

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        """The gradient g on the clean latents [B, c, h, w]; `reparameterised_loss` applies it."""
        ...

    def truncation(self, progress: float) -> float | None:
        """The score-truncation threshold c(progress), or None for an objective that does not truncate."""
        ...

    @property
    def max_truncation(self) -> float | None:
        """The largest c over the run (what densification's growth threshold is relative to), or None."""
        ...


class ObjectiveDefaults:
    """The optional parts of `Objective` for an objective that does not use them: no LoRA, two UNet
    batches (view prompt, negative prompt), no truncation. Objectives override them as fields."""

    uses_lora: ClassVar[bool] = False
    negative_weight: ClassVar[float] = 0.0
    entropy_weight: ClassVar[float] = 0.0
    camera_condition: ClassVar[CameraCondition] = "extrinsics"
    lora_updates_per_step: ClassVar[int] = 1
    max_truncation: ClassVar[float | None] = None

    def truncation(self, progress: float) -> float | None:
        return None
