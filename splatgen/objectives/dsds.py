"""Score debiasing, D-SDS (Hong et al. 2023, arXiv 2303.15413): SDS with a rising element-wise clamp.

Truncating the score cuts the large, view-biased components of the SDS gradient early on and lets
detail through later: the threshold c rises linearly from 2.0 to 8.0 over the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from splatgen.objectives.base import ObjectiveDefaults, ScoreInputs, Weighting, timestep_weights
from splatgen.objectives.schedules import TimestepSchedule, truncation_threshold
from splatgen.objectives.sds import classifier_free_guidance, gaussiandreamer_timesteps, validate_shared_fields

if TYPE_CHECKING:
    import torch

TruncationPlacement = Literal["weighted", "residual"]


@dataclass
class DSDS(ObjectiveDefaults):
    """Debiased SDS (score debiasing): g = clamp(w(t)(eps_hat - eps), -c, c), c rising 2 -> 8 over the run."""

    config_name: ClassVar[str] = "dsds"

    guidance_scale: float = 100.0
    """Classifier-free guidance scale s, diffusers convention eps_0 + s (eps_y - eps_0)."""
    truncation_start: float = 2.0
    """Truncation threshold c at the start of the run (D-SDS for Stable Diffusion: 2.0)."""
    truncation_end: float = 8.0
    """Truncation threshold c at the end of the run, reached linearly (D-SDS: 8.0)."""
    truncation_placement: TruncationPlacement = "weighted"
    """What is clamped: weighted = w(t)(eps_hat - eps) (threestudio grad_clip); residual = eps_hat - eps, then weighted (SJC's run_sjc.py, which also uses weighting uniform)."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): sds = 1 - abar_t, uniform = 1, fantasia3d = sqrt(abar_t)(1 - abar_t)."""
    timesteps: TimestepSchedule = field(default_factory=gaussiandreamer_timesteps)
    """Range t is drawn from per view (GaussianDreamer: 0.02..0.98, the maximum dropping to 0.55 at 500/1200 of the run)."""

    def validate(self) -> None:
        validate_shared_fields(self.guidance_scale, self.weighting, self.timesteps)
        if not self.truncation_start > 0.0:
            raise ValueError(f"truncation_start must be > 0, got {self.truncation_start}")
        if not self.truncation_end >= self.truncation_start:
            raise ValueError(
                f"truncation_end ({self.truncation_end}) must be >= truncation_start ({self.truncation_start})"
            )
        if self.truncation_placement not in ("weighted", "residual"):
            raise ValueError(
                f"truncation_placement must be 'weighted' or 'residual', got {self.truncation_placement!r}"
            )

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return dsds_gradient(self, inputs)

    def truncation(self, progress: float) -> float:
        return truncation_threshold(progress, self.truncation_start, self.truncation_end)

    @property
    def max_truncation(self) -> float:
        return max(self.truncation_start, self.truncation_end)


def dsds_gradient(config: DSDS, inputs: ScoreInputs) -> torch.Tensor:
    """D-SDS score debiasing: the SDS gradient clamped element-wise to [-c, c], [B, c, h, w].

    c = truncation_threshold(progress) rises linearly from truncation_start to truncation_end.
    'weighted' clamps w(t)(eps_hat - eps) as threestudio does, so |g| <= c; 'residual' clamps
    eps_hat - eps before weighting, as the SJC reference (run_sjc.py clamps (D - y) / sigma =
    eps - eps_hat with threshold 8 (0.25 + 0.75 progress), unweighted), so |g| <= w(t) c.
    """
    truncation = truncation_threshold(inputs.progress, config.truncation_start, config.truncation_end)
    weights = timestep_weights(config.weighting, inputs.timesteps, inputs.alphas_cumprod)  # [B, 1, 1, 1]
    residual = classifier_free_guidance(inputs.eps_cond, inputs.eps_uncond, config.guidance_scale) - inputs.noise
    if config.truncation_placement == "residual":
        return weights * residual.clamp(-truncation, truncation)
    return (weights * residual).clamp(-truncation, truncation)
