"""Random-weight models in the real folder layouts, and the reserved model names that build them.

`--prior.model tiny-random`, `--prior.unet tiny-random` (MVDream), `--prompts.lm tiny-random` and
`splatgen eval --clip-model tiny-random` mean: build (once) a tiny random Stable-Diffusion-shaped pipeline /
multi-view UNet / BERT masked LM / CLIP in `$SPLATGEN_TINY_MODELS` (default
`~/.cache/splatgen/tiny-models`) and load it with the same `from_pretrained` code a hub id takes.
They make the whole pipeline runnable offline (the `smoke` preset, the tests); their output is
noise, not an asset. `--prior.model sd21-base-random` is the same for the full-size SD 2.1-base
architecture (2.6 GB of fp16 safetensors, built from `assets/sd21_base/`): the real shapes and
cost of a run, for GPU checks and the real-architecture test.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

TINY_MODEL_ID = "tiny-random"
SD21_RANDOM_ID = "sd21-base-random"
"""The full-size SD 2.1-base architecture with random weights (2.6 GB, built once): real shapes and cost, no download."""
RESERVED_MODEL_IDS = (TINY_MODEL_ID, SD21_RANDOM_ID)
"""Model names built here on first use, never looked up on the hub; what they make is noise."""


def default_tiny_models_dir() -> Path:
    return Path(os.environ.get("SPLATGEN_TINY_MODELS", Path.home() / ".cache" / "splatgen" / "tiny-models"))


def is_complete_mlm_folder(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer_config.json"))


def make_tiny_models(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write `folder/sd`, `folder/mvdream`, `folder/mlm` and `folder/clip` (each skipped when complete); returns the paths."""
    from splatgen.eval.tiny_clip import make_tiny_clip
    from splatgen.prior.tiny import make_tiny_mvdream_unet, make_tiny_stable_diffusion
    from splatgen.prompts.tiny_lm import make_tiny_mlm

    folder = Path(folder)
    mlm = folder / "mlm"
    if not is_complete_mlm_folder(mlm):
        make_tiny_mlm(mlm, seed=seed)
    return {
        "sd": make_tiny_stable_diffusion(folder / "sd", seed=seed),
        "mvdream": make_tiny_mvdream_unet(folder / "mvdream", seed=seed),
        "mlm": mlm,
        "clip": make_tiny_clip(folder / "clip", seed=seed),
    }


def _resolve(model: str, kind: str, console: Console | None) -> str:
    if model != TINY_MODEL_ID:
        return model
    folder = default_tiny_models_dir()
    if console is not None and not (folder / kind).exists():
        console.print(f"building the tiny random models in {folder} (once)")
    return str(make_tiny_models(folder)[kind])


def resolve_sd_model(model: str, console: Console | None = None) -> str:
    """`tiny-random` -> the tiny SD folder, `sd21-base-random` -> the full-size random one (each built on first
    use in $SPLATGEN_TINY_MODELS); anything else unchanged."""
    if model == SD21_RANDOM_ID:
        from splatgen.prior.loading import make_random_sd21_base

        folder = default_tiny_models_dir() / SD21_RANDOM_ID
        if console is not None and not folder.exists():
            console.print(f"building the random-weight SD 2.1-base architecture in {folder} (once, ~2.6 GB)")
        return str(make_random_sd21_base(folder))
    return _resolve(model, "sd", console)


def resolve_mvdream_unet(model: str, console: Console | None = None) -> str:
    """`tiny-random` -> the tiny multi-view UNet folder (LDM names, fits the tiny SD folder); else unchanged."""
    return _resolve(model, "mvdream", console)


def resolve_lm(lm: str, console: Console | None = None) -> str:
    """`tiny-random` -> the tiny masked-LM folder (built on first use); anything else unchanged."""
    return _resolve(lm, "mlm", console)


def resolve_clip(model: str, console: Console | None = None) -> str:
    """`tiny-random` -> the tiny CLIP folder (built on first use); anything else unchanged."""
    return _resolve(model, "clip", console)
