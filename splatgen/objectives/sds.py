"""Score Distillation Sampling (DreamFusion, Poole et al. 2022, arXiv 2209.14988).

g = w(t) (eps_hat - eps), eps_hat = eps_0 + s (eps_y - eps_0) (diffusers CFG convention).
Also home of the two pieces every guided objective shares: classifier-free guidance and the
validation of the fields they have in common.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, get_args

import torch

from splatgen.objectives.base import ObjectiveDefaults, ScoreInputs, Weighting, timestep_weights
from splatgen.objectives.schedules import TimestepSchedule


def classifier_free_guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """eps_hat = eps_0 + s (eps_y - eps_0) (Ho and Salimans 2022; diffusers convention): [B, c, h, w]."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def validate_shared_fields(guidance_scale: float, weighting: str, timesteps: TimestepSchedule) -> None:
    """Checks common to all objectives; raises ValueError naming the field."""
    if not guidance_scale >= 0.0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if weighting not in get_args(Weighting):
        raise ValueError(f"weighting must be one of {get_args(Weighting)}, got {weighting!r}")
    timesteps.validate()


def gaussiandreamer_timesteps() -> TimestepSchedule:
    """t in 0.02..0.98, the upper end dropping to 0.55 after step 500 of 1,200 (GaussianDreamer, Yi et al. 2024:
    `max_step_percent: [500, 0.98, 0.55, 501]` in its threestudio config): large t shapes, small t refines."""
    return TimestepSchedule(annealing="step", annealed_max_fraction=0.55, anneal_progress=500 / 1200)


@dataclass
class SDS(ObjectiveDefaults):
    """Score Distillation Sampling (DreamFusion): g = w(t) (eps_hat - eps)."""

    config_name: ClassVar[str] = "sds"

    guidance_scale: float = 100.0
    """Classifier-free guidance scale s, diffusers convention eps_0 + s (eps_y - eps_0) (threestudio's 100 is 101 here)."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): sds = 1 - abar_t (DreamFusion), uniform = 1, fantasia3d = sqrt(abar_t)(1 - abar_t)."""
    timesteps: TimestepSchedule = field(default_factory=gaussiandreamer_timesteps)
    """Range t is drawn from per view (GaussianDreamer: 0.02..0.98, the maximum dropping to 0.55 at 500/1200 of the run)."""

    def validate(self) -> None:
        validate_shared_fields(self.guidance_scale, self.weighting, self.timesteps)

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return sds_gradient(self, inputs)


def sds_gradient(config: SDS, inputs: ScoreInputs) -> torch.Tensor:
    """DreamFusion's SDS gradient on the clean latent: w(t) (eps_hat - eps), [B, c, h, w].

    Exactly (s - 1)(eps_y - eps_0) [mode-disengaging] + eps_y [mode-seeking] - eps [variance
    reduction] inside the weight (Tang et al., arXiv 2312.09305, Eq. 4).
    """
    weights = timestep_weights(config.weighting, inputs.timesteps, inputs.alphas_cumprod)  # [B, 1, 1, 1]
    eps_hat = classifier_free_guidance(inputs.eps_cond, inputs.eps_uncond, config.guidance_scale)  # [B, c, h, w]
    return weights * (eps_hat - inputs.noise)
