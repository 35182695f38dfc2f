"""A tiny random-weight CLIP (`CLIPModel`) in the transformers folder layout, for tests and offline runs.

`make_tiny_clip(folder)` writes a CLIP with 2-layer text and vision transformers of width 32,
32 x 32 input images in 8 x 8 patches and 16-dimensional embeddings, plus the tiny byte-level
CLIP tokenizer (`splatgen.prior.tiny.tiny_clip_tokenizer`). It loads with the same
`CLIPModel.from_pretrained` call a hub id takes (`--clip-model tiny-random`). Random weights:
its scores mean nothing; they exercise every code path.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

TINY_CLIP_WIDTH = 32
TINY_CLIP_IMAGE_SIZE = 32


def is_complete_clip_folder(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer_config.json"))


def make_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny CLIP to `folder` (skipped when complete; written to a sibling, then renamed)."""
    from transformers import CLIPConfig, CLIPModel

    from splatgen.prior.tiny import TINY_MAX_TOKENS, tiny_clip_tokenizer

    folder = Path(folder)
    if is_complete_clip_folder(folder):
        return folder
    tokenizer = tiny_clip_tokenizer()
    layers = dict(
        hidden_size=TINY_CLIP_WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, hidden_act="gelu"
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=TINY_MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **layers,
        ),
        vision_config=dict(image_size=TINY_CLIP_IMAGE_SIZE, patch_size=8, **layers),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        staging.chmod(0o755)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
