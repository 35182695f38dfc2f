"""Variational Score Distillation (ProlificDreamer, Wang et al. 2023, arXiv 2305.16213).

g = w(t) (eps_hat_pre - eps_phi(x_t, t, y, c)): the pretrained guided score minus the score of the
distribution of the current renders, estimated by a camera-conditioned LoRA of the same UNet.
The LoRA's training lives with the prior; its hyperparameters are fields here so that one
dataclass documents and selects the whole method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from splatgen.objectives.base import CameraCondition, ObjectiveDefaults, ScoreInputs, Weighting, timestep_weights
from splatgen.objectives.schedules import TimestepSchedule
from splatgen.objectives.sds import classifier_free_guidance, validate_shared_fields

if TYPE_CHECKING:
    import torch


def prolificdreamer_timesteps() -> TimestepSchedule:
    """t in 0.02..0.98, the upper end dropping to 0.5 at a fifth of the run (threestudio prolificdreamer.yaml:
    max_step_percent [5000, 0.98, 0.5, 5001] of 25,000 steps)."""
    return TimestepSchedule(annealing="step", annealed_max_fraction=0.5, anneal_progress=0.2)


@dataclass
class VariationalScoreFields(ObjectiveDefaults):
    """Fields shared by VSD and ESD: guidance, weighting, timesteps and the LoRA's hyperparameters."""

    guidance_scale: float = 7.5
    """Classifier-free guidance scale s of the pretrained score, diffusers convention (ProlificDreamer: 7.5)."""
    lora_rank: int = 4
    """Rank of the LoRA on the UNet's attention projections to_q, to_k, to_v, to_out.0."""
    lora_lr: float = 1e-4
    """Learning rate of the LoRA and its camera embedding (AdamW, betas 0.9/0.99)."""
    lora_updates_per_step: int = 1
    """AdamW steps of the LoRA per training step, each on fresh noise and t of the same renders (threestudio and ProlificDreamer: 1)."""
    camera_dropout: float = 0.1
    """Probability that a LoRA training sample has its camera replaced by zeros (trains the no-camera score)."""
    camera_condition: CameraCondition = "extrinsics"
    """What the LoRA's camera embedding (Linear-SiLU-Linear on 16 numbers, added to the time embedding) reads: the flattened 4x4 camera-to-world matrix, or the model-view-projection matrix."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): sds = 1 - abar_t, uniform = 1, fantasia3d = sqrt(abar_t)(1 - abar_t)."""
    timesteps: TimestepSchedule = field(default_factory=prolificdreamer_timesteps)
    """Range t is drawn from per view (ProlificDreamer: max 0.98 -> 0.5 at a fifth of the run)."""

    uses_lora: ClassVar[bool] = True

    def validate(self) -> None:
        validate_shared_fields(self.guidance_scale, self.weighting, self.timesteps)
        if not self.lora_rank >= 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if not self.lora_lr > 0.0:
            raise ValueError(f"lora_lr must be > 0, got {self.lora_lr}")
        if not 1 <= self.lora_updates_per_step <= 16:
            raise ValueError(f"lora_updates_per_step must lie in [1, 16], got {self.lora_updates_per_step}")
        if not 0.0 <= self.camera_dropout < 1.0:
            raise ValueError(f"camera_dropout must lie in [0, 1), got {self.camera_dropout}")
        if self.camera_condition not in ("extrinsics", "mvp"):
            raise ValueError(f"camera_condition must be 'extrinsics' or 'mvp', got {self.camera_condition!r}")


@dataclass
class VSD(VariationalScoreFields):
    """Variational score distillation (ProlificDreamer): g = w(t)(eps_hat_pre - eps_lora(x_t, t, y, camera))."""

    config_name: ClassVar[str] = "vsd"

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return vsd_gradient(self, inputs)


def variational_score_gradient(
    config: VariationalScoreFields,
    inputs: ScoreInputs,
    eps_variational: torch.Tensor,  # [B, c, h, w] the score of the renders' distribution
) -> torch.Tensor:
    """w(t) (eps_hat_pre - eps_variational), [B, c, h, w]: VSD's rule for any variational score."""
    weights = timestep_weights(config.weighting, inputs.timesteps, inputs.alphas_cumprod)  # [B, 1, 1, 1]
    eps_pretrained = classifier_free_guidance(inputs.eps_cond, inputs.eps_uncond, config.guidance_scale)
    return weights * (eps_pretrained - eps_variational)


def vsd_gradient(config: VSD, inputs: ScoreInputs) -> torch.Tensor:
    """ProlificDreamer's VSD gradient: w(t) (eps_hat_pre - eps_phi(x_t, t, y, c)), [B, c, h, w].

    eps_phi is the camera-conditioned LoRA prediction at the same x_t and t (threestudio
    stable_diffusion_vsd_guidance with guidance_scale_lora = 1).
    """
    if inputs.eps_lora_camera is None:
        raise ValueError("VSD needs ScoreInputs.eps_lora_camera (the LoRA prediction with the camera)")
    return variational_score_gradient(config, inputs, inputs.eps_lora_camera)
