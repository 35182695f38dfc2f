"""Stable Score Distillation (Tang et al. 2023, arXiv 2312.09305), sections 4.4-4.5.

SDS's residual splits into mode-disengaging (eps_y - eps_0), mode-seeking (eps_y) and
variance-reducing (-eps) terms. SSD keeps the mode-disengaging term, the main supervision signal,
for t >= T_M, and below T_M, where it drives renders off the image manifold (colour saturation),
swaps it for the mode-seeking term with the adaptive variance reduction of Eq. 8-9,
eps_y - h eps, h = <eps_y, eps> / <eps, eps> per sample, rescaled to the norm of the
mode-disengaging term (scale matching, App. Fig. 22).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from splatgen.objectives.base import ObjectiveDefaults, ScoreInputs, Weighting, timestep_weights
from splatgen.objectives.schedules import TimestepSchedule
from splatgen.objectives.sds import validate_shared_fields

if TYPE_CHECKING:
    import torch

STABLE_DIFFUSION_TRAIN_TIMESTEPS = 1000


@dataclass
class SSD(ObjectiveDefaults):
    """Stable score distillation: mode-disengaging for t >= T_M, scale-matched variance-reduced mode-seeking below."""

    config_name: ClassVar[str] = "ssd"

    guidance_scale: float = 7.5
    """Scale s on the whole estimator, s w(t) E (the paper works at low CFG; its threestudio runs build on the ProlificDreamer config, 7.5)."""
    threshold_timestep: int = 200
    """T_M: t < T_M uses the variance-reduced mode-seeking term (paper: 200 of 1000, 1/5 of the timesteps); 0 is CSD."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): sds = 1 - abar_t, uniform = 1, fantasia3d = sqrt(abar_t)(1 - abar_t)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    """Range t is drawn from per view (0.02..0.98, no annealing: T_M = 200 then governs ~1/5 of the steps, as in the paper)."""

    def validate(self) -> None:
        validate_shared_fields(self.guidance_scale, self.weighting, self.timesteps)
        if not 0 <= self.threshold_timestep <= STABLE_DIFFUSION_TRAIN_TIMESTEPS:
            raise ValueError(
                f"threshold_timestep must lie in [0, {STABLE_DIFFUSION_TRAIN_TIMESTEPS}], got {self.threshold_timestep}"
            )

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return ssd_gradient(self, inputs)


def ssd_gradient(config: SSD, inputs: ScoreInputs) -> torch.Tensor:
    """SSD (Algorithm 1): s w(t) E, [B, c, h, w], per sample

        E = eps_y - eps_0                                       if t >= T_M  (mode-disengaging)
        E = ||eps_y - eps_0|| / ||eps_y - h eps|| (eps_y - h eps)  if t <  T_M  (Eq. 9, scale-matched)

    with h = <eps_y, eps> / <eps, eps> (Eq. 8). For t >= T_M the arithmetic is CSD's, so
    T_M = 0 gives CSD's gradient bit for bit.
    """
    import torch

    weights = timestep_weights(config.weighting, inputs.timesteps, inputs.alphas_cumprod)  # [B, 1, 1, 1]
    mode_disengaging = inputs.eps_cond - inputs.eps_uncond  # [B, c, h, w]
    noise = inputs.noise.flatten(1)  # [B, n]
    projection = (inputs.eps_cond.flatten(1) * noise).sum(1) / (noise * noise).sum(1)  # [B] h
    mode_seeking = inputs.eps_cond - projection.view(-1, 1, 1, 1) * inputs.noise  # [B, c, h, w]
    scale = mode_disengaging.flatten(1).norm(dim=1) / mode_seeking.flatten(1).norm(dim=1).clamp_min(1e-12)  # [B]
    below_threshold = (inputs.timesteps < config.threshold_timestep).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    estimator = torch.where(below_threshold, scale.view(-1, 1, 1, 1) * mode_seeking, mode_disengaging)
    return weights * config.guidance_scale * estimator
