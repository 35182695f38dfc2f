"""Schedules: the linear ramp, the D-SDS truncation threshold and the timestep range and sampler."""

from __future__ import annotations

import math

import pytest
import torch

from splatgen.objectives import DSDS, SDS, SSD
from splatgen.objectives.schedules import (
    TimestepSchedule,
    linear_ramp,
    sample_timesteps,
    timestep_fractions,
    timestep_range,
    truncation_threshold,
)


def test_linear_ramp_interpolates_and_holds_outside_the_run():
    assert linear_ramp(0.0, 2.0, 8.0) == 2.0
    assert linear_ramp(0.5, 2.0, 8.0) == 5.0
    assert linear_ramp(1.0, 2.0, 8.0) == 8.0
    assert linear_ramp(-0.3, 2.0, 8.0) == 2.0
    assert linear_ramp(1.7, 2.0, 8.0) == 8.0
    assert linear_ramp(0.25, 1.0, 0.0) == 0.75


def test_truncation_threshold_is_two_to_eight_linear():
    assert truncation_threshold(0.0) == 2.0
    assert truncation_threshold(1.0) == 8.0
    for progress in torch.linspace(0, 1, 11).tolist():
        assert truncation_threshold(progress) == pytest.approx(2.0 + 6.0 * progress)
    # The SJC form 8 (0.25 + 0.75 progress) is the same line.
    assert truncation_threshold(0.3) == pytest.approx(8.0 * (0.25 + 0.75 * 0.3))


def test_objective_truncation_reads_the_objective():
    assert DSDS().truncation(0.0) == 2.0
    assert DSDS(truncation_start=1.0, truncation_end=3.0).truncation(0.5) == 2.0
    assert SDS().truncation(0.5) is None and SSD().truncation(0.5) is None


def test_default_range_is_twenty_to_nine_eighty():
    schedule = TimestepSchedule()
    assert timestep_fractions(schedule, 0.0) == (0.02, 0.98)
    assert timestep_fractions(schedule, 1.0) == (0.02, 0.98)
    assert timestep_range(schedule, 0.5, 1000) == (20, 980)
    assert timestep_range(schedule, 0.5) == (20, 980)  # Stable Diffusion's 1000 training timesteps by default


def test_step_annealing_drops_at_the_chosen_progress():
    schedule = TimestepSchedule(annealing="step", annealed_max_fraction=0.5, anneal_progress=0.5)
    assert timestep_fractions(schedule, 0.0) == (0.02, 0.98)
    assert timestep_fractions(schedule, 0.499) == (0.02, 0.98)
    assert timestep_fractions(schedule, 0.5) == (0.02, 0.5)
    assert timestep_fractions(schedule, 1.0) == (0.02, 0.5)
    assert timestep_range(schedule, 0.75, 1000) == (20, 500)


def test_linear_annealing_ramps_then_holds():
    schedule = TimestepSchedule(annealing="linear", annealed_max_fraction=0.5, anneal_progress=0.8)
    assert timestep_fractions(schedule, 0.0)[1] == pytest.approx(0.98)
    assert timestep_fractions(schedule, 0.4)[1] == pytest.approx(0.98 - 0.48 * 0.5)
    assert timestep_fractions(schedule, 0.8)[1] == pytest.approx(0.5)
    assert timestep_fractions(schedule, 1.0) == pytest.approx((0.02, 0.5))


def test_sqrt_annealing_is_deterministic_hifa():
    schedule = TimestepSchedule(min_fraction=0.02, annealing="sqrt", annealed_max_fraction=0.3, anneal_progress=1.0)
    for progress in (0.0, 0.25, 0.64, 1.0):
        lo, hi = timestep_fractions(schedule, progress)
        assert lo == hi == pytest.approx(0.98 - 0.68 * math.sqrt(progress))
    t = sample_timesteps(schedule, 0.25, 64, 1000, torch.Generator().manual_seed(0))
    assert torch.all(t == round((0.98 - 0.68 * 0.5) * 1000))


def test_annealing_done_at_progress_zero_applies_at_once():
    schedule = TimestepSchedule(annealing="linear", annealed_max_fraction=0.5, anneal_progress=0.0)
    assert timestep_fractions(schedule, 0.0) == (0.02, 0.5)


@pytest.mark.parametrize("annealing", ["none", "step", "linear", "sqrt"])
def test_samples_are_integers_inside_the_bounds(annealing):
    schedule = TimestepSchedule(annealing=annealing, annealed_max_fraction=0.4, anneal_progress=0.6)
    generator = torch.Generator().manual_seed(1)
    for progress in (0.0, 0.3, 0.6, 0.9):
        lo, hi = timestep_range(schedule, progress, 1000)
        t = sample_timesteps(schedule, progress, 512, 1000, generator)
        assert t.dtype == torch.int64 and t.shape == (512,)
        assert int(t.min()) >= lo and int(t.max()) <= hi
        if lo < hi:  # uniform over the whole range: both ends get reached with 512 draws over <= 961 values
            assert int(t.max()) - int(t.min()) > 0.8 * (hi - lo)


def test_sampling_is_reproducible_with_a_seeded_generator():
    schedule = TimestepSchedule()
    first = sample_timesteps(schedule, 0.2, 16, 1000, torch.Generator().manual_seed(7))
    second = sample_timesteps(schedule, 0.2, 16, 1000, torch.Generator().manual_seed(7))
    other = sample_timesteps(schedule, 0.2, 16, 1000, torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_bounds_stay_inside_the_training_timesteps():
    schedule = TimestepSchedule(min_fraction=0.0, max_fraction=1.0)
    assert timestep_range(schedule, 0.0, 1000) == (0, 999)
    t = sample_timesteps(schedule, 0.0, 2048, 1000, torch.Generator().manual_seed(0))
    assert int(t.min()) >= 0 and int(t.max()) <= 999


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"min_fraction": 0.6, "max_fraction": 0.5, "annealed_max_fraction": 0.5}, "min_fraction"),
        ({"min_fraction": -0.1}, "min_fraction"),
        ({"max_fraction": 1.2}, "max_fraction"),
        ({"annealing": "cosine"}, "annealing"),
        ({"annealed_max_fraction": 0.01}, "annealed_max_fraction"),
        ({"anneal_progress": 1.5}, "anneal_progress"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TimestepSchedule(**kwargs).validate()
