"""The variational score eps_phi of VSD and ESD: a camera-conditioned LoRA on the prior's own UNet.

ProlificDreamer (Wang et al. 2023, "ProlificDreamer: High-Fidelity and Diverse Text-to-3D
Generation with Variational Score Distillation") replaces SDS's noise target by the score of the
distribution of the current renders, estimated online by a LoRA copy of the diffusion model that
is also conditioned on the camera. ESD (Wang et al. 2024, "Taming Mode Collapse in Score
Distillation for Text-to-3D Generation", arXiv 2401.00909) mixes that score with and without the
camera, so the LoRA is trained with the camera dropped 10% of the time.

Design (threestudio's `stable-diffusion-vsd-guidance`, with peft adapters instead of diffusers'
`LoRAAttnProcessor`, which diffusers removed):
- One UNet serves both scores: peft LoRA adapters on to_q, to_k, to_v, to_out.0 (rank 4) are
  enabled only inside this module's calls; everywhere else they are off, so the pretrained
  prediction equals the original UNet's bit for bit.
- The camera (flattened 4x4 camera-to-world) goes through `TimestepEmbedding(16, time_embed_dim)`
  and is added to the time embedding. Plugged in as `unet.class_embedding` and fed as
  `class_labels` only for the duration of a LoRA call (a UNet whose config has no class embedding
  skips that branch when the attribute is None), so the pretrained path never sees it: a zero
  camera through the embedding is not a zero embedding.
- "No camera" is zeros(16). The LoRA and the camera embedding keep fp32 weights even when the UNet
  runs in fp16, and have their own AdamW (lr 1e-4, betas (0.9, 0.99), eps 1e-15; prolificdreamer.yaml).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from splatgen.prior.base import add_noise
from splatgen.prior.stable_diffusion import StableDiffusionPrior, use_lora_weights, use_pretrained_weights
from splatgen.scene.cameras import CameraBatch

ADAPTER_NAME = "splatgen_lora_score"
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
CAMERA_CONDITION_SIZE = 16  # a flattened 4x4 camera-to-world matrix


@dataclass
class LoraScoreConfig:
    """The LoRA score eps_phi of VSD/ESD (ProlificDreamer defaults)."""

    rank: int = 4
    """LoRA rank on the attention projections (to_q, to_k, to_v, to_out.0); lora_alpha = rank (scale 1)."""
    learning_rate: float = 1e-4
    """AdamW learning rate of the LoRA and camera-embedding weights (ProlificDreamer: 1e-4)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas (threestudio prolificdreamer.yaml)."""
    eps: float = 1e-15
    """AdamW epsilon (threestudio prolificdreamer.yaml)."""
    weight_decay: float = 0.01
    """AdamW weight decay (torch's default, which threestudio's config leaves in place)."""
    camera_dropout: float = 0.1
    """Probability of training a sample with the camera replaced by zeros(16) ("no camera"); ESD needs it > 0."""

    def validate(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.camera_dropout <= 1.0:
            raise ValueError(f"lora.camera_dropout must be in [0, 1], got {self.camera_dropout}")
        if self.learning_rate <= 0:
            raise ValueError(f"lora.learning_rate must be > 0, got {self.learning_rate}")


def camera_conditions(cameras: CameraBatch) -> torch.Tensor:  # [C, 16]
    """The LoRA's camera input: each camera-to-world matrix (OpenCV axes), flattened row-major."""
    return cameras.camtoworlds.reshape(len(cameras), CAMERA_CONDITION_SIZE).float()


def drop_cameras(conditions: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:  # [B, 16]
    """Replace each row by zeros(16) ("no camera") with `probability`, drawn from `generator`."""
    keep = torch.rand(conditions.shape[0], generator=generator, device=generator.device) >= probability  # [B]
    return conditions * keep.to(conditions.device, conditions.dtype)[:, None]


class LoraScore:
    """eps_phi(x_t, t, y, c): a LoRA adapter on `prior.unet` plus a camera embedding, with its optimiser.

    Create one per prior (the adapter lives on the prior's UNet). `predict` and
    `predict_with_and_without_camera` run under no_grad; `train_step` takes one AdamW step on
    the diffusion loss of detached latents.
    """

    def __init__(self, prior: StableDiffusionPrior, config: LoraScoreConfig | None = None, seed: int = 0):
        self.config = config = config or LoraScoreConfig()
        config.validate()
        self.prior = prior
        self.unet = unet = prior.unet
        if ADAPTER_NAME in (getattr(unet, "peft_config", None) or {}):
            raise RuntimeError("this prior's UNet already carries a LoRA score; create one LoraScore per prior")
        if unet.config.class_embed_type is not None or unet.config.num_class_embeds is not None:
            raise RuntimeError("the camera embedding needs a UNet without its own class embedding (SD 2.x has none)")
        time_embed_dim = unet.time_embedding.linear_2.out_features
        with torch.random.fork_rng(devices=[prior.device] if prior.device.type == "cuda" else []):
            torch.manual_seed(seed)
            unet.add_adapter(
                LoraConfig(
                    r=config.rank, lora_alpha=config.rank, target_modules=LORA_TARGET_MODULES, init_lora_weights=True
                ),
                adapter_name=ADAPTER_NAME,
            )
            self.camera_embedding = TimestepEmbedding(CAMERA_CONDITION_SIZE, time_embed_dim).to(prior.device)
        lora_parameters = [parameter for name, parameter in unet.named_parameters() if f".{ADAPTER_NAME}." in name]
        for parameter in lora_parameters:
            parameter.data = parameter.data.float()
        use_pretrained_weights(unet)  # add_adapter leaves the new adapter active
        self.optimizer = torch.optim.AdamW(
            [*lora_parameters, *self.camera_embedding.parameters()],
            lr=config.learning_rate,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
            fused=True,  # one kernel, and it can skip a non-finite step on the device (`update`)
        )

    @staticmethod
    def remove_from(prior: StableDiffusionPrior) -> bool:
        """Take a LoRA score's adapter off `prior.unet` (a worker reusing the prior for its next run); True if there was one.

        The UNet's prediction is then the pretrained one again, and a new `LoraScore` can be created on it.
        """
        unet = prior.unet
        if ADAPTER_NAME not in (getattr(unet, "peft_config", None) or {}):
            return False
        unet.delete_adapters(ADAPTER_NAME)
        unet.class_embedding = None
        use_pretrained_weights(unet)  # whatever adapters remain stay off (the AdapterSwitch finds them again)
        return True

    @contextmanager
    def _lora_unet(self) -> Iterator[None]:
        """Adapters on and the camera embedding plugged in, for the duration of one LoRA call."""
        use_lora_weights(self.unet)
        self.unet.class_embedding = self.camera_embedding
        try:
            yield
        finally:
            self.unet.class_embedding = None
            use_pretrained_weights(self.unet)

    def _forward(
        self,
        noisy_latents: torch.Tensor,  # [B, 4, h, w]
        timesteps: torch.Tensor,  # [B]
        text_embeddings: torch.Tensor,  # [B, L, D]
        camera_condition: torch.Tensor,  # [B, 16]
    ) -> torch.Tensor:  # [B, 4, h, w] fp32
        prior = self.prior
        return self.unet(
            noisy_latents.to(prior.device, prior.dtype),
            timesteps.to(prior.device),
            encoder_hidden_states=text_embeddings.to(prior.device, prior.dtype),
            class_labels=camera_condition.to(prior.device, torch.float32),
        ).sample.float()

    @torch.no_grad()
    def predict(
        self,
        noisy_latents: torch.Tensor,  # [B, 4, h, w]
        timesteps: torch.Tensor,  # [B] int64
        text_embeddings: torch.Tensor,  # [B, L, D]
        camera_condition: torch.Tensor | None = None,  # [B, 16] from `camera_conditions`; None = no camera
    ) -> torch.Tensor:  # [B, 4, h, w] fp32
        """eps_phi(x_t, t, y, c), or eps_phi(x_t, t, y, none) when `camera_condition` is None."""
        if camera_condition is None:
            camera_condition = torch.zeros(noisy_latents.shape[0], CAMERA_CONDITION_SIZE, device=self.prior.device)
        with self._lora_unet():
            return self._forward(noisy_latents, timesteps, text_embeddings, camera_condition)

    @torch.no_grad()
    def predict_with_and_without_camera(
        self,
        noisy_latents: torch.Tensor,  # [B, 4, h, w]
        timesteps: torch.Tensor,  # [B] int64
        text_embeddings: torch.Tensor,  # [B, L, D]
        camera_condition: torch.Tensor,  # [B, 16]
    ) -> tuple[torch.Tensor, torch.Tensor]:  # 2 x [B, 4, h, w] fp32
        """(eps_phi(x_t, t, y, c), eps_phi(x_t, t, y, none)) from one batched call of 2B (what ESD mixes)."""
        no_camera = torch.zeros_like(camera_condition)
        with self._lora_unet():
            eps = self._forward(
                torch.cat([noisy_latents, noisy_latents]),
                torch.cat([timesteps, timesteps]),
                torch.cat([text_embeddings, text_embeddings]),
                torch.cat([camera_condition, no_camera]),
            )
        eps_camera, eps_no_camera = eps.chunk(2)
        return eps_camera, eps_no_camera

    def train_step(
        self,
        latents: torch.Tensor,  # [B, 4, h, w] clean latents of the current renders (detached here)
        text_embeddings: torch.Tensor,  # [B, L, D] or [1, L, D] (the view-independent prompt)
        cameras: CameraBatch | torch.Tensor,  # the B render cameras, or their conditions [B, 16]
        generator: torch.Generator,  # draws on its own device: the training device keeps them there
    ) -> torch.Tensor:
        """One AdamW step on ||eps_phi(x_t, t, y, c) - eps||^2 (mean), t ~ U{0..T-1}, camera dropped with p.

        Returns that loss as a detached 0-dim tensor on the prior's device (reading it is a host sync:
        do it at log steps only).
        """
        prior = self.prior
        latents = latents.detach().to(prior.device, torch.float32)
        batch = latents.shape[0]
        conditions = camera_conditions(cameras) if isinstance(cameras, CameraBatch) else cameras.float()
        conditions = drop_cameras(conditions.to(prior.device), self.config.camera_dropout, generator)  # [B, 16]
        noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(prior.device)
        timesteps = torch.randint(0, prior.num_train_timesteps, (batch,), generator=generator, device=generator.device)
        loss = self.diffusion_loss(latents, noise, timesteps.to(prior.device), text_embeddings, conditions)
        self.update(loss)
        return loss.detach()

    def diffusion_loss(
        self,
        latents: torch.Tensor,  # [B, 4, h, w] clean latents (detached)
        noise: torch.Tensor,  # [B, 4, h, w] eps
        timesteps: torch.Tensor,  # [B] int64
        text_embeddings: torch.Tensor,  # [B, L, D] or [1, L, D]
        conditions: torch.Tensor,  # [B, 16] camera conditions (zeros = no camera)
    ) -> torch.Tensor:  # scalar fp32, differentiable in the LoRA and camera-embedding weights
        """||eps_phi(x_t, t, y, c) - eps||^2 averaged over all B x 4 x h x w values, x_t = sqrt(abar) x + sqrt(1 - abar) eps."""
        prior = self.prior
        latents = latents.detach().to(prior.device, torch.float32)
        batch = latents.shape[0]
        noisy_latents = add_noise(latents, noise, timesteps, prior.alphas_cumprod)  # [B, 4, h, w]
        text_embeddings = text_embeddings.detach().expand(batch, -1, -1)
        with self._lora_unet():  # the graph is recorded here; backward needs neither the adapters nor the embedding
            return F.mse_loss(self._forward(noisy_latents, timesteps, text_embeddings, conditions), noise)

    def update(self, loss: torch.Tensor) -> None:
        """Backpropagate `diffusion_loss` and take the AdamW step, unless the loss or a gradient is NaN/Inf (a
        NaN update would poison eps_phi and the checkpoint). Decided on the device: fused AdamW skips its
        update where `found_inf` is 1, the mechanism `torch.amp.GradScaler` uses, so nothing is read back."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradients = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = torch.stack([torch.isfinite(loss), *(torch.isfinite(g).all() for g in gradients)]).all()
        self.optimizer.found_inf = (~finite).to(torch.float32)  # [] on the device
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf

    def state_dict(self) -> dict:
        """LoRA weights, camera embedding, optimiser state and config (for checkpoints)."""
        return copy.deepcopy(
            {  # a snapshot: the optimiser's state_dict shares its live moment tensors
                "lora": get_peft_model_state_dict(self.unet, adapter_name=ADAPTER_NAME),
                "camera_embedding": self.camera_embedding.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "config": asdict(self.config),
            }
        )

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved (same UNet architecture and LoRA rank)."""
        if state["config"]["rank"] != self.config.rank:
            raise ValueError(f"checkpoint LoRA rank {state['config']['rank']} != configured rank {self.config.rank}")
        result = set_peft_model_state_dict(self.unet, state["lora"], adapter_name=ADAPTER_NAME)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise ValueError(f"checkpoint LoRA weights do not fit this UNet: unexpected keys {unexpected[:3]}")
        self.camera_embedding.load_state_dict(state["camera_embedding"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a checkpoint of an older splatgen holds a non-fused AdamW
            group.update(fused=True, foreach=None)
        for parameter_state in self.optimizer.state.values():
            parameter_state["step"] = parameter_state["step"].to(self.prior.device, torch.float32)  # fused: on device
        use_pretrained_weights(self.unet)  # loading may have activated the adapter
