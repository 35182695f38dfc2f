"""The azimuth-range adjustment: the prompt's own view bias re-balances the front/side/back arcs.

D-SDS (Hong et al., arXiv 2303.15413) adjusts "the discrepancy between view prompts and the
viewing direction" but publishes no formula, and threestudio only exposes fixed thresholds. This
is splatgen's rule (rationale and worked numbers in `docs/prompt-debiasing.md`):

1. Take the LM's view distribution for the prompt, p, and for a neutral reference prompt probed
   with the same template, q, both renormalised over the azimuthal views (front, side, back).
   The reference cancels the probe's own preference for some view words.
2. The prompt's excess belief in view v is rho_v = log(p_v / q_v), soft-thresholded by a
   tolerance tau: rho_v <- sign(rho_v) max(|rho_v| - tau, 0) (LM noise moves nothing).
3. Each view's half-circle width w_v (front half-width, one side arc, back half-width; they sum
   to 180) is scaled by exp(-strength * rho_v), i.e. by (q_v / p_v)^strength, and the three are
   rescaled to sum to 180 again. A view the prompt already implies gets a narrower arc, so its
   view prompt (and the prompt's own bias) is not applied over too wide an angle.
4. Front and back half-widths are clamped to [min_half_width, max_half_width] (widened to
   include the configured ranges, so neutral stays exactly the identity); the side arcs take the
   remainder. Results are rounded to 0.01 degree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from splatgen.prompts.views import AZIMUTHAL_VIEWS, VIEW_NAMES, ViewRanges

if TYPE_CHECKING:
    import torch

PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class RangeRule:
    """Parameters of the azimuth-range adjustment (see the module docstring)."""

    strength: float = 0.5
    """Exponent on q_v / p_v: 0 = never adjust, 1 = arc width inversely proportional to the LM's excess belief."""
    tolerance: float = 0.1
    """Log-ratio dead band tau: a view's probability must move more than ~10% from the reference to matter."""
    min_half_width: float = 20.0
    """Smallest front / back half-width in degrees (arc >= 40 deg)."""
    max_half_width: float = 70.0
    """Largest front / back half-width in degrees; each side arc keeps >= 180 - 2 x this."""

    def validate(self) -> None:
        if self.strength < 0 or not math.isfinite(self.strength):
            raise ValueError(f"range strength must be finite and >= 0, got {self.strength}")
        if self.tolerance < 0 or not math.isfinite(self.tolerance):
            raise ValueError(f"range tolerance must be finite and >= 0, got {self.tolerance}")
        if not (0.0 < self.min_half_width <= self.max_half_width < 90.0):
            raise ValueError(
                "range bounds need 0 < min_half_width <= max_half_width < 90 (so the side arcs stay "
                f"non-empty), got {self.min_half_width}, {self.max_half_width}"
            )


def _azimuthal_distribution(view_probabilities: torch.Tensor) -> torch.Tensor:  # [3]
    """[4] probabilities over VIEW_NAMES -> [3] over front, side, back, renormalised and floored."""
    indices = [VIEW_NAMES.index(view) for view in AZIMUTHAL_VIEWS]
    azimuthal = view_probabilities.double()[indices].clamp_min(PROBABILITY_FLOOR)  # [3]
    return azimuthal / azimuthal.sum()


def excess_log_ratios(
    prompt_probabilities: torch.Tensor,  # [4] P(v | prompt) over VIEW_NAMES
    reference_probabilities: torch.Tensor,  # [4] P(v | reference prompt)
    tolerance: float,
) -> torch.Tensor:  # [3] soft-thresholded log(p_v / q_v) for front, side, back
    """The prompt's excess belief in each azimuthal view relative to the reference, with the dead band."""
    log_ratio = (_azimuthal_distribution(prompt_probabilities) / _azimuthal_distribution(reference_probabilities)).log()
    return log_ratio.sign() * (log_ratio.abs() - tolerance).clamp_min(0.0)


def adjust_azimuth_ranges(
    prompt_probabilities: torch.Tensor,  # [4] P(v | prompt) over VIEW_NAMES
    reference_probabilities: torch.Tensor,  # [4] P(v | reference prompt) over VIEW_NAMES
    base: ViewRanges = ViewRanges(),
    rule: RangeRule = RangeRule(),
) -> ViewRanges:
    """New front/back boundaries from the LM's view distribution; `base` when the prompt is neutral."""
    import torch

    base.validate()
    rule.validate()
    excess = excess_log_ratios(prompt_probabilities, reference_probabilities, rule.tolerance)  # [3]
    if rule.strength == 0.0 or bool((excess == 0).all()):
        return base
    front, back = base.front_max_azimuth, 180.0 - base.back_min_azimuth
    side = 180.0 - front - back
    widths = torch.tensor([front, side, back], dtype=torch.float64) * torch.exp(-rule.strength * excess)  # [3]
    widths = widths * (180.0 / widths.sum())
    new_front = _clamp(float(widths[0]), min(rule.min_half_width, front), max(rule.max_half_width, front))
    new_back = _clamp(float(widths[2]), min(rule.min_half_width, back), max(rule.max_half_width, back))
    return ViewRanges(
        front_max_azimuth=round(new_front, 2),
        back_min_azimuth=round(180.0 - new_back, 2),
        overhead_min_elevation=base.overhead_min_elevation,
    )


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
