"""Perp-Neg (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm", arXiv 2304.04968).

View prompts alone leave the front view's appearance leaking into every view (the Janus
problem). Perp-Neg adds the *other* view prompts as negatives, but only their components
perpendicular to the positive direction, so they push away from "front" without cancelling
what the positive prompt asks for. As threestudio implements it for score distillation
(`threestudio-project/threestudio@28d9d80`, `models/prompt_processors/base.py`
`get_text_embeddings_perp_neg`, `models/guidance/stable_diffusion_guidance.py`, `utils/ops.py`):

- Per camera, with a = |azimuth| in [0, 180] (0 = front):
  - a < 90 (front-side): r = 1 - a/90, positive = r e_front + (1 - r) e_side, negatives
    [front, side] with weights -f_fs(r), -f_sf(1 - r);
  - a >= 90 (side-back): r = 2 - a/90, positive = r e_side + (1 - r) e_back, negatives
    [side, front] with weights -f_sb(r), -f_fsb(r);
  - overhead cameras: the overhead prompt, negative weights 0.
  f(r) = a e^(-b r) + c (`shifted_expotional_decay`), defaults below ("f_fs(1) = 0").
- One UNet call on [positive, unconditional, negative 1, negative 2]; with e_pos = eps_pos - eps_0,
  eps_hat = eps_0 + s (e_pos + sum_i w_i perp(eps_neg_i - eps_0, e_pos)), where perp(x, y) =
  x - <x, y> / max(<y, y>, 1e-6) y per sample.

splatgen folds the negatives into the conditional prediction, eps_y' = eps_pos + sum_i w_i perp(...),
so every objective reads it as its eps_y: CFG of (eps_y', eps_0) is the formula above exactly,
CSD's classifier score becomes e_pos + sum_i w_i perp(...), and with all weights 0 eps_y' is
eps_pos bit for bit. The view embeddings are the (LM-debiased, when debiasing is on) view prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from splatgen.prompts.views import BACK, FRONT, OVERHEAD, SIDE, VIEW_NAMES, ViewPrompts, ViewRanges, wrap_azimuth

if TYPE_CHECKING:
    import torch

NUM_NEGATIVES = 2
Decay = tuple[float, float, float]  # (a, b, c) of f(r) = a exp(-b r) + c


@dataclass
class PerpNegWeights:
    """Perp-Neg's negative-prompt weights f(r) = a exp(-b r) + c (threestudio's defaults)."""

    f_sb: Decay = (1.0, 0.5, -0.606)
    """(a, b, c) of the side prompt's negative weight in the side-back region (threestudio perp_neg_f_sb)."""
    f_fsb: Decay = (1.0, 0.5, 0.967)
    """(a, b, c) of the front prompt's negative weight in the side-back region (threestudio perp_neg_f_fsb)."""
    f_fs: Decay = (4.0, 0.5, -2.426)
    """(a, b, c) of the front prompt's negative weight in the front-side region (threestudio perp_neg_f_fs; f_fs(1) = 0)."""
    f_sf: Decay = (4.0, 0.5, -2.426)
    """(a, b, c) of the side prompt's negative weight in the front-side region (threestudio perp_neg_f_sf)."""

    def validate(self) -> None:
        for name in ("f_sb", "f_fsb", "f_fs", "f_sf"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(item, (int, float)) and abs(item) < 1e6 for item in value):
                raise ValueError(f"prompts.perp_neg_weights.{name} must be three finite numbers (a, b, c), got {value}")


def shifted_exponential_decay(decay: Decay, r: torch.Tensor) -> torch.Tensor:
    """f(r) = a exp(-b r) + c, elementwise (threestudio `shifted_expotional_decay`)."""
    import torch

    a, b, c = decay
    return a * torch.exp(-b * r) + c


@dataclass
class PerpNegPlan:
    """Per camera: the positive prompt's blend, the two negative view prompts and their weights."""

    positive_mix: torch.Tensor  # [B, 4] weights over VIEW_NAMES (rows sum to 1)
    negative_views: torch.Tensor  # [B, 2] int64 indices into VIEW_NAMES
    negative_weights: torch.Tensor  # [B, 2] w_i (<= 0 pushes away from that view)


def perp_neg_plan(
    azimuth_deg: torch.Tensor,  # [B]
    elevation_deg: torch.Tensor,  # [B]
    ranges: ViewRanges | ViewPrompts,
    weights: PerpNegWeights,
) -> PerpNegPlan:
    """threestudio's Perp-Neg rule per camera, vectorised on the cameras' device (no host sync)."""
    import torch

    ranges = ranges.ranges if isinstance(ranges, ViewPrompts) else ranges
    abs_azimuth = wrap_azimuth(azimuth_deg.double()).abs()  # [B] in [0, 180]
    front_side = abs_azimuth < 90.0  # [B]
    overhead = elevation_deg > ranges.overhead_min_elevation  # [B]
    r = torch.where(front_side, 1.0 - abs_azimuth / 90.0, 2.0 - abs_azimuth / 90.0)  # [B]
    mix = torch.zeros(abs_azimuth.shape[0], len(VIEW_NAMES), dtype=torch.float64, device=azimuth_deg.device)
    mix[:, FRONT] = torch.where(front_side, r, 0.0)
    mix[:, SIDE] = torch.where(front_side, 1.0 - r, r)
    mix[:, BACK] = torch.where(front_side, 0.0, 1.0 - r)
    mix = torch.where(overhead[:, None], 0.0, mix)
    mix[:, OVERHEAD] = overhead.to(mix.dtype)  # overhead cameras: the overhead prompt alone
    first = torch.where(front_side, FRONT, SIDE)  # [B]
    second = torch.where(front_side, SIDE, FRONT)
    negative_weights = torch.stack(
        [
            torch.where(
                front_side, -shifted_exponential_decay(weights.f_fs, r), -shifted_exponential_decay(weights.f_sb, r)
            ),
            torch.where(
                front_side,
                -shifted_exponential_decay(weights.f_sf, 1.0 - r),
                -shifted_exponential_decay(weights.f_fsb, r),
            ),
        ],
        dim=1,
    )  # [B, 2]
    negative_weights = torch.where(overhead[:, None], 0.0, negative_weights)
    dtype = azimuth_deg.dtype if azimuth_deg.is_floating_point() else torch.float32
    return PerpNegPlan(mix.to(dtype), torch.stack([first, second], dim=1), negative_weights.to(dtype))


def perpendicular_component(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B, c, h, w]
    """The part of x perpendicular to y, per sample: x - <x, y> / max(<y, y>, 1e-6) y (threestudio utils/ops.py)."""
    dot = (x * y).flatten(1).sum(1)  # [B]
    norm = (y * y).flatten(1).sum(1).clamp_min(1e-6)  # [B]
    return x - (dot / norm).view(-1, *([1] * (x.ndim - 1))) * y


def perp_neg_conditional(
    eps_positive: torch.Tensor,  # [B, c, h, w]
    eps_uncond: torch.Tensor,  # [B, c, h, w]
    eps_negatives: list[torch.Tensor],  # K x [B, c, h, w]
    negative_weights: torch.Tensor,  # [B, K]
) -> torch.Tensor:  # [B, c, h, w]
    """eps_y' = eps_pos + sum_i w_i perp(eps_neg_i - eps_0, eps_pos - eps_0): Perp-Neg as a conditional prediction."""
    import torch

    positive_direction = eps_positive - eps_uncond  # e_pos
    accumulated = torch.zeros_like(eps_positive)
    for index, eps_negative in enumerate(eps_negatives):
        weight = negative_weights[:, index].to(eps_positive).view(-1, *([1] * (eps_positive.ndim - 1)))
        accumulated = accumulated + weight * perpendicular_component(eps_negative - eps_uncond, positive_direction)
    return eps_positive + accumulated
