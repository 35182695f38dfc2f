"""Prompt lists -> batch items: a text file or JSONL, crossed with objectives and seeds.

Text file: one prompt per line; blank lines and lines starting with `#` are skipped.
JSONL (`.jsonl`): one object per line, `{"prompt": ..., "seed": 3, "preset": "sds", "objective": "esd",
"steps": 600, "prompts": {"debias": false}, ...}`: `prompt` is required; every other key is a
`TrainConfig` field in the YAML layout of presets (`objective` may also be a name). Blank and `#` lines
are skipped here too. Every bad line is one `PromptListError` naming `file:line`.

An item's own `seed` / `objective` win over the batch's `--seeds` / `--objectives`, which cross the
items that name none. An item's id (its run folder's name) is `<prompt slug>-<objective>-s<seed>`,
plus a short hash of its preset and overrides when it has any, so the same line always maps to the
same folder and a re-run finds it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splatgen.errors import SplatgenError
from splatgen.io.run_folder import slugify

JSONL_SUFFIXES = (".jsonl", ".ndjson")
ITEM_KEYS = ("prompt", "seed", "preset", "objective")  # the keys a JSONL line has beyond TrainConfig overrides
REFUSED_KEYS = {
    "out": "each item's run folder is chosen by the batch (under --out)",
    "resume": "re-run the same batch command to continue its items",
}


class PromptListError(SplatgenError):
    """A prompt list (or one of its lines) cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class PromptLine:
    """One prompt of the list, with what its line sets for it."""

    prompt: str
    where: str  # "prompts.jsonl:4"
    seed: int | None = None
    preset: str | None = None
    objective: str | dict[str, Any] | None = None  # a name (`esd`) or a YAML-layout mapping with `type`
    overrides: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields, YAML layout


@dataclass(frozen=True)
class BatchItem:
    """One run of the batch: a prompt line crossed with an objective and a seed (None: the config's own)."""

    line: PromptLine
    objective: str | dict[str, Any] | None
    seed: int | None

    def item_id(self, objective_name: str, seed: int) -> str:
        """The run folder's name; deterministic, so a re-run finds the same folder."""
        base = f"{slugify(self.line.prompt, 40)}-{objective_name}-s{seed}"
        specific = {"preset": self.line.preset, "overrides": self.line.overrides}
        if isinstance(self.objective, dict):
            specific["objective"] = self.objective
        if self.line.preset is None and not self.line.overrides and not isinstance(self.objective, dict):
            return base
        digest = hashlib.sha1(json.dumps(specific, sort_keys=True).encode()).hexdigest()[:6]
        return f"{base}-{digest}"


def read_prompt_list(path: Path) -> list[PromptLine]:
    """The prompts of a text file or a JSONL file (by suffix); `PromptListError` names file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptListError(f"prompt list {path} does not exist") from None
    except IsADirectoryError:
        raise PromptListError(f"prompt list {path} is a folder; give a text or .jsonl file") from None
    except UnicodeDecodeError as error:
        raise PromptListError(f"prompt list {path} is not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise PromptListError(f"cannot read prompt list {path}: {error.strerror or error}") from None
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}:{number}"
        lines.append(
            _json_line(stripped, where) if jsonl else PromptLine(prompt=" ".join(stripped.split()), where=where)
        )
    if not lines:
        raise PromptListError(f"prompt list {path} has no prompts (blank and # lines are skipped)")
    return lines


def _json_line(text: str, where: str) -> PromptLine:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PromptListError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise PromptListError(f'{where}: expected a JSON object like {{"prompt": "a red apple"}}')
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptListError(f'{where}: needs a non-empty "prompt" string')
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise PromptListError(f'{where}: "seed" must be a whole number >= 0, got {json.dumps(seed)}')
    preset = data.get("preset")
    if preset is not None and (not isinstance(preset, str) or not preset):
        raise PromptListError(f'{where}: "preset" must be a preset name or a .yaml path, got {json.dumps(preset)}')
    objective = data.get("objective")
    if objective is not None and not isinstance(objective, (str, dict)):
        raise PromptListError(f'{where}: "objective" must be a name (e.g. "sds") or an object with a "type"')
    for key, reason in REFUSED_KEYS.items():
        if key in data:
            raise PromptListError(f'{where}: "{key}" cannot be set per item: {reason}')
    overrides = {key: value for key, value in data.items() if key not in ITEM_KEYS}
    return PromptLine(" ".join(prompt.split()), where, seed, preset, objective, overrides)


def cross(lines: list[PromptLine], objectives: list[str], seeds: list[int]) -> list[BatchItem]:
    """Every line x every objective x every seed, in list order (a line's own seed/objective is not crossed)."""
    items = []
    for line in lines:
        line_objectives = [line.objective] if line.objective is not None else (objectives or [None])
        line_seeds = [line.seed] if line.seed is not None else (seeds or [None])
        items += [BatchItem(line, objective, seed) for objective in line_objectives for seed in line_seeds]
    return items
