"""View prompts: view assignment, templates, blend weights, ViewPrompts JSON, and the azimuth-range rule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from splatgen.prompts import (
    PREFIX_TEMPLATE,
    SUFFIX_TEMPLATE,
    VIEW_NAMES,
    EmptyPromptError,
    RangeRule,
    ViewPrompts,
    ViewRanges,
    adjust_azimuth_ranges,
    assign_views,
    plain_view_prompts,
    view_interpolation_weights,
    view_names,
)
from splatgen.prompts.views import intervals_cover_circle_once


def _views_at(
    azimuths: list[float], elevations: list[float] | float = 0.0, ranges: ViewRanges = ViewRanges()
) -> list[str]:
    azimuth = torch.tensor(azimuths)
    elevation = torch.tensor(elevations) if isinstance(elevations, list) else torch.full_like(azimuth, elevations)
    return view_names(assign_views(azimuth, elevation, ranges))


def test_assign_views_at_boundary_azimuths():
    azimuths = [0.0, 44.9, 45.1, -44.9, -45.1, 90.0, 134.9, 135.1, -135.1, 179.9, -180.0, 180.0, 359.0, -359.0]
    expected = [
        "front",
        "front",
        "side",
        "front",
        "side",
        "side",
        "side",
        "back",
        "back",
        "back",
        "back",
        "back",
        "front",
        "front",
    ]
    assert _views_at(azimuths) == expected


def test_assign_views_overhead_above_60_degrees_wins_at_any_azimuth():
    assert _views_at([0.0, 90.0, 180.0, -90.0], elevations=61.0) == ["overhead"] * 4
    assert _views_at([0.0, 90.0, 180.0], elevations=60.0) == ["front", "side", "back"]
    assert _views_at([0.0], elevations=-10.0) == ["front"]


def test_assign_views_uses_configured_ranges_and_accepts_view_prompts():
    ranges = ViewRanges(front_max_azimuth=30.0, back_min_azimuth=150.0, overhead_min_elevation=45.0)
    assert _views_at([29.0, 31.0, 149.0, 151.0, 0.0], [0, 0, 0, 0, 46.0], ranges) == [
        "front",
        "side",
        "side",
        "back",
        "overhead",
    ]
    view_prompts = plain_view_prompts("a dog", ranges=ranges)
    indices = assign_views(torch.tensor([29.0, 151.0]), torch.zeros(2), view_prompts)
    assert [view_prompts.in_view_order()[i] for i in indices.tolist()] == ["a dog, front view", "a dog, back view"]


def test_templates_suffix_and_prefix():
    suffix = plain_view_prompts("a smiling dog")
    assert suffix.in_view_order() == [f"a smiling dog, {view} view" for view in VIEW_NAMES]
    prefix = plain_view_prompts("a smiling dog", view_template=PREFIX_TEMPLATE)
    assert prefix["back"] == "back view of a smiling dog"
    custom = plain_view_prompts("a dog", view_template="{prompt}, seen from the {view}")
    assert custom["side"] == "a dog, seen from the side"
    assert SUFFIX_TEMPLATE == "{prompt}, {view} view"


@pytest.mark.parametrize("template", ["{prompt} front view", "{view} view", "{prompt}, {view} view, {style}"])
def test_bad_view_template_is_refused(template):
    with pytest.raises(ValueError, match="template"):
        plain_view_prompts("a dog", view_template=template)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t  "])
def test_empty_prompt_is_refused(prompt):
    with pytest.raises(EmptyPromptError, match="empty"):
        plain_view_prompts(prompt)
    assert issubclass(EmptyPromptError, ValueError)


def test_prompt_whitespace_and_unicode_are_normalised():
    view_prompts = plain_view_prompts("  un  chien\tsouriant, sur une i\u0302le  ")
    assert view_prompts.prompt == "un chien souriant, sur une \u00eele"
    assert view_prompts["front"] == "un chien souriant, sur une \u00eele, front view"


@pytest.mark.parametrize("front, back", [(45.0, 135.0), (30.0, 150.0), (20.0, 110.0), (70.0, 110.0), (1.0, 179.0)])
def test_azimuth_intervals_tile_the_circle_once(front, back):
    ranges = ViewRanges(front_max_azimuth=front, back_min_azimuth=back)
    assert intervals_cover_circle_once(ranges)
    assert sum(ranges.arc_widths().values()) == pytest.approx(360.0)
    azimuth = torch.linspace(-180.0, 179.99, 3601)
    counts = torch.bincount(assign_views(azimuth, torch.zeros_like(azimuth), ranges), minlength=4)
    assert counts[3] == 0 and counts.sum() == 3601


def test_bad_ranges_are_refused():
    for front, back in [(0.0, 135.0), (90.0, 80.0), (45.0, 180.0)]:
        with pytest.raises(ValueError, match="front_max_azimuth"):
            ViewRanges(front_max_azimuth=front, back_min_azimuth=back).validate()


def test_view_prompts_json_structure_and_round_trip():
    ranges = ViewRanges(front_max_azimuth=40.0, back_min_azimuth=140.0)
    view_prompts = plain_view_prompts("a dog", ranges=ranges)
    data = json.loads(json.dumps(view_prompts.to_json()))
    assert set(data) == {"prompt", "views"}
    assert list(data["views"]) == list(VIEW_NAMES)
    for view in VIEW_NAMES:
        assert set(data["views"][view]) == {"prompt", "removed", "azimuth", "elevation"}
    assert data["views"]["front"]["azimuth"] == [[-40.0, 40.0]]
    assert data["views"]["side"]["azimuth"] == [[40.0, 140.0], [-140.0, -40.0]]
    assert data["views"]["back"]["azimuth"] == [[140.0, 180.0], [-180.0, -140.0]]
    assert data["views"]["overhead"] == {
        "prompt": "a dog, overhead view",
        "removed": [],
        "azimuth": [[-180.0, 180.0]],
        "elevation": [60.0, 90.0],
    }
    assert data["views"]["front"]["elevation"] == [-90.0, 60.0]
    assert ViewPrompts.from_json(data) == view_prompts


def _weights_at(azimuths, elevations=0.0, ranges=ViewRanges()):
    azimuth = torch.tensor(azimuths, dtype=torch.float64)
    elevation = torch.full_like(azimuth, elevations)
    return view_interpolation_weights(azimuth, elevation, ranges)


def test_interpolation_weights_sum_to_one_and_favour_the_assigned_view():
    generator = torch.Generator().manual_seed(0)
    azimuth = torch.rand(2000, generator=generator) * 720.0 - 360.0  # [2000], unwrapped on purpose
    elevation = torch.rand(2000, generator=generator) * 100.0 - 10.0  # [2000]
    for ranges in (ViewRanges(), ViewRanges(front_max_azimuth=25.0, back_min_azimuth=120.0)):
        weights = view_interpolation_weights(azimuth, elevation, ranges)  # [2000, 4]
        assert weights.shape == (2000, 4)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2000))
        assert bool((weights >= 0).all()) and bool(((weights > 0).sum(dim=1) <= 2).all())
        assert torch.equal(weights.argmax(dim=1), assign_views(azimuth, elevation, ranges))


def test_interpolation_weights_at_anchors_and_boundaries():
    weights = _weights_at([0.0, 45.0, 90.0, 135.0, -180.0, -90.0, 67.5])
    torch.testing.assert_close(weights[0], torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(weights[1], torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(weights[2], torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(weights[3], torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(weights[4], torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(weights[5], weights[2])
    torch.testing.assert_close(weights[6], torch.tensor([0.25, 0.75, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(_weights_at([30.0, 170.0], elevations=75.0)[:, 3], torch.ones(2, dtype=torch.float64))


def test_interpolation_weights_are_continuous_in_azimuth():
    for ranges in (ViewRanges(), ViewRanges(front_max_azimuth=25.0, back_min_azimuth=150.0)):
        azimuth = torch.linspace(-180.0, 180.0, 7201, dtype=torch.float64)
        weights = view_interpolation_weights(azimuth, torch.zeros_like(azimuth), ranges)
        assert float((weights[1:] - weights[:-1]).abs().max()) < 0.02
        assert weights.dtype == torch.float64


def _distribution(front: float, side: float, back: float, overhead: float = 0.05) -> torch.Tensor:
    values = torch.tensor([front, side, back, overhead], dtype=torch.float64)
    return values / values.sum()


NEUTRAL = _distribution(0.4, 0.35, 0.2)


@pytest.mark.parametrize(
    "base", [ViewRanges(), ViewRanges(30.0, 150.0), ViewRanges(10.0, 100.0), ViewRanges(80.0, 95.0)]
)
def test_range_rule_is_identity_when_the_prompt_is_neutral(base):
    assert adjust_azimuth_ranges(NEUTRAL, NEUTRAL, base) == base
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    assert adjust_azimuth_ranges(uniform, uniform, base) == base
    overhead_only_differs = _distribution(0.4, 0.35, 0.2, overhead=0.6)
    assert adjust_azimuth_ranges(overhead_only_differs, NEUTRAL, base) == base
    slightly_off = _distribution(0.42, 0.34, 0.19)
    assert adjust_azimuth_ranges(slightly_off, NEUTRAL, base) == base, "inside the tolerance dead band"


def test_range_rule_narrows_the_view_the_prompt_implies():
    front_heavy = adjust_azimuth_ranges(_distribution(0.8, 0.15, 0.05), NEUTRAL)
    assert front_heavy.front_max_azimuth < 45.0
    back_heavy = adjust_azimuth_ranges(_distribution(0.2, 0.3, 0.5), NEUTRAL)
    assert 180.0 - back_heavy.back_min_azimuth < 45.0
    side_heavy = adjust_azimuth_ranges(_distribution(0.15, 0.8, 0.05), NEUTRAL)
    side_arc = side_heavy.back_min_azimuth - side_heavy.front_max_azimuth
    assert side_arc < 90.0


def test_range_rule_is_monotone_in_the_implied_view_and_bounded():
    fronts = []
    for front_probability in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999999):
        rest = 1.0 - front_probability
        ranges = adjust_azimuth_ranges(_distribution(front_probability, rest * 0.35 / 0.55, rest * 0.2 / 0.55), NEUTRAL)
        fronts.append(ranges.front_max_azimuth)
    assert fronts == sorted(fronts, reverse=True)
    assert fronts[0] == 45.0 and fronts[-1] == 20.0


def test_range_rule_keeps_bounds_and_tiling_for_random_distributions():
    generator = torch.Generator().manual_seed(1)
    rule = RangeRule()
    for _ in range(300):
        prompt, reference = torch.rand(2, 4, generator=generator, dtype=torch.float64) ** 4  # spiky distributions
        prompt, reference = prompt / prompt.sum(), reference / reference.sum()
        strength = float(torch.rand(1, generator=generator)) * 2.0
        ranges = adjust_azimuth_ranges(prompt, reference, ViewRanges(), RangeRule(strength=strength))
        ranges.validate()
        assert intervals_cover_circle_once(ranges)
        front_half, back_half = ranges.front_max_azimuth, 180.0 - ranges.back_min_azimuth
        assert rule.min_half_width - 1e-9 <= front_half <= rule.max_half_width + 1e-9
        assert rule.min_half_width - 1e-9 <= back_half <= rule.max_half_width + 1e-9
        assert ranges.back_min_azimuth - ranges.front_max_azimuth >= 180.0 - 2 * rule.max_half_width - 1e-9


def test_range_rule_strength_zero_and_worked_example():
    front_heavy = _distribution(0.6, 0.25, 0.15, overhead=0.0)
    reference = _distribution(0.3, 0.4, 0.3, overhead=0.0)
    assert adjust_azimuth_ranges(front_heavy, reference, rule=RangeRule(strength=0.0)) == ViewRanges()
    ranges = adjust_azimuth_ranges(front_heavy, reference)
    # docs/prompt-debiasing.md: widths 45, 90, 45 scaled by exp(-0.5 x soft-thresholded log-ratios).
    excess = [
        math.copysign(max(abs(math.log(p / q)) - 0.1, 0.0), math.log(p / q))
        for p, q in [(0.6, 0.3), (0.25, 0.4), (0.15, 0.3)]
    ]
    widths = [width * math.exp(-0.5 * value) for width, value in zip((45.0, 90.0, 45.0), excess)]
    scale = 180.0 / sum(widths)
    assert ranges.front_max_azimuth == pytest.approx(round(widths[0] * scale, 2))
    assert ranges.back_min_azimuth == pytest.approx(round(180.0 - widths[2] * scale, 2))
    assert ranges.front_max_azimuth == pytest.approx(29.77, abs=0.01)
    assert ranges.back_min_azimuth == pytest.approx(126.13, abs=0.01)


def test_range_rule_validation():
    for rule in (
        RangeRule(strength=-1.0),
        RangeRule(min_half_width=0.0),
        RangeRule(max_half_width=90.0),
        RangeRule(min_half_width=50.0, max_half_width=40.0),
        RangeRule(tolerance=-0.1),
    ):
        with pytest.raises(ValueError):
            adjust_azimuth_ranges(NEUTRAL, NEUTRAL, ViewRanges(), rule)
