"""A tiny random-weight Stable-Diffusion-2.x-shaped pipeline, saved in the exact diffusers layout.

No weights can be downloaded where splatgen is built and tested, so the real loading code
(`from_pretrained(model, subfolder=...)`, the path a hub id takes) is exercised on a folder this
module writes: `model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`,
weights as safetensors. The shapes follow SD 2.x (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models"): a UNet with linear transformer projections and
cross-attention on a CLIP text encoder's hidden states, a 4-level KL autoencoder (latents are 1/8
of the image, 4 channels, scaling factor 0.18215) and SD's scaled-linear beta schedule; only the
widths are tiny (about 3.7 MB in float32, a CFG forward at 64x64 takes milliseconds on a CPU).

The tokenizer is CLIP's byte-level BPE built offline from an in-memory vocabulary: every byte
(alone and word-final), plus merges that make a few common prompt words single tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SD_BETA_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
"""SD 1.x/2.x training noise schedule (the `scheduler_config.json` of every SD 2.1 checkpoint)."""

TINY_TEXT_WIDTH = 32  # text hidden size = the UNet's cross-attention dim
TINY_MAX_TOKENS = 77  # CLIP's context length, as in SD
START_TOKEN, END_TOKEN, PAD_TOKEN = "<|startoftext|>", "<|endoftext|>", "!"  # SD 2.x pads with "!"

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDPMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
"""`model_index.json` as `StableDiffusionPipeline.save_pretrained` writes it (no safety checker)."""

COMMON_PROMPT_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "photo",
    "dslr",
    "3d",
    "render",
    "model",
    "front",
    "back",
    "side",
    "overhead",
    "view",
    "detailed",
    "highly",
    "dog",
    "cat",
    "corgi",
    "smiling",
    "hat",
    "wearing",
    "chair",
    "car",
    "cake",
    "statue",
    "squirrel",
    "bird",
    "plant",
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (printable ASCII/Latin-1 first)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + shift)
            shift += 1
    return dict(zip(printable, (chr(code) for code in codes)))


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """CLIP tokenizer with a byte-level vocabulary: ids 0..255 bytes, 256..511 word-final bytes, merges, specials."""
    byte_chars = list(bytes_to_unicode().values())  # "!" first, so the pad token has id 0 as in SD 2.x
    vocab = {char: index for index, char in enumerate(byte_chars)}
    vocab.update({char + "</w>": 256 + index for index, char in enumerate(byte_chars)})
    merges: list[tuple[str, str]] = []
    for word in COMMON_PROMPT_WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            token = merged + piece
            if token not in vocab:
                merges.append((merged, piece))
                vocab[token] = len(vocab)
            merged = token
    vocab[START_TOKEN] = len(vocab)
    vocab[END_TOKEN] = len(vocab)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        unk_token=END_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=TINY_MAX_TOKENS,
    )


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A 2-layer CLIP text transformer of width 32 (SD 2.1: 23 layers of width 1024)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TINY_MAX_TOKENS,
        projection_dim=TINY_TEXT_WIDTH,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def tiny_unet(**extra) -> UNet2DConditionModel:
    """Two resolution levels (SD 2.1: four), linear transformer projections as in SD 2.x; `extra` config on top."""
    return UNet2DConditionModel(
        **extra,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=16,
    )


def tiny_vae() -> AutoencoderKL:
    """A 4-level KL autoencoder (three downsamplings: latents are 1/8 of the image, 4 channels)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    )


def sd_scheduler() -> DDPMScheduler:
    """DDPM scheduler with SD's noise schedule; splatgen reads only its `alphas_cumprod`."""
    return DDPMScheduler(**SD_BETA_SCHEDULE, prediction_type="epsilon", clip_sample=False, steps_offset=1)


def is_complete_sd_folder(folder: str | os.PathLike) -> bool:
    """True when `folder` holds model_index.json and every component folder with its files."""
    folder = Path(folder)
    required = [
        folder / "model_index.json",
        folder / "unet" / "config.json",
        folder / "unet" / "diffusion_pytorch_model.safetensors",
        folder / "vae" / "config.json",
        folder / "vae" / "diffusion_pytorch_model.safetensors",
        folder / "text_encoder" / "config.json",
        folder / "text_encoder" / "model.safetensors",
        folder / "tokenizer" / "tokenizer_config.json",
        folder / "scheduler" / "scheduler_config.json",
    ]
    return all(path.is_file() for path in required)


def make_tiny_stable_diffusion(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny pipeline to `folder` (skipped when already complete); returns the folder.

    Deterministic for a seed (the global RNG is forked, not disturbed).
    """

    def build() -> dict:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tokenizer = tiny_clip_tokenizer()
            return {
                "unet": tiny_unet(),
                "vae": tiny_vae(),
                "text_encoder": tiny_text_encoder(tokenizer),
                "tokenizer": tokenizer,
                "scheduler": sd_scheduler(),
            }

    return write_sd_folder(folder, build, {"seed": seed, "kind": "tiny random SD 2.x layout"})


def write_sd_folder(folder: str | os.PathLike, build, marker: dict) -> Path:
    """Save the components `build()` returns in the diffusers layout at `folder` (skipped when complete).

    The folder appears atomically: everything is written to a sibling temporary folder that is then
    renamed (a concurrent writer that finishes first wins). `marker` goes to `splatgen_tiny.json`.
    """
    folder = Path(folder)
    if is_complete_sd_folder(folder):
        return folder
    if folder.exists():
        raise FileExistsError(
            f"{folder} exists but is not a complete Stable Diffusion folder; remove it or pick another"
        )
    components = build()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        staging.chmod(0o755)
        for name in list(components):
            component = components.pop(name)  # freed once written (the full-size UNet is gigabytes)
            if isinstance(component, torch.nn.Module):
                component.save_pretrained(staging / name, safe_serialization=True)
            else:
                component.save_pretrained(staging / name)
            del component
        (staging / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2) + "\n")
        (staging / "splatgen_tiny.json").write_text(json.dumps(marker) + "\n")
        try:
            os.replace(staging, folder)
        except OSError:
            if not is_complete_sd_folder(folder):  # not a concurrent maker that finished first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def fill_random(module: torch.nn.Module, pool: torch.Tensor, generator: torch.Generator) -> None:
    """Random weights at PyTorch's default scales, cheaply: each tensor is a slice of one uniform(-1, 1) `pool`
    at a random offset, scaled like `nn.Linear`/`nn.Conv2d`'s default init (bound 1/sqrt(fan_in)); embeddings
    N(0, 1)-scaled, norms weight 1 / bias 0. Compute does not depend on the values; the shapes are what is tested."""
    for layer in module.modules():
        for name, parameter in layer.named_parameters(recurse=False):
            with torch.no_grad():
                if isinstance(layer, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    parameter.fill_(1.0 if name == "weight" else 0.0)
                    continue
                if isinstance(layer, torch.nn.Embedding):
                    bound = 3**0.5  # uniform(-sqrt 3, sqrt 3): unit variance like N(0, 1)
                else:
                    fan_in = layer.weight[0].numel() if hasattr(layer, "weight") and layer.weight.dim() > 1 else 1
                    bound = fan_in**-0.5
                count = parameter.numel()
                offset = int(torch.randint(0, pool.numel() - count + 1, (1,), generator=generator))
                parameter.copy_(pool[offset : offset + count].view_as(parameter) * bound)


TINY_MVDREAM_WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"


def make_tiny_mvdream_unet(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random multi-view UNet as MVDream ships it: LDM parameter names, safetensors.

    The architecture is `tiny_unet()` (the tiny SD folder's UNet) plus MVDream's camera embedding
    (16 -> time-embedding width), so `--prior.model` = the tiny SD folder and `--prior.unet` = this
    folder run the real conversion path (`splatgen.prior.multiview.ldm_to_diffusers_unet`).
    Skipped when the file exists; written atomically. Returns the folder.
    """
    from safetensors.torch import save_file

    from splatgen.prior.multiview import CAMERA_CONDITION_SIZE, diffusers_to_ldm_unet

    folder = Path(folder)
    target = folder / TINY_MVDREAM_WEIGHTS
    if target.is_file():
        return folder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = tiny_unet(class_embed_type="projection", projection_class_embeddings_input_dim=CAMERA_CONDITION_SIZE)
    ldm_state = diffusers_to_ldm_unet(unet.state_dict(), unet.config)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file({key: value.contiguous() for key, value in ldm_state.items()}, staging)
    os.replace(staging, target)
    (folder / "splatgen_tiny.json").write_text(
        json.dumps({"seed": seed, "kind": "tiny random MVDream UNet, LDM names"}) + "\n"
    )
    return folder
