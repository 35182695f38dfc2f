"""The prior protocol, the forward process, and classifier-free-guidance batching (the one place that
builds CFG batches).

A prior maps renders to latents and predicts the noise in noisy latents. Implementations:
Stable Diffusion through diffusers (`stable_diffusion.py`), the MVDream multi-view prior
(`mvdream.py`, Shi et al. 2023, arXiv 2308.16512), an oracle that knows the target asset
(`oracle.py`, for exact reconstruction tests), and analytic Gaussian mixtures (the 2D toy,
`scripts/toy2d.py`).

Adding a prior: a class with the four members of `DiffusionPrior`, built by
`train.assemble.load_prior`. The step never looks past the protocol: it calls `encode_images` on
the renders, `embed_prompts` once per run, and `predict_noise` through `batched_noise_predictions`,
which passes the cameras of every latent, so a prior that conditions on cameras gets them.
Batches keep the step's camera order: CFG copies are whole batches, concatenated
(`[view batch] * K`), so groups of consecutive views stay together inside each copy. A prior may
also have a `prompts_encoded()` method: the step calls it once the run's prompts are embedded
(Stable Diffusion frees its text encoder there).

A multi-view prior denoises groups of views jointly: it declares `views_per_group` (MVDream: 4),
and the step then samples whole groups (each group's views contiguous, one timestep per group).
A prior without the attribute denoises single views (`views_per_group(prior) == 1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from splatgen.scene.cameras import CameraBatch

if TYPE_CHECKING:
    import torch


@runtime_checkable
class DiffusionPrior(Protocol):
    """What the training step reads of a prior (`splatgen.train.step`, `splatgen.train.distill`)."""

    alphas_cumprod: torch.Tensor  # [T] float32, on the prior's device: the training noise schedule
    image_size: int  # renders are resized to this square resolution before encoding

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> clean latents x [B, c, h, w]; differentiable."""
        ...

    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts -> text embeddings [P, L, D] (computed once per distinct prompt)."""
        ...

    def predict_noise(
        self,
        noisy_latents: torch.Tensor,  # [B, c, h, w]
        timesteps: torch.Tensor,  # [B] int64 in [0, T)
        text_embeddings: torch.Tensor,  # [B, L, D]
        cameras: CameraBatch | None = None,  # the views the latents were rendered from
    ) -> torch.Tensor:
        """Noise prediction eps [B, c, h, w] under no_grad; `cameras[i]` is the view of latent i."""
        ...


def add_noise(
    clean: torch.Tensor,  # [B, c, h, w] x
    noise: torch.Tensor,  # [B, c, h, w] eps
    timesteps: torch.Tensor,  # [B] int64
    alphas_cumprod: torch.Tensor,  # [T]
) -> torch.Tensor:
    """The forward process x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps, [B, c, h, w] (DDPM, Ho et al. 2020,
    Eq. 4; diffusers' `DDPMScheduler.add_noise`)."""
    abar = alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(clean.dtype)
    return abar.sqrt() * clean + (1.0 - abar).sqrt() * noise


def views_per_group(prior: DiffusionPrior) -> int:
    """How many views the prior denoises jointly (1 unless it declares `views_per_group`)."""
    return int(getattr(prior, "views_per_group", 1))


def batched_noise_predictions(
    prior: DiffusionPrior,
    noisy_latents: torch.Tensor,  # [B, c, h, w]
    timesteps: torch.Tensor,  # [B]
    embeddings: Sequence[torch.Tensor],  # K x [B, L, D], one per condition
    cameras: CameraBatch | None = None,
) -> list[torch.Tensor]:
    """K noise predictions, each [B, c, h, w], from ONE batched call of K*B (the CFG batch).

    The K copies are stacked condition-major, so a multi-view prior's groups stay contiguous.
    """
    import torch

    copies = len(embeddings)
    repeated_cameras = cameras.repeat(copies) if cameras is not None else None  # on the cameras' device
    eps = prior.predict_noise(
        noisy_latents.repeat(copies, 1, 1, 1),
        timesteps.repeat(copies),
        torch.cat(list(embeddings)),
        repeated_cameras,
    )
    return list(eps.chunk(copies))
