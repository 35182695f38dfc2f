"""Schedules: plain functions of training progress in [0, 1] (step / total steps).

The truncation threshold of score debiasing and the timestep range live here together; an
objective reads them (`DSDS.truncation`, `objective.timesteps`), and densification scales its
growth threshold by the truncation (`splatgen.scene.densify.densify_thresholds`).

    linear_ramp(progress, start, end)          the one interpolation every ramp uses
    truncation_threshold(progress, start, end) D-SDS c(progress), 2.0 -> 8.0 by default
    TimestepSchedule                           the range t is drawn from, and its annealing
    timestep_fractions(schedule, progress)     (lo, hi) as fractions of the training timesteps
    timestep_range(schedule, progress, T)      (min_step, max_step): integers in [0, T), inclusive
    sample_timesteps(schedule, progress, B, T) per-view integer t in [min_step, max_step]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch


Annealing = Literal["none", "step", "linear", "sqrt"]


def linear_ramp(progress: float, start: float, end: float) -> float:
    """start + (end - start) * progress, with progress clamped to [0, 1] (held outside the run)."""
    progress = min(max(progress, 0.0), 1.0)
    return start + (end - start) * progress


def truncation_threshold(progress: float, start: float = 2.0, end: float = 8.0) -> float:
    """Score-debiasing threshold c(progress), rising linearly from start to end over the run.

    D-SDS (Hong et al., arXiv 2303.15413): "we linearly increase the truncation value throughout
    the optimization", 2.0 -> 8.0 for Stable Diffusion (SJC: 8 * (0.25 + 0.75 * progress);
    threestudio: grad_clip = [0, 2.0, 8.0, total_steps]).
    """
    return linear_ramp(progress, start, end)


@dataclass
class TimestepSchedule:
    """Range of diffusion timesteps t is drawn from, as fractions of the training timesteps.

    Annealing moves the upper end of the range from `max_fraction` to `annealed_max_fraction`,
    reached at progress `anneal_progress`: 'step' jumps there (ProlificDreamer: 0.98 -> 0.5 at
    half the run), 'linear' ramps there, 'sqrt' ramps as sqrt(progress) and also collapses the
    range onto that value, so t is deterministic and decreasing (HiFA, Zhu and Zhuang 2023).
    """

    min_fraction: float = 0.02
    """Lower end of the range of t, as a fraction of the training timesteps (20 of 1000)."""
    max_fraction: float = 0.98
    """Upper end of the range of t at the start of the run (980 of 1000)."""
    annealing: Annealing = "none"
    """How the upper end moves over the run: none | step | linear | sqrt (HiFA, deterministic t)."""
    annealed_max_fraction: float = 0.5
    """Upper end of the range once annealing is complete (never below min_fraction)."""
    anneal_progress: float = 0.5
    """Training progress in [0, 1] at which annealing is complete ('step': when the drop happens)."""

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must lie in [0, 1], got {self.min_fraction}")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must lie in [0, 1], got {self.max_fraction}")
        if self.min_fraction > self.max_fraction:
            raise ValueError(f"min_fraction ({self.min_fraction}) must not exceed max_fraction ({self.max_fraction})")
        if self.annealing not in get_args(Annealing):
            raise ValueError(f"annealing must be one of {get_args(Annealing)}, got {self.annealing!r}")
        if not self.min_fraction <= self.annealed_max_fraction <= self.max_fraction:
            raise ValueError(
                f"annealed_max_fraction must lie in [min_fraction, max_fraction] = "
                f"[{self.min_fraction}, {self.max_fraction}], got {self.annealed_max_fraction}"
            )
        if not 0.0 <= self.anneal_progress <= 1.0:
            raise ValueError(f"anneal_progress must lie in [0, 1], got {self.anneal_progress}")


def timestep_fractions(schedule: TimestepSchedule, progress: float) -> tuple[float, float]:
    """(lo, hi): the range of t at this progress, as fractions of the training timesteps."""
    if schedule.annealing == "none":
        return schedule.min_fraction, schedule.max_fraction
    # Fraction of the annealing done; an annealing that completes at progress 0 is done at once.
    done = 1.0 if progress >= schedule.anneal_progress else progress / schedule.anneal_progress
    done = max(done, 0.0)
    drop = schedule.max_fraction - schedule.annealed_max_fraction
    if schedule.annealing == "step":
        hi = schedule.annealed_max_fraction if done >= 1.0 else schedule.max_fraction
        return schedule.min_fraction, hi
    if schedule.annealing == "linear":
        return schedule.min_fraction, schedule.max_fraction - drop * done
    if schedule.annealing == "sqrt":
        t = schedule.max_fraction - drop * math.sqrt(done)
        return t, t
    raise ValueError(f"annealing must be one of {get_args(Annealing)}, got {schedule.annealing!r}")


def timestep_range(schedule: TimestepSchedule, progress: float, num_train_timesteps: int = 1000) -> tuple[int, int]:
    """(min_step, max_step): the integer range of t, inclusive, inside [0, num_train_timesteps)."""
    lo, hi = timestep_fractions(schedule, progress)
    last = num_train_timesteps - 1
    min_step = min(max(round(lo * num_train_timesteps), 0), last)
    max_step = min(max(round(hi * num_train_timesteps), min_step), last)
    return min_step, max_step


def sample_timesteps(
    schedule: TimestepSchedule,
    progress: float,
    batch: int,
    num_train_timesteps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One integer t per view, uniform on [min_step, max_step]: [batch] int64 on the generator's device."""
    import torch

    min_step, max_step = timestep_range(schedule, progress, num_train_timesteps)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(min_step, max_step + 1, (batch,), generator=generator, device=device, dtype=torch.int64)
