"""The settings of `splatgen eval` (light: the CLI imports this module to build its flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from splatgen.errors import SplatgenError

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEPTH_TOLERANCE = 0.05


class EvalInputError(SplatgenError):
    """An input to `splatgen eval` is not a run folder or a PLY, or has no prompt, or a setting is out of range."""


@dataclass
class EvalSettings:
    """How assets are measured (the `splatgen eval` flags)."""

    clip_model: str = DEFAULT_CLIP
    """CLIP for similarity, R-precision and view labels: hub id or local folder (openai/clip-vit-large-patch14 for ViT-L/14)."""
    frames: int = 100
    """Turntable frames (A-LPIPS is defined on 100)."""
    resolution: int | None = None
    """Square frame size in pixels; default 512 on GPU, 128 on CPU."""
    clip_views: int = 20
    """Frames, evenly spaced in azimuth from the front, that CLIP scores."""
    lpips_net: Literal["vgg", "alex"] = "vgg"
    """LPIPS backbone: vgg (the D-SDS paper's main table) or alex."""
    lpips_input: Literal["lpips", "clip"] = "lpips"
    """'lpips': frames in [-1, 1] (LPIPS's own input); 'clip': CLIP ViT-B/32 preprocessing, as the D-SDS script fed them."""
    lpips_backbone: Path | None = None
    """torchvision ImageNet checkpoint of the LPIPS backbone; default torch hub's cache."""
    depth_tolerance: float = DEPTH_TOLERANCE
    """View consistency: relative depth difference still counted as the same surface."""
    backend: Literal["auto", "gsplat", "torch"] = "auto"
    """Renderer."""

    def validate(self) -> None:
        checks = [
            (self.frames >= 2, f"--frames must be >= 2, got {self.frames}"),
            (self.resolution is None or self.resolution >= 16, f"--resolution must be >= 16, got {self.resolution}"),
            (1 <= self.clip_views <= self.frames, f"--clip-views must be in 1..{self.frames}, got {self.clip_views}"),
            (self.depth_tolerance > 0, f"--depth-tolerance must be > 0, got {self.depth_tolerance}"),
        ]
        for ok, message in checks:
            if not ok:
                raise EvalInputError(message)
