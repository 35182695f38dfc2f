"""MVDream, the multi-view diffusion prior, as a `DiffusionPrior` (MV-SDS).

MVDream (Shi et al. 2023, arXiv 2308.16512) denoises 4 views of one object jointly, each with
its camera, so score distillation against it sees the object from 4 sides at once: the remedy
for multiple faces (the Janus problem) that threestudio's MVDream extension, DreamGaussian's
`text_mv` and LGM use. The UNet is SD 2.1-base's plus a camera embedding and cross-view
self-attention (`multiview.py`); text encoder (OpenCLIP ViT-H), tokenizer, VAE and noise
schedule are SD 2.1-base's, read from the `--prior.model` folder like the SD prior.

Weights: `unet/diffusion_pytorch_model.safetensors` of `ashawkey/mvdream-sd2.1-diffusers`
(1.7 GB fp16, OpenRAIL; saved by `convert_mvdream_to_diffusers.py` of ashawkey/mvdream_diffusers,
so the UNet keeps MVDream's LDM parameter names), or that file in a local folder, or the file
itself. Safetensors only: MVDream's original `.pt` is a pickle and is refused. Nothing of the
repository's own pipeline code runs (it needs trust_remote_code and xformers).

Batches: the views of a group are contiguous, groups of `views_per_group` = 4; the trainer
samples cameras and timesteps per group (`splatgen.scene.cameras.sample_cameras`). Renders are
resized to 256 px, MVDream's training resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from splatgen.errors import model_unavailable_message
from splatgen.lazy import no_grad
from splatgen.prior.loading import (
    ModelUnavailable,
    load_component,
    load_stable_diffusion,
    looks_like_hub_id,
    random_sd21_base_components,
)
from splatgen.prior.multiview import (
    CAMERA_CONDITION_SIZE,
    VIEWS_PER_GROUP,
    UnmappedWeights,
    install_cross_view_attention,
    ldm_to_diffusers_unet,
    mvdream_camera_conditions,
)
from splatgen.prior.stable_diffusion import StableDiffusionConfig, StableDiffusionPrior
from splatgen.scene.cameras import CameraBatch

if TYPE_CHECKING:
    import torch
    from diffusers import UNet2DConditionModel

DEFAULT_MVDREAM_UNET = "ashawkey/mvdream-sd2.1-diffusers"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
UNET_SETTING = "--prior.unet"
UNET_DOWNLOAD_OPTIONS = ' --include "unet/*"'  # `hf download` of the MVDream repository fetches only its UNet
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


@dataclass
class MVDreamConfig(StableDiffusionConfig):
    """The MVDream multi-view prior: SD 2.1-base's text encoder and VAE, MVDream's 4-view UNet."""

    config_name: ClassVar[str] = "mvdream"

    unet: str = DEFAULT_MVDREAM_UNET
    """MVDream UNet: a hub id, a local folder holding unet/diffusion_pytorch_model.safetensors, or a .safetensors
    file. Offline: `hf download ashawkey/mvdream-sd2.1-diffusers --include "unet/*" --local-dir DIR`,
    then pass DIR. The text encoder, tokenizer, VAE and scheduler come from --prior.model (SD 2.1-base)."""
    unet_revision: str | None = None
    """Hub revision of the MVDream UNet; None = the default branch. Ignored for local paths."""
    image_size: int = 256
    """Renders are resized (bilinear) to this square size before VAE encoding; MVDream was trained at 256."""

    def validate(self) -> None:
        super().validate()
        if not self.unet.strip():
            raise ValueError("prior.unet must name a hub id, a local folder or a .safetensors file")


def camera_embedding_config(config: MVDreamConfig) -> dict:
    """What MVDream adds to SD 2.1-base's UNet config: the camera MLP as a projection class embedding."""
    return dict(
        class_embed_type="projection",
        projection_class_embeddings_input_dim=CAMERA_CONDITION_SIZE,
        sample_size=config.image_size // 8,
    )


def unet_unavailable(model: str, reason: str) -> ModelUnavailable:
    """The one message every MVDream UNet failure ends in: the reason, then the ways out."""
    return ModelUnavailable(
        model_unavailable_message(
            "MVDream UNet",
            model,
            reason,
            setting=UNET_SETTING,
            hub_ids=DEFAULT_MVDREAM_UNET,
            local="a local folder or .safetensors file",
            download=f"hf download {DEFAULT_MVDREAM_UNET}{UNET_DOWNLOAD_OPTIONS} --local-dir DIR",
        )
    )


def _local_weights(path: Path, model: str) -> Path:
    """The safetensors file a local path means, or a one-line refusal (pickles included)."""
    if path.is_file():
        if path.suffix == ".safetensors":
            return path
        kind = "a pickle" if path.suffix in PICKLE_SUFFIXES else f"a {path.suffix or 'suffix-less'} file"
        raise unet_unavailable(model, f"{path.name} is {kind}; splatgen loads safetensors only")
    for candidate in (path / UNET_WEIGHTS, path / Path(UNET_WEIGHTS).name):
        if candidate.is_file():
            return candidate
    pickled = sorted(item.name for suffix in PICKLE_SUFFIXES for item in path.rglob(f"*{suffix}"))
    found = (
        f"only pickled weights ({', '.join(pickled[:3])}); splatgen loads safetensors only" if pickled else "no weights"
    )
    raise unet_unavailable(model, f"the folder has {found} (expected {UNET_WEIGHTS})")


def mvdream_weights_file(model: str, revision: str | None) -> Path:
    """Where the MVDream UNet safetensors are: a local file or folder, or the hub (download / cache)."""
    path = Path(model).expanduser()
    if path.exists():
        return _local_weights(path, model)
    if not looks_like_hub_id(model):
        raise unet_unavailable(model, f"the local path {str(path)!r} does not exist")
    from huggingface_hub import hf_hub_download

    def download() -> Path:
        return Path(hf_hub_download(model, UNET_WEIGHTS, revision=revision))

    return load_component(model, "unet", download, error=unet_unavailable)


def build_multiview_unet(sd_model: str, config: MVDreamConfig, weights: Path | None = None) -> UNet2DConditionModel:
    """SD 2.1-base's UNet architecture (read from `sd_model`), plus the camera embedding, with MVDream's weights.

    Built on the meta device and filled with the checkpoint's tensors (no random init, no copy);
    the weights keep the file's dtype until the prior casts them.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    weights = weights if weights is not None else mvdream_weights_file(config.unet, config.unet_revision)
    unet_config = dict(UNet2DConditionModel.load_config(sd_model, subfolder="unet", revision=config.revision))
    unet_config.update(camera_embedding_config(config))
    try:
        state = load_file(weights)
    except Exception as error:  # safetensors raises its own error type for corrupt headers
        raise unet_unavailable(config.unet, f"{weights} is not a readable safetensors file ({error})") from error
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    misfit = f"its weights do not fit SD 2.1-base's UNet from {sd_model} plus MVDream's camera embedding"
    try:
        converted = ldm_to_diffusers_unet(state, unet.config)
    except UnmappedWeights as error:
        raise unet_unavailable(config.unet, f"{misfit} ({error})") from error
    expected = set(unet.state_dict())
    missing, unexpected = sorted(expected - set(converted)), sorted(set(converted) - expected)
    if missing or unexpected:
        details = [
            f"{len(keys)} {kind} (e.g. {', '.join(keys[:2])})"
            for kind, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise unet_unavailable(config.unet, f"{misfit}: {'; '.join(details)}")
    try:
        unet.load_state_dict(converted, strict=True, assign=True)
    except RuntimeError as error:  # shapes: a different architecture under the same names
        lines = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise unet_unavailable(config.unet, f"{misfit} ({(lines or ['shape mismatch'])[0][:300]})") from error
    return unet


class MVDreamPrior(StableDiffusionPrior):
    """MVDream behind the `DiffusionPrior` protocol: 4-view groups, camera-conditioned, frozen."""

    views_per_group: ClassVar[int] = VIEWS_PER_GROUP

    def __init__(
        self, components, config: MVDreamConfig, device: torch.device | str, trains_lora: bool = False
    ) -> None:
        super().__init__(components, config, device, trains_lora)
        install_cross_view_attention(self.unet, self.views_per_group)

    @classmethod
    def from_config(
        cls, config: MVDreamConfig, device: torch.device | str = "cpu", trains_lora: bool = False
    ) -> MVDreamPrior:
        """Load SD 2.1-base's parts from `config.model` and the multi-view UNet from `config.unet`."""
        config.validate()
        dtype = config.torch_dtype(device, trains_lora)
        weights = mvdream_weights_file(config.unet, config.unet_revision)  # before the big downloads: fail fast
        components = load_stable_diffusion(
            config.model,
            config.revision,
            dtype,
            load_unet=lambda sd_model: build_multiview_unet(sd_model, config, weights),
        )
        return cls(components, config, device, trains_lora)

    @classmethod
    def with_random_sd21_base_weights(
        cls, config: MVDreamConfig, device: torch.device | str = "cuda", seed: int = 0, trains_lora: bool = False
    ) -> MVDreamPrior:
        """MVDream's full-size architecture with random weights (speed benchmarks; compute ignores weight values)."""
        components = random_sd21_base_components(
            config.torch_dtype(device, trains_lora), device, seed, unet_config=camera_embedding_config(config)
        )
        return cls(components, config, device, trains_lora)

    @no_grad
    def predict_noise(
        self,
        noisy_latents: torch.Tensor,  # [B, 4, h, w], B a multiple of 4, each group's views contiguous
        timesteps: torch.Tensor,  # [B] int64 in [0, T)
        text_embeddings: torch.Tensor,  # [B, L, D]
        cameras: CameraBatch | None = None,  # the B views the latents were rendered from
    ) -> torch.Tensor:  # [B, 4, h, w] fp32
        """The multi-view UNet's eps prediction for whole 4-view groups (one call)."""
        if cameras is None:
            raise ValueError("the MVDream prior needs the cameras of the views it denoises")
        batch = noisy_latents.shape[0]
        if batch % self.views_per_group != 0 or len(cameras) != batch:
            raise ValueError(
                f"MVDream denoises whole groups of {self.views_per_group} views; got {batch} latents, {len(cameras)} cameras"
            )
        conditions = mvdream_camera_conditions(cameras).to(self.device, self.dtype)  # [B, 16]
        eps = self.unet(
            noisy_latents.to(self.device, self.dtype),
            timesteps.to(self.device),
            encoder_hidden_states=text_embeddings.to(self.device, self.dtype),
            class_labels=conditions,
        ).sample
        return eps.float()
