"""CLIP similarity, CLIP R-precision and per-view CLIP labels (Radford et al. 2021, arXiv 2103.00020).

    CLIP similarity(object, prompt) = mean over views v of cos(E_img(view_v), E_txt(prompt))

E_img / E_txt are CLIP's projected image / text embeddings (`visual_projection(vision_model(.)
.pooler_output)`, `text_projection(text_model(.).pooler_output)`); tables report it x100.
Images are preprocessed as OpenAI's CLIP does: bicubic resize of the short side to the model's
input size (224 for ViT-B/32 and ViT-L/14), centre crop, normalisation with CLIP's mean and std.

CLIP R-precision (Jain et al. 2022, Dream Fields, arXiv 2112.01455; used by DreamFusion): the
fraction of objects whose own prompt has the highest CLIP similarity among a pool of prompts.

Per-view labels: each view is scored against "{prompt}, front view" / ", side view" / ", back
view" (the view-suffix prompts of DreamFusion); views whose azimuth lies in the back arc but
which score highest as "front" are what a face on the back of the head (a Janus object) looks like.

Models load with transformers `CLIPModel.from_pretrained` from a hub id or a local folder,
safetensors only; every failure is one `ClipUnavailable` line (the hub reasons are the prior's,
`splatgen.prior.loading.hub_failure_reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from splatgen.errors import SplatgenError, model_unavailable_message
from splatgen.eval.settings import DEFAULT_CLIP

CLIP_MODELS = ("openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14")
CLIP_SETTING = "--clip-model"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIEW_LABELS = ("front", "side", "back")


class ClipUnavailable(SplatgenError, RuntimeError):
    """The CLIP model could not be loaded; the message says why and how to fix it."""


def clip_unavailable(model: str, reason: str) -> ClipUnavailable:
    return ClipUnavailable(
        model_unavailable_message(
            "CLIP model",
            model,
            reason,
            setting=CLIP_SETTING,
            hub_ids=", ".join(CLIP_MODELS),
            local="a local folder holding config.json, model.safetensors and the tokenizer files",
            download=f"hf download {DEFAULT_CLIP} --local-dir DIR",
        )
    )


def _hub_reason(reason: str) -> str:
    """The prior's hub reasons name a pipeline component ("@/" here); a CLIP folder is one model."""
    return (
        reason.replace("@/ of this model", "this model")
        .replace("no @/ component", "no model")
        .replace("@/", "the model")
    )


def check_clip_folder(model: str) -> Path:
    """Raise `ClipUnavailable` unless `model` is a folder with a CLIP config, safetensors weights and a tokenizer."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        kind = "is a file, not a folder" if folder.exists() else "does not exist"
        raise clip_unavailable(model, f"the local folder {str(folder)!r} {kind}")
    if not (folder / "config.json").is_file():
        raise clip_unavailable(model, "the folder has no config.json")
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        pickled = sorted(path.name for path in folder.glob("*.bin"))
        found = f"only PyTorch .bin weights ({', '.join(pickled)})" if pickled else "no weights"
        raise clip_unavailable(model, f"the folder has {found}; splatgen loads model.safetensors only")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        raise clip_unavailable(model, "the folder has no tokenizer.json or vocab.json")
    return folder


@dataclass
class Clip:
    """A loaded CLIP model and tokenizer; `embed_images` / `embed_texts` return unit vectors."""

    model: torch.nn.Module  # transformers CLIPModel
    tokenizer: object  # CLIPTokenizer
    name: str

    @classmethod
    def load(cls, model: str = DEFAULT_CLIP, device: torch.device | str = "cpu") -> Clip:
        from transformers import CLIPModel, CLIPTokenizer

        from splatgen.prior.loading import hub_failure_reason, looks_like_hub_id

        source = model
        if Path(model).expanduser().exists() or not looks_like_hub_id(model):
            source = str(check_clip_folder(model))
        try:
            tokenizer = CLIPTokenizer.from_pretrained(source)
            network = CLIPModel.from_pretrained(source, use_safetensors=True)
        except (OSError, ValueError) as error:
            raise clip_unavailable(model, _hub_reason(hub_failure_reason(model, "@", error))) from error
        return cls(network.to(device).eval(), tokenizer, model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:  # [B, H, W, 3] in [0, 1] -> [B, 3, S, S]
        return clip_preprocess(images, self.image_size)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:  # [B, H, W, 3] -> [B, D]
        embeddings = []
        for start in range(0, images.shape[0], batch_size):
            pixels = self.preprocess(images[start : start + batch_size].to(self.device))
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            embeddings.append(self.model.visual_projection(pooled))
        return F.normalize(torch.cat(embeddings), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:  # [T] -> [T, D]
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return F.normalize(self.model.text_projection(pooled.pooler_output), dim=-1)


def clip_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:  # [B, H, W, 3] in [0, 1] -> [B, 3, S, S]
    """OpenAI CLIP's preprocessing: bicubic resize of the short side to `size`, centre crop, normalise."""
    pixels = images.permute(0, 3, 1, 2).float()  # [B, 3, H, W]
    height, width = pixels.shape[-2:]
    scale = size / min(height, width)
    resized = (max(size, round(height * scale)), max(size, round(width * scale)))
    if resized != (height, width):
        pixels = F.interpolate(pixels, size=resized, mode="bicubic", align_corners=False, antialias=True)
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    pixels = pixels[..., top : top + size, left : left + size].clamp(0.0, 1.0)
    mean = torch.tensor(CLIP_MEAN, device=pixels.device)[None, :, None, None]
    std = torch.tensor(CLIP_STD, device=pixels.device)[None, :, None, None]
    return (pixels - mean) / std


def similarity_matrix(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosines [V, T] between unit image embeddings [V, D] and unit text embeddings [T, D]."""
    return image_embeddings @ text_embeddings.T


def r_precision(scores: torch.Tensor, own_prompt: torch.Tensor) -> float:
    """Fraction of objects whose own prompt scores highest: scores [O, P], own_prompt [O] indices into P."""
    return float((scores.argmax(dim=1) == own_prompt).float().mean())


def view_prompt_texts(prompt: str) -> list[str]:
    """The three view prompts per-view labels are scored against, in VIEW_LABELS order."""
    return [f"{prompt}, {view} view" for view in VIEW_LABELS]
