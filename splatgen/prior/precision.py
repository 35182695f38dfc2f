"""How the prior's dtype changes the VSD/ESD LoRA gradient: exact zeros and bias against fp32.

The LoRA loss (`LoraScore.diffusion_loss`) is a mean over B x 4 x h x w values, so the gradient
that enters the UNet's backward pass is 2 (eps_phi - eps) / (B 4 h w) per value: about 8e-6 at
batch 4 and 64x64 latents, below fp16's smallest normal number (6.1e-5) and close to its smallest
subnormal (6e-8). Backpropagated through an fp16 UNet without loss scaling, part of it flushes to
zero and the LoRA gradient shrinks; bf16 keeps fp32's exponent range (Kalamkar et al. 2019, "A
Study of BFLOAT16 for Deep Learning Training", arXiv 1905.12322), so only its rounding remains.
The LoRA weights themselves are fp32 in every case (lora.py).

`lora_gradient_precision` builds the same prior in each dtype, gives every copy the same LoRA
weights (the fp32 copy's, with a nonzero B: peft starts B at zero, which makes A's gradient zero),
the same fp32 text embeddings and the same draws, and compares one LoRA gradient with the fp32 one.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from splatgen.prior.lora import LoraScore
from splatgen.prior.stable_diffusion import StableDiffusionPrior

PROMPT = "a DSLR photo of a corgi wearing a hat"


@dataclass(frozen=True)
class GradientPrecision:
    """One dtype's LoRA gradient g compared with the fp32 gradient g32 of the same weights and inputs."""

    dtype: str
    zero_fraction: float  # entries of g that are exactly 0 where g32 is not, over entries where g32 is not
    scale: float  # <g, g32> / <g32, g32>: 1 = unbiased on average, < 1 = shrunk
    relative_error: float  # ||g - g32|| / ||g32||
    loss: float  # the LoRA loss in this dtype

    def as_dict(self) -> dict:
        return asdict(self)


def perturb_lora(lora: LoraScore, seed: int, scale: float = 0.02) -> None:
    """Give every LoRA B matrix small random values (peft initialises them to zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in lora.unet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))


@dataclass
class ProbeInputs:
    """The draws every dtype's gradient is computed from (fp32, on the device)."""

    latents: torch.Tensor  # [B, 4, h, w]
    noise: torch.Tensor  # [B, 4, h, w]
    timesteps: torch.Tensor  # [B]
    text_embeddings: torch.Tensor  # [1, L, D] from the fp32 text encoder
    conditions: torch.Tensor  # [B, 16] camera conditions

    @staticmethod
    def draw(prior: StableDiffusionPrior, batch: int, seed: int) -> ProbeInputs:
        generator = torch.Generator().manual_seed(seed)
        side = prior.image_size // 8
        shape = (batch, 4, side, side)
        latents = torch.randn(shape, generator=generator)
        noise = torch.randn(shape, generator=generator)
        timesteps = torch.randint(20, 980, (batch,), generator=generator)
        conditions = torch.randn(batch, 16, generator=generator)
        device = prior.device
        return ProbeInputs(
            latents.to(device),
            noise.to(device),
            timesteps.to(device),
            prior.embed_prompts([PROMPT]).float(),
            conditions.to(device),
        )


def lora_gradient(lora: LoraScore, inputs: ProbeInputs) -> tuple[torch.Tensor, float]:
    """The flattened fp32 gradient [P] of the LoRA loss in the LoRA and camera-embedding weights, and the loss."""
    parameters = [parameter for group in lora.optimizer.param_groups for parameter in group["params"]]
    lora.optimizer.zero_grad(set_to_none=True)
    loss = lora.diffusion_loss(
        inputs.latents, inputs.noise, inputs.timesteps, inputs.text_embeddings, inputs.conditions
    )
    loss.backward()
    gradient = torch.cat([parameter.grad.reshape(-1).float() for parameter in parameters])  # [P]
    return gradient.detach().cpu(), float(loss.detach())


def compare(dtype: str, gradient: torch.Tensor, reference: torch.Tensor, loss: float) -> GradientPrecision:
    nonzero = reference != 0
    zeros = ((gradient == 0) & nonzero).sum() / nonzero.sum().clamp(min=1)
    dot = torch.dot(gradient.double(), reference.double())
    reference_squared = torch.dot(reference.double(), reference.double())
    error = (gradient.double() - reference.double()).norm() / reference_squared.sqrt()
    return GradientPrecision(dtype, float(zeros), float(dot / reference_squared), float(error), loss)


def lora_gradient_precision(
    make_prior: Callable[[str], StableDiffusionPrior],  # dtype name (fp32, fp16, bf16) -> a fresh prior
    dtypes: list[str],
    batch: int = 4,
    seed: int = 0,
) -> list[GradientPrecision]:
    """One `GradientPrecision` per dtype (fp32 first, as the reference: exactly zero error)."""
    reference_prior = make_prior("fp32")
    reference_lora = LoraScore(reference_prior, seed=seed)
    perturb_lora(reference_lora, seed)
    lora_state = reference_lora.state_dict()
    inputs = ProbeInputs.draw(reference_prior, batch, seed)
    reference, reference_loss = lora_gradient(reference_lora, inputs)
    results = [compare("fp32", reference, reference, reference_loss)]
    del reference_lora, reference_prior
    for dtype in dtypes:
        if dtype == "fp32":
            continue
        gc.collect()
        prior = make_prior(dtype)
        lora = LoraScore(prior, seed=seed)
        lora.load_state_dict(lora_state)
        gradient, loss = lora_gradient(lora, inputs)
        results.append(compare(dtype, gradient, reference, loss))
        del lora, prior
    return results
