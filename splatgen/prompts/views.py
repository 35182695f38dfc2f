"""View-dependent prompts: which view a camera sees, the per-view prompt strings, and blend weights.

Four views, in this order everywhere (tensors' view axes, `ViewPrompts.in_view_order()`):
front, side, back, overhead. A camera is assigned with threestudio's rule (`prompt_processors/
base.py`; DreamFusion's view prompts): side by default, front if |azimuth| < front_max_azimuth,
back if |azimuth| > back_min_azimuth, overhead if elevation > overhead_min_elevation (overhead
wins). Azimuth and elevation follow `splatgen.scene.cameras`: degrees, azimuth 0 = front, 90 = +x,
azimuths wrapped to [-180, 180).

The front arc is symmetric about 0, the back arc about 180, and the two side arcs fill the rest,
so front, side and back tile the circle exactly once. The prompt-debiasing stage (`debias.py`,
D-SDS, Hong et al., arXiv 2303.15413) may remove words per view and move the two boundaries
(`ranges.py`); everything downstream reads the result as a `ViewPrompts`.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from splatgen.errors import SplatgenError
from splatgen.scene.cameras import wrap_azimuth

if TYPE_CHECKING:
    import torch

VIEW_NAMES = ("front", "side", "back", "overhead")
FRONT, SIDE, BACK, OVERHEAD = range(4)
AZIMUTHAL_VIEWS = ("front", "side", "back")

SUFFIX_TEMPLATE = "{prompt}, {view} view"
PREFIX_TEMPLATE = "{view} view of {prompt}"


class PromptError(SplatgenError, ValueError):
    """A prompt splatgen cannot use; the message says how to fix it."""


class EmptyPromptError(PromptError):
    """The prompt is empty or only whitespace."""


def normalize_prompt(prompt: str) -> str:
    """Unicode NFC, whitespace collapsed and stripped; refuses an empty prompt with a clear message."""
    if not isinstance(prompt, str):
        raise EmptyPromptError(f"the prompt must be text, got {type(prompt).__name__}")
    cleaned = " ".join(unicodedata.normalize("NFC", prompt).split())
    if not cleaned:
        raise EmptyPromptError('the prompt is empty: pass a description of the object, e.g. --prompt "a smiling dog"')
    return cleaned


def validate_view_template(template: str) -> None:
    """A view template must contain `{prompt}` and `{view}` and no other placeholder."""
    if "{prompt}" not in template or "{view}" not in template:
        raise ValueError(
            f"view template {template!r} must contain both {{prompt}} and {{view}}, "
            f"e.g. {SUFFIX_TEMPLATE!r} or {PREFIX_TEMPLATE!r}"
        )
    try:
        template.format(prompt="", view="")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"view template {template!r} has a placeholder other than {{prompt}} and {{view}}") from error


@dataclass(frozen=True)
class ViewRanges:
    """Where each view prompt applies. Front, side and back tile the azimuth circle exactly once."""

    front_max_azimuth: float = 45.0
    """Front view where |azimuth| < this (degrees); the front arc is [-this, this]."""
    back_min_azimuth: float = 135.0
    """Back view where |azimuth| > this (degrees); the back arc wraps through 180."""
    overhead_min_elevation: float = 60.0
    """Overhead view where elevation > this (degrees), at any azimuth; 90 disables it."""

    def validate(self) -> None:
        if not (0.0 < self.front_max_azimuth < self.back_min_azimuth < 180.0):
            raise ValueError(
                "view ranges need 0 < front_max_azimuth < back_min_azimuth < 180, got "
                f"front_max_azimuth={self.front_max_azimuth}, back_min_azimuth={self.back_min_azimuth}"
            )
        if not (-90.0 < self.overhead_min_elevation <= 90.0):
            raise ValueError(f"overhead_min_elevation must be in (-90, 90], got {self.overhead_min_elevation}")

    @property
    def side_center_azimuth(self) -> float:
        """Centre of the +x side arc (the -x arc's centre is its negative)."""
        return 0.5 * (self.front_max_azimuth + self.back_min_azimuth)

    def azimuth_intervals(self, view: str) -> list[tuple[float, float]]:
        """The view's azimuth arc as [lo, hi] intervals inside [-180, 180]; wrapping arcs are split."""
        front, back = self.front_max_azimuth, self.back_min_azimuth
        intervals = {
            "front": [(-front, front)],
            "side": [(front, back), (-back, -front)],
            "back": [(back, 180.0), (-180.0, -back)],
            "overhead": [(-180.0, 180.0)],
        }
        return intervals[view]

    def elevation_interval(self, view: str) -> tuple[float, float]:
        """The view's elevation band [lo, hi] in degrees."""
        if view == "overhead":
            return (self.overhead_min_elevation, 90.0)
        return (-90.0, self.overhead_min_elevation)

    def arc_widths(self) -> dict[str, float]:
        """Total azimuth width of each azimuthal view in degrees (they sum to 360)."""
        return {view: sum(hi - lo for lo, hi in self.azimuth_intervals(view)) for view in AZIMUTHAL_VIEWS}


@dataclass(frozen=True)
class ViewPrompts:
    """The final per-view prompts and the ranges they apply to (what the trainer and `prompts.json` use)."""

    prompt: str
    """The user's prompt (normalised)."""
    texts: dict[str, str]
    """View name -> the full prompt given to the text encoder for that view."""
    removed: dict[str, tuple[str, ...]] = field(default_factory=lambda: {view: () for view in VIEW_NAMES})
    """View name -> words the debiasing stage removed from that view's prompt."""
    ranges: ViewRanges = ViewRanges()
    """Azimuth and elevation ranges of the views."""

    def __getitem__(self, view: str) -> str:
        return self.texts[view]

    def in_view_order(self) -> list[str]:
        """The four prompt strings in `VIEW_NAMES` order (index = view index from `assign_views`)."""
        return [self.texts[view] for view in VIEW_NAMES]

    def to_json(self) -> dict[str, Any]:
        """`{"prompt": ..., "views": {view: {"prompt", "removed", "azimuth", "elevation"}}}`."""
        return {
            "prompt": self.prompt,
            "views": {
                view: {
                    "prompt": self.texts[view],
                    "removed": list(self.removed.get(view, ())),
                    "azimuth": [[lo, hi] for lo, hi in self.ranges.azimuth_intervals(view)],
                    "elevation": list(self.ranges.elevation_interval(view)),
                }
                for view in VIEW_NAMES
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ViewPrompts:
        """Inverse of `to_json` (reads `prompts.json` back, e.g. when resuming a run)."""
        views = data["views"]
        ranges = ViewRanges(
            front_max_azimuth=float(views["front"]["azimuth"][0][1]),
            back_min_azimuth=float(views["back"]["azimuth"][0][0]),
            overhead_min_elevation=float(views["overhead"]["elevation"][0]),
        )
        ranges.validate()
        return cls(
            prompt=data["prompt"],
            texts={view: views[view]["prompt"] for view in VIEW_NAMES},
            removed={view: tuple(views[view]["removed"]) for view in VIEW_NAMES},
            ranges=ranges,
        )


def apply_view_template(template: str, prompt: str, view: str) -> str:
    """`template` with `{prompt}` and `{view}` filled in ("a dog, front view" / "front view of a dog")."""
    return template.format(prompt=prompt, view=view)


def plain_view_prompts(
    prompt: str, view_template: str = SUFFIX_TEMPLATE, ranges: ViewRanges = ViewRanges()
) -> ViewPrompts:
    """View prompts without the language model: the template applied to the whole prompt, given ranges."""
    prompt = normalize_prompt(prompt)
    validate_view_template(view_template)
    ranges.validate()
    texts = {view: apply_view_template(view_template, prompt, view) for view in VIEW_NAMES}
    return ViewPrompts(prompt=prompt, texts=texts, ranges=ranges)


def _ranges_of(view_prompts: ViewPrompts | ViewRanges) -> ViewRanges:
    return view_prompts.ranges if isinstance(view_prompts, ViewPrompts) else view_prompts


def assign_views(
    azimuth_deg: torch.Tensor,  # [B]
    elevation_deg: torch.Tensor,  # [B]
    view_prompts: ViewPrompts | ViewRanges,
) -> torch.Tensor:  # [B] int64 indices into VIEW_NAMES
    """The view of each camera (threestudio's rule): side, unless front / back by azimuth; overhead wins."""
    import torch

    ranges = _ranges_of(view_prompts)
    abs_azimuth = wrap_azimuth(azimuth_deg.double()).abs()  # [B]
    views = torch.full(abs_azimuth.shape, SIDE, dtype=torch.int64, device=azimuth_deg.device)
    views = torch.where(abs_azimuth < ranges.front_max_azimuth, FRONT, views)  # torch.where: no host sync on CUDA
    views = torch.where(abs_azimuth > ranges.back_min_azimuth, BACK, views)
    return torch.where(elevation_deg > ranges.overhead_min_elevation, OVERHEAD, views)


def view_names(view_indices: torch.Tensor) -> list[str]:
    """View names for indices from `assign_views`."""
    return [VIEW_NAMES[index] for index in view_indices.tolist()]


def view_interpolation_weights(
    azimuth_deg: torch.Tensor,  # [B]
    elevation_deg: torch.Tensor,  # [B]
    view_prompts: ViewPrompts | ViewRanges,
) -> torch.Tensor:  # [B, 4] weights over VIEW_NAMES; rows sum to 1, at most two non-zero
    """Weights for blending the text embeddings of the two neighbouring view prompts.

    Along |azimuth| the anchors are the view centres: front at 0, side at the middle of its arc,
    back at 180. Between two neighbouring anchors the weight of the farther view rises piecewise
    linearly: 0 at the nearer anchor, 0.5 exactly at the range boundary, 1 at the farther anchor.
    So the heavier view is always the one `assign_views` picks, and with moved boundaries the
    blend follows them. Overhead cameras get the overhead prompt alone (like threestudio's
    Perp-Neg embeddings). The trainer mixes with
    `torch.einsum("bv,vld->bld", weights, view_embeddings)`.
    """
    import torch

    ranges = _ranges_of(view_prompts)
    abs_azimuth = wrap_azimuth(azimuth_deg.double()).abs()  # [B]
    side_center = ranges.side_center_azimuth

    def far_weight(position: torch.Tensor, near: float, boundary: float, far: float) -> torch.Tensor:
        before = 0.5 * (position - near) / (boundary - near)
        after = 0.5 + 0.5 * (position - boundary) / (far - boundary)
        return torch.where(position <= boundary, before, after).clamp(0.0, 1.0)

    weights = torch.zeros(abs_azimuth.shape[0], len(VIEW_NAMES), dtype=torch.float64, device=azimuth_deg.device)
    in_front_half = abs_azimuth <= side_center  # [B]
    side_weight_front_half = far_weight(abs_azimuth, 0.0, ranges.front_max_azimuth, side_center)
    back_weight = far_weight(abs_azimuth, side_center, ranges.back_min_azimuth, 180.0)
    weights[:, FRONT] = torch.where(in_front_half, 1.0 - side_weight_front_half, 0.0)
    weights[:, SIDE] = torch.where(in_front_half, side_weight_front_half, 1.0 - back_weight)
    weights[:, BACK] = torch.where(in_front_half, 0.0, back_weight)
    overhead = elevation_deg > ranges.overhead_min_elevation  # [B]
    weights[overhead] = 0.0
    weights[overhead, OVERHEAD] = 1.0
    return weights.to(azimuth_deg.dtype if azimuth_deg.is_floating_point() else torch.float32)


def intervals_cover_circle_once(ranges: ViewRanges) -> bool:
    """True when front, side and back arcs are disjoint and together cover [-180, 180) exactly."""
    intervals = sorted(interval for view in AZIMUTHAL_VIEWS for interval in ranges.azimuth_intervals(view))
    if not math.isclose(intervals[0][0], -180.0) or not math.isclose(intervals[-1][1], 180.0):
        return False
    return all(
        math.isclose(previous[1], current[0]) and current[0] < current[1]
        for previous, current in zip(intervals, intervals[1:])
    )
