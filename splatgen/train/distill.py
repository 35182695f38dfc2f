"""One score-distillation step on a batch of latents: noise them, ask the prior, apply the objective.

    x [B, c, h, w]  --(t, eps)-->  x_t  --prior-->  eps_y, eps_0 (+ LoRA scores)  --objective-->  g
    loss = 0.5 ||x - (x - g).detach()||^2 / B        (so d loss / d x = g / B)

Everything here is the same for every objective; what differs lives in the objective's gradient
rule (`splatgen.objectives`) and, for VSD/ESD, in the LoRA score (`splatgen.prior.lora`). The
`region(name)` hook wraps each part (a no-op by default; `scripts/bench.py` times the parts with it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from splatgen.objectives.base import Objective, ScoreInputs, reparameterised_loss
from splatgen.objectives.schedules import sample_timesteps, timestep_range
from splatgen.prior.base import DiffusionPrior, add_noise, batched_noise_predictions, views_per_group
from splatgen.prompts.perp_neg import perp_neg_conditional
from splatgen.scene.cameras import CameraBatch

if TYPE_CHECKING:
    from splatgen.prior.lora import LoraScore

Region = Callable[[str], AbstractContextManager]
"""`region(name)` -> a context manager around one named part of a step (timing, profiling ranges)."""


def no_region(name: str) -> AbstractContextManager:
    """The default `Region`: does nothing."""
    return nullcontext()


@dataclass
class PromptEmbeddings:
    """The text conditions of one batch of views, each [B, L, D]."""

    view: torch.Tensor  # the view prompt of each camera (eps_y)
    negative: torch.Tensor  # the negative prompt (eps_0 of CFG; "" by default)
    empty: torch.Tensor  # the empty prompt (CSD's null branch when its negative term is on)
    plain: torch.Tensor  # the prompt without a view suffix (the VSD/ESD LoRA's condition, as in threestudio)
    perp_negatives: torch.Tensor | None = None  # [B, 2, L, D] Perp-Neg's negative view prompts (None: off)
    perp_weights: torch.Tensor | None = None  # [B, 2] their weights w_i


@dataclass
class DistillationResult:
    loss: torch.Tensor  # scalar, differentiable in the latents
    gradient: torch.Tensor  # [B, c, h, w] the objective's gradient on the latents
    timesteps: torch.Tensor  # [B]
    timestep_range: tuple[int, int]  # (min_step, max_step) t was drawn from at this progress
    truncation: float | None  # the objective's score-truncation threshold at this progress (None: none)
    camera_conditions: torch.Tensor | None = None  # [B, 16] the LoRA's camera input (VSD/ESD), reused to train it


def camera_condition(objective: Objective, cameras: CameraBatch) -> torch.Tensor:
    """The LoRA's camera input [B, 16]: flattened camera-to-world, or model-view-projection (ProlificDreamer)."""
    if objective.camera_condition == "mvp":
        projection = torch.zeros(len(cameras), 4, 4, dtype=cameras.Ks.dtype, device=cameras.Ks.device)
        projection[:, :3, :3] = cameras.Ks
        projection[:, 3, 2] = 1.0  # homogeneous depth
        return (projection @ cameras.viewmats).reshape(len(cameras), 16).float()
    from splatgen.prior.lora import camera_conditions  # only LoRA objectives get here; lora imports peft

    return camera_conditions(cameras)


def lora_predictions(
    lora_score: LoraScore,
    objective: Objective,
    noisy: torch.Tensor,  # [B, c, h, w]
    timesteps: torch.Tensor,  # [B]
    embeddings: torch.Tensor,  # [B, L, D]
    conditions: torch.Tensor,  # [B, 16]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(eps_phi with camera, eps_phi without camera or None): the second only where ESD's entropy term reads it."""
    if objective.entropy_weight > 0.0:
        return lora_score.predict_with_and_without_camera(noisy, timesteps, embeddings, conditions)
    return lora_score.predict(noisy, timesteps, embeddings, conditions), None


def prior_predictions(
    prior: DiffusionPrior,
    objective: Objective,
    noisy: torch.Tensor,  # [B, c, h, w]
    timesteps: torch.Tensor,  # [B]
    text: PromptEmbeddings,
    cameras: CameraBatch | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(eps_y, eps_0, eps_negative or None) from one batched UNet call.

    CSD's negative term needs the empty prompt as eps_0 and the negative prompt separately (3B);
    every other objective takes the negative prompt as eps_0 (2B). Perp-Neg adds its two negative
    view prompts to the same call (+2B) and returns its conditional prediction as eps_y.
    """
    separate_negative = objective.negative_weight > 0.0
    conditions = [text.view, text.empty, text.negative] if separate_negative else [text.view, text.negative]
    if text.perp_negatives is not None:
        conditions += list(text.perp_negatives.unbind(1))
    eps = batched_noise_predictions(prior, noisy, timesteps, conditions, cameras)
    eps_cond, eps_uncond = eps[0], eps[1]
    eps_negative = eps[2] if separate_negative else None
    if text.perp_negatives is not None:
        eps_cond = perp_neg_conditional(eps_cond, eps_uncond, eps[len(eps) - 2 :], text.perp_weights)
    return eps_cond, eps_uncond, eps_negative


def distillation_step(
    prior: DiffusionPrior,
    objective: Objective,
    latents: torch.Tensor,  # [B, c, h, w] differentiable
    cameras: CameraBatch,
    text: PromptEmbeddings,
    progress: float,
    generator: torch.Generator,
    lora_score: LoraScore | None = None,  # for objectives with uses_lora
    region: Region = no_region,
) -> DistillationResult:
    """Regions: noise, unet_cfg, unet_lora (LoRA objectives), objective."""
    with region("noise"):
        batch, group = latents.shape[0], views_per_group(prior)
        alphas_cumprod = prior.alphas_cumprod
        num_timesteps = alphas_cumprod.shape[0]
        timesteps = sample_timesteps(objective.timesteps, progress, batch // group, num_timesteps, generator)
        timesteps = timesteps.repeat_interleave(group).to(latents.device)  # one t per group of jointly denoised views
        noise = torch.randn(latents.shape, generator=generator, device=generator.device)
        noise = noise.to(latents.device, latents.dtype)  # drawn on the generator's (the training) device
        clean = latents.detach()
        noisy = add_noise(clean, noise, timesteps, alphas_cumprod)  # x_t [B, c, h, w]
    with region("unet_cfg"):
        eps_cond, eps_uncond, eps_negative = prior_predictions(prior, objective, noisy, timesteps, text, cameras)
    eps_lora_camera = eps_lora_no_camera = conditions = None
    if lora_score is not None:
        with region("unet_lora"):
            conditions = camera_condition(objective, cameras)
            eps_lora_camera, eps_lora_no_camera = lora_predictions(
                lora_score, objective, noisy, timesteps, text.plain, conditions
            )
    with region("objective"):
        inputs = ScoreInputs(
            latents=clean,
            noise=noise,
            timesteps=timesteps,
            alphas_cumprod=alphas_cumprod,
            eps_cond=eps_cond.to(clean.dtype),
            eps_uncond=eps_uncond.to(clean.dtype),
            progress=progress,
            eps_lora_camera=eps_lora_camera,
            eps_lora_no_camera=eps_lora_no_camera,
            eps_negative=None if eps_negative is None else eps_negative.to(clean.dtype),
            views_per_group=group,
        )
        gradient = objective.gradient(inputs)  # non-finite values are caught by the trainer, which skips the step
        loss = reparameterised_loss(latents, gradient)
    return DistillationResult(
        loss=loss,
        gradient=gradient,
        timesteps=timesteps,
        timestep_range=timestep_range(objective.timesteps, progress, num_timesteps),
        truncation=objective.truncation(progress),
        camera_conditions=conditions,
    )
