"""Training metrics on disk: one JSON object per line, appended as the run goes.

    <run>/metrics.jsonl      one record per logged step (every `log_every` steps)
    <run>/refinements.jsonl  one record per densify/prune refinement

A metrics record is a flat JSON object; the loop writes these keys (see `StepRecord`):

    step            completed steps
    loss            the objective's loss at that step
    grad_norm       L2 norm of the gradient over every Gaussian parameter
    num_gaussians   Gaussians after the step
    truncation      the D-SDS truncation value c(progress), null for objectives without one
    grow_threshold  the densify growth threshold in force (tied to the truncation, see schedules.py)
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

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from splatgen.io.atomic import write_text_atomic

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


def _strict(value: Any) -> Any:
    """NaN/Inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log, in step order, one per step (the last written wins).

    A missing file is an empty log; a line that does not parse (a torn last write) is skipped.
    """
    path = Path(path)
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


class MetricsLog:
    """An append-only JSON-lines log keyed by `step`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def resume(self, step: int) -> list[dict[str, Any]]:
        """Keep the records up to `step` (dropping later ones and torn lines); returns them."""
        kept = [record for record in read_records(self.path) if record["step"] <= step]
        if self.path.exists():
            write_text_atomic(self.path, "".join(json.dumps(record) + "\n" for record in kept))
        return kept

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as one line (flushed); it must have an integer `step`."""
        if not isinstance(record.get("step"), int):
            raise ValueError(f"a metrics record needs an integer 'step', got {record.get('step')!r}")
        line = json.dumps(_strict(dict(record)), allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
