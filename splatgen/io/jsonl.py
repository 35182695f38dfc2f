"""JSON-lines logs keyed by an integer `step`: append-safe, resumable, strict JSON.

Each record is one `write` of a whole line followed by a flush, so a crash can tear at most the
last line, which `read_records` skips. Readers keep only the last record of a step. Non-finite
floats are written as null (`strict_json`) so every line parses in browsers and `jq`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from splatgen.io.atomic import write_text_atomic


def strict_json(value: Any) -> Any:
    """NaN/Inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
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


class JsonLinesLog:
    """An append-only JSON-lines log keyed by `step` (`resume(step)` drops the records after `step`)."""

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
        line = json.dumps(strict_json(dict(record)), allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
