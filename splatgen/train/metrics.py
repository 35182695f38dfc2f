"""Training metrics on disk: one JSON object per line, appended as the run goes.

    <run>/metrics.jsonl      one record per logged step (every `log_every` steps)
    <run>/refinements.jsonl  one record per densify/prune refinement

A metrics record is a flat JSON object; the loop writes these keys (see `StepRecord`):

    step            completed steps
    loss            the objective's loss at that step
    grad_norm       L2 norm of the gradient over every Gaussian parameter
    num_gaussians   Gaussians after the step
    truncation      the D-SDS truncation value c(progress), null for objectives without one
    grow_threshold  the densify growth threshold in force, in the growth rule's units (multiples of the
                    reference median for the relative rule); tied to the truncation, see schedules.py
    t_min, t_max    the timestep range sampled at that step
    skipped_steps   steps skipped so far for non-finite values
    refinements     refinements so far
    seconds         training seconds so far (summed over resumes)

Adding a field is adding a key: `MetricsLog.append` writes any JSON-serialisable mapping, and
readers (`read_records`) keep every key they find. Non-finite floats are written as null so each
line stays strict JSON (browsers and `jq` reject NaN).

Append-safe and resumable: each record is one `write` of a whole line followed by a flush, so a
crash can tear at most the last line, which `read_records` skips. `MetricsLog.resume(step)` drops
every record past `step` (a resume from the checkpoint at `step` replays those steps) and rewrites
the file atomically; readers also keep only the last record of a step, so a log is never read
with a step twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from splatgen.io.jsonl import JsonLinesLog as MetricsLog
from splatgen.io.jsonl import read_records

__all__ = ["METRICS_FILE", "REFINEMENTS_FILE", "MetricsLog", "StepRecord", "read_records"]

METRICS_FILE = "metrics.jsonl"
REFINEMENTS_FILE = "refinements.jsonl"


@dataclass
class StepRecord:
    """The fields the training loop logs per step; `asdict` of it is one metrics line."""

    step: int
    loss: float
    grad_norm: float
    num_gaussians: int
    truncation: float | None
    grow_threshold: float | None
    t_min: int
    t_max: int
    skipped_steps: int
    refinements: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
