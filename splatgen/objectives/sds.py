"""Score Distillation Sampling (DreamFusion, Poole et al. 2022, arXiv 2209.14988).

g = w(t) (eps_hat - eps), eps_hat = eps_0 + s (eps_y - eps_0) (diffusers CFG convention).
Or, with `reconstruction_rescale` set, the x0-reconstruction form of threestudio's MVDream
guidance (`bytedance/MVDream-threestudio@efcd6c3`, `multiview_diffusion_guidance.py`,
`recon_loss`): g = x - x0_hat, where x0_hat is the clean latent the guided prediction implies,
its scale matched per group of views to the unguided reconstruction's (`recon_std_rescale`).
Also home of the two pieces every guided objective shares: classifier-free guidance and the
validation of the fields they have in common.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, get_args

from splatgen.objectives.base import ObjectiveDefaults, ScoreInputs, Weighting, timestep_weights
from splatgen.objectives.schedules import TimestepSchedule

if TYPE_CHECKING:
    import torch


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
    reconstruction_rescale: float | None = None
    """None: the eps form above. A number in [0, 1]: threestudio MVDream's x0-reconstruction form g = x - x0_hat
    (no w(t)), x0_hat's std per view group blended this much towards the unguided reconstruction's (MVDream: 0.5)."""

    def validate(self) -> None:
        validate_shared_fields(self.guidance_scale, self.weighting, self.timesteps)
        if self.reconstruction_rescale is not None and not 0.0 <= self.reconstruction_rescale <= 1.0:
            raise ValueError(
                f"reconstruction_rescale must lie in [0, 1] (or be unset), got {self.reconstruction_rescale}"
            )

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return sds_gradient(self, inputs)


def sds_gradient(config: SDS, inputs: ScoreInputs) -> torch.Tensor:
    """DreamFusion's SDS gradient on the clean latent: w(t) (eps_hat - eps), [B, c, h, w].

    Exactly (s - 1)(eps_y - eps_0) [mode-disengaging] + eps_y [mode-seeking] - eps [variance
    reduction] inside the weight (Tang et al., arXiv 2312.09305, Eq. 4).
    """
    eps_hat = classifier_free_guidance(inputs.eps_cond, inputs.eps_uncond, config.guidance_scale)  # [B, c, h, w]
    if config.reconstruction_rescale is not None:
        return inputs.latents - reconstructed_latents(inputs, eps_hat, config.reconstruction_rescale)
    weights = timestep_weights(config.weighting, inputs.timesteps, inputs.alphas_cumprod)  # [B, 1, 1, 1]
    return weights * (eps_hat - inputs.noise)


def reconstructed_latents(inputs: ScoreInputs, eps_hat: torch.Tensor, rescale: float) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar), std-rescaled per view group (threestudio MVDream).

    factor = std(x0 from eps_y) / std(x0 from eps_hat) over each group's [views, c, h, w] (unbiased, +1e-8);
    x0 = rescale * factor * x0_hat + (1 - rescale) * x0_hat. [B, c, h, w]
    """
    abar = inputs.alphas_cumprod.to(inputs.timesteps.device)[inputs.timesteps].view(-1, 1, 1, 1).to(eps_hat)
    noisy = abar.sqrt() * inputs.latents + (1.0 - abar).sqrt() * inputs.noise  # x_t
    guided = (noisy - (1.0 - abar).sqrt() * eps_hat) / abar.sqrt()  # [B, c, h, w]
    if rescale == 0.0:
        return guided
    unguided = (noisy - (1.0 - abar).sqrt() * inputs.eps_cond) / abar.sqrt()
    group = inputs.views_per_group
    grouped_std = lambda x: x.reshape(-1, group * x[0].numel()).std(dim=1) + 1e-8  # noqa: E731  [G]
    factor = (grouped_std(unguided) / grouped_std(guided)).repeat_interleave(group).view(-1, 1, 1, 1)
    return rescale * factor * guided + (1.0 - rescale) * guided
