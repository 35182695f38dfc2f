"""An oracle prior: a denoiser that knows the target asset, for exact reconstruction tests.

For a camera c the oracle renders the target asset, x_target(c), and predicts the noise that
takes x_target to x_t exactly:

    eps(x_t, t, c) = (x_t - sqrt(abar_t) x_target(c)) / sqrt(1 - abar_t)

With the SDS form g = w(t) (eps_hat - eps) and guidance 1 this gives
g = w(t) sqrt(abar_t / (1 - abar_t)) (x - x_target): a weighted photometric L2 gradient, so
distilling through the full loop must reconstruct the target, which tests the whole pipeline
without model weights. Latents are the images themselves mapped to [-1, 1]; text conditions are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from splatgen.render import Backend, rasterize
from splatgen.scene.cameras import CameraBatch
from splatgen.scene.gaussians import Gaussians, activate


def linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """Stable Diffusion's 'scaled_linear' beta schedule -> alphas_cumprod [T] (Rombach et al. 2022)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


class OraclePrior:
    """Implements `DiffusionPrior` for a known target asset rendered over a fixed background."""

    def __init__(
        self,
        target: Gaussians,
        image_size: int,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        device: torch.device | str = "cpu",
        backend: Backend = "auto",
    ) -> None:
        self.image_size = image_size
        self.device = torch.device(device)
        self.alphas_cumprod = linear_alphas_cumprod().to(self.device)
        self.background = torch.tensor(background, dtype=torch.float32, device=self.device)
        self.backend = backend
        self._target = {key: value.to(self.device) for key, value in target.to_parameters(self.device).items()}

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> latents [B, 3, H, W] in [-1, 1] (identity up to affine)."""
        return 2.0 * images - 1.0

    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.zeros(len(prompts), 1, 1, device=self.device)  # [P, 1, 1]: the oracle ignores text

    @torch.no_grad()
    def render_target(self, cameras: CameraBatch) -> torch.Tensor:
        """The target asset's latents [B, 3, H, W] for these cameras (each distinct camera rendered once:
        the CFG batch repeats every camera)."""
        cameras = cameras.to(self.device)
        poses = torch.cat([cameras.viewmats.flatten(1), cameras.Ks.flatten(1)], dim=1)  # [B, 25]
        unique_poses, inverse = torch.unique(poses, dim=0, return_inverse=True)
        first = torch.full((len(unique_poses),), len(cameras), dtype=torch.long, device=poses.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(cameras), device=poses.device), reduce="amin")
        distinct = cameras.select(first)
        backgrounds = self.background.expand(len(distinct), 3)
        output = rasterize(activate(self._target), distinct, backgrounds, backend=self.backend)
        return self.encode_images(output.images.permute(0, 3, 1, 2))[inverse]

    @torch.no_grad()
    def predict_noise(
        self,
        noisy_latents: torch.Tensor,  # [B, 3, H, W]
        timesteps: torch.Tensor,  # [B]
        text_embeddings: torch.Tensor,  # ignored
        cameras: CameraBatch | None = None,
    ) -> torch.Tensor:
        if cameras is None:
            raise ValueError("the oracle prior needs the cameras the latents were rendered from")
        target = self.render_target(cameras)
        abar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        return (noisy_latents - abar.sqrt() * target) / (1.0 - abar).sqrt()
