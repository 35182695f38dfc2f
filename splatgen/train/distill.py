"""One score-distillation step on a batch of latents: noise them, ask the prior, apply the objective.

    x [B, c, h, w]  --(t, eps)-->  x_t  --prior-->  eps_y, eps_0 (+ LoRA scores)  --objective-->  g
    loss = 0.5 ||x - (x - g).detach()||^2 / B        (so d loss / d x = g / B)

Everything here is the same for every objective; what differs lives in the objective's gradient
rule (`splatgen.objectives`) and, for VSD/ESD, in the LoRA score (`splatgen.prior.lora`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from splatgen.objectives.base import ScoreInputs, reparameterised_loss
from splatgen.objectives.schedules import sample_timesteps
from splatgen.prior.base import DiffusionPrior, batched_noise_predictions
from splatgen.scene.cameras import CameraBatch


@dataclass
class PromptEmbeddings:
    """The text conditions of one batch of views, each [B, L, D]."""

    view: torch.Tensor  # the view prompt of each camera (eps_y)
    negative: torch.Tensor  # the negative prompt (eps_0 of CFG; "" by default)
    empty: torch.Tensor  # the empty prompt (CSD's null branch when its negative term is on)
    plain: torch.Tensor  # the prompt without a view suffix (the VSD/ESD LoRA's condition, as in threestudio)


@dataclass
class DistillationResult:
    loss: torch.Tensor  # scalar, differentiable in the latents
    gradient: torch.Tensor  # [B, c, h, w] the objective's gradient on the latents
    timesteps: torch.Tensor  # [B]
    camera_conditions: torch.Tensor | None = None  # [B, 16] the LoRA's camera input (VSD/ESD), reused to train it


def camera_condition(objective, cameras: CameraBatch) -> torch.Tensor:
    """The LoRA's camera input [B, 16]: flattened camera-to-world, or model-view-projection (ProlificDreamer)."""
    if getattr(objective, "camera_condition", "extrinsics") == "mvp":
        projection = torch.zeros(len(cameras), 4, 4, dtype=cameras.Ks.dtype, device=cameras.Ks.device)
        projection[:, :3, :3] = cameras.Ks
        projection[:, 3, 2] = 1.0  # homogeneous depth
        return (projection @ cameras.viewmats).reshape(len(cameras), 16).float()
    from splatgen.prior.lora import camera_conditions  # only LoRA objectives get here; lora imports peft

    return camera_conditions(cameras)


def lora_predictions(
    lora_score, objective, noisy, timesteps, embeddings, conditions
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(eps_phi with camera, eps_phi without camera or None): the second only where ESD's entropy term reads it."""
    if getattr(objective, "entropy_weight", 0.0) > 0.0:
        return lora_score.predict_with_and_without_camera(noisy, timesteps, embeddings, conditions)
    return lora_score.predict(noisy, timesteps, embeddings, conditions), None


def prior_predictions(prior, objective, noisy, timesteps, text: PromptEmbeddings, cameras) -> tuple[torch.Tensor, ...]:
    """(eps_y, eps_0, eps_negative or None) from one batched UNet call.

    CSD's negative term needs the empty prompt as eps_0 and the negative prompt separately (3B);
    every other objective takes the negative prompt as eps_0 (2B).
    """
    if getattr(objective, "negative_weight", 0.0) > 0.0:
        return tuple(
            batched_noise_predictions(prior, noisy, timesteps, [text.view, text.empty, text.negative], cameras)
        )
    eps_cond, eps_uncond = batched_noise_predictions(prior, noisy, timesteps, [text.view, text.negative], cameras)
    return eps_cond, eps_uncond, None


def distillation_step(
    prior: DiffusionPrior,
    objective,  # one of splatgen.objectives' dataclasses
    latents: torch.Tensor,  # [B, c, h, w] differentiable
    cameras: CameraBatch,
    text: PromptEmbeddings,
    progress: float,
    generator: torch.Generator,
    lora_score=None,  # splatgen.prior.lora.LoraScore for objectives with uses_lora
) -> DistillationResult:
    batch = latents.shape[0]
    alphas_cumprod = prior.alphas_cumprod
    timesteps = sample_timesteps(objective.timesteps, progress, batch, alphas_cumprod.shape[0], generator).to(
        latents.device
    )
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    clean = latents.detach()
    abar = alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(clean.dtype)
    noisy = abar.sqrt() * clean + (1.0 - abar).sqrt() * noise  # x_t
    eps_cond, eps_uncond, eps_negative = prior_predictions(prior, objective, noisy, timesteps, text, cameras)
    eps_lora_camera = eps_lora_no_camera = conditions = None
    if lora_score is not None:
        conditions = camera_condition(objective, cameras)
        eps_lora_camera, eps_lora_no_camera = lora_predictions(
            lora_score, objective, noisy, timesteps, text.plain, conditions
        )
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
    )
    gradient = objective.gradient(inputs)  # non-finite values are caught by the trainer, which skips the step
    return DistillationResult(reparameterised_loss(latents, gradient), gradient, timesteps, conditions)
