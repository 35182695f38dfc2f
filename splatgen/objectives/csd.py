"""Classifier Score Distillation (Yu et al. 2023, arXiv 2310.19415).

The classifier score eps_y - eps_0 (the implicit classifier's gradient) alone is the supervision
signal: g = w(t) s (eps_y - eps_0), no noise term. The optional negative-prompt term of the CSD
code (a eps_y + b eps_neg + c eps_null with b + c = -1) needs one more UNet pass, with a separate
negative prompt, in ScoreInputs.eps_negative; eps_uncond is then the empty prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from splatgen.objectives.base import ObjectiveDefaults, ScoreInputs, Weighting, timestep_weights
from splatgen.objectives.schedules import TimestepSchedule
from splatgen.objectives.sds import validate_shared_fields

if TYPE_CHECKING:
    import torch


@dataclass
class CSD(ObjectiveDefaults):
    """Classifier score distillation: g = w(t) s [(eps_y - eps_0) - beta (eps_neg - eps_0)]."""

    config_name: ClassVar[str] = "csd"

    guidance_scale: float = 1.0
    """Scale s on the classifier score (the CSD code uses 1: a = 1, c = -1; the step size absorbs it)."""
    negative_weight: float = 0.0
    """beta in [0, 1]: weight of the negative-prompt direction (CSD refine: 0.5 at the end); > 0 needs ScoreInputs.eps_negative."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): sds = 1 - abar_t (the CSD code), uniform = 1, fantasia3d = sqrt(abar_t)(1 - abar_t)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    """Range t is drawn from per view (0.02..0.98, no annealing; csd-sd-refine uses max 0.5)."""

    def validate(self) -> None:
        validate_shared_fields(self.guidance_scale, self.weighting, self.timesteps)
        if not 0.0 <= self.negative_weight <= 1.0:
            raise ValueError(f"negative_weight must lie in [0, 1], got {self.negative_weight}")

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return csd_gradient(self, inputs)


def csd_gradient(config: CSD, inputs: ScoreInputs) -> torch.Tensor:
    """CSD: w(t) s (eps_y - eps_0), minus beta w(t) s (eps_neg - eps_0) when negative_weight > 0, [B, c, h, w].

    In the CSD code's form a eps_y + b eps_neg + c eps_null: a = 1, b = -beta, c = beta - 1.
    """
    weights = timestep_weights(config.weighting, inputs.timesteps, inputs.alphas_cumprod)  # [B, 1, 1, 1]
    classifier_score = inputs.eps_cond - inputs.eps_uncond  # [B, c, h, w]
    if config.negative_weight == 0.0:
        return weights * config.guidance_scale * classifier_score
    if inputs.eps_negative is None:
        raise ValueError("CSD with negative_weight > 0 needs ScoreInputs.eps_negative (the negative-prompt prediction)")
    negative_direction = inputs.eps_negative - inputs.eps_uncond  # [B, c, h, w]
    return weights * config.guidance_scale * (classifier_score - config.negative_weight * negative_direction)
