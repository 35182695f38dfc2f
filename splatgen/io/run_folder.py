"""The run folder: where a run's files live (every name spelled here once), written atomically.

<run>/config.yaml        the resolved config (reloadable: `splatgen train --resume <run>`)
<run>/prompts.json       the view prompts and their azimuth/elevation ranges
<run>/checkpoints/       last.pt (resumable)
<run>/metrics.jsonl      per-step training metrics, refinements.jsonl one line per refinement (train/metrics.py)
<run>/<name>.ply         the asset, INRIA 3DGS layout
<run>/turntable.mp4      a turntable video
<run>/views.png          a grid of views
<run>/export_step_XXXXXX.ply  splats exported from the live viewer at that step
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splatgen.io.atomic import write_text_atomic

CONFIG_FILE = "config.yaml"
PROMPTS_FILE = "prompts.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
LAST_CHECKPOINT_PATH = Path(CHECKPOINT_DIR) / LAST_CHECKPOINT  # relative to the run folder


def slugify(text: str, max_length: int = 48) -> str:
    """'A DSLR photo of a corgi!' -> 'a-dslr-photo-of-a-corgi' (ASCII, lowercase, dashes)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "asset"


@dataclass(frozen=True)
class RunFolder:
    path: Path
    asset_name: str = "asset"  # the PLY's stem: the slug of the prompt

    @staticmethod
    def default_path(prompt: str, root: Path = Path("outputs")) -> Path:
        return root / f"{slugify(prompt)}-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def prompts_path(self) -> Path:
        return self.path / PROMPTS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT_PATH

    @property
    def ply_path(self) -> Path:
        return self.path / f"{self.asset_name}.ply"

    def live_export_path(self, step: int) -> Path:
        return self.path / f"export_step_{step:06d}.ply"

    def create(self) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def write_config(self, yaml_text: str) -> None:
        write_text_atomic(self.config_path, yaml_text)

    def write_prompts(self, prompts: dict[str, Any]) -> None:
        write_text_atomic(self.prompts_path, json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")
