"""Batch items -> the `TrainConfig` of each run, checked before any model loads.

Each item's config is built in this order, later steps winning: the preset (the line's `preset`,
else `--preset`), the objective (the item's, else the crossed one: `objective:NAME`), the batch's
train flags (any `splatgen train` flag), the line's JSONL overrides, then the prompt, the seed and
the run folder `DIR/<item id>` (the live viewer off: many workers share a machine). A bad value is refused here as one line naming the prompt list's line.

The flags -> config step is the command line's own parser (`splatgen.cli.parse_train_args`),
passed in as `parse_config(preset, flags)` so every train flag means in a batch what it means to
`splatgen train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from splatgen.batch.items import BatchItem, PromptListError
from splatgen.errors import SplatgenError
from splatgen.io.config_file import from_dict, to_dict
from splatgen.objectives import OBJECTIVES
from splatgen.train.config import TrainConfig

ConfigParser = Callable[[str | None, list[str]], TrainConfig]
"""(preset name or None, train flags) -> TrainConfig; raises `SplatgenError` (or exits, as tyro does) on bad flags."""

FLAGS_SET_PER_ITEM = {"--prompt": "the prompts come from the list", "--resume": "re-run the batch to continue it"}


@dataclass(frozen=True)
class WorkItem:
    """One run to do: its id (= its folder's name under the batch folder), where it came from, its config."""

    id: str
    where: str  # the prompt list's file:line
    config: TrainConfig  # config.out is the run folder (absolute)
    cwd: Path = field(default_factory=Path.cwd)  # the batch's folder: relative paths in the config mean this

    @property
    def objective(self) -> str:
        return objective_name(self.config)


def objective_name(config: TrainConfig) -> str:
    return type(config.objective).config_name


def check_train_flags(train_args: list[str], crossing_objectives: bool) -> None:
    """Refuse the train flags a batch sets itself, with one line."""
    for arg in train_args:
        name = arg.split("=", 1)[0]
        if name in FLAGS_SET_PER_ITEM:
            raise SplatgenError(f"splatgen batch does not take {name}: {FLAGS_SET_PER_ITEM[name]}")
        if crossing_objectives and arg.startswith("objective:"):
            raise SplatgenError(f"give the objective either with --objectives or as {arg}, not both")


def plan_items(
    items: list[BatchItem], out_dir: Path, parse_config: ConfigParser, preset: str | None, train_args: list[str]
) -> list[WorkItem]:
    """The configs of all items (validated), in list order; duplicate items are refused naming both lines."""
    bases: dict[tuple[str | None, str | None], TrainConfig] = {}

    def base(line_preset: str | None, objective: str | None) -> TrainConfig:
        key = (line_preset or preset, objective)
        if key not in bases:
            flags = ([f"objective:{objective}"] if objective is not None else []) + list(train_args)
            bases[key] = parse_config(key[0], flags)
        return bases[key]

    crossed = sorted({item.objective for item in items if isinstance(item.objective, str)})
    for name in crossed:  # the batch's own presets and objectives: errors here name no line
        if name not in OBJECTIVES:
            where = next(item.line.where for item in items if item.objective == name)
            raise PromptListError(f"{where}: unknown objective {name!r}; one of: {', '.join(OBJECTIVES)}")
    base(None, None)
    planned: list[WorkItem] = []
    seen: dict[str, str] = {}
    for item in items:
        line = item.line
        try:
            objective = item.objective if isinstance(item.objective, str) else None
            config = base(line.preset, objective)
            if line.overrides or isinstance(item.objective, dict):
                config = _with_overrides(config, line.overrides, item.objective)
            config = replace(config, prompt=line.prompt, seed=config.seed if item.seed is None else item.seed)
            item_id = item.item_id(objective_name(config), config.seed)
            viewer = replace(config.viewer, enabled=False)  # workers share machines: no live viewer ports
            config = replace(config, out=Path(out_dir).absolute() / item_id, resume=None, viewer=viewer)
            config.validate()
        except (SplatgenError, ValueError) as error:
            raise PromptListError(f"{line.where}: {error}") from None
        if item_id in seen:
            raise PromptListError(f"{line.where}: the same item as {seen[item_id]} ({item_id})")
        seen[item_id] = line.where
        planned.append(WorkItem(item_id, line.where, config))
    return planned


def _with_overrides(config: TrainConfig, overrides: dict[str, Any], objective: Any) -> TrainConfig:
    data = to_dict(config)
    updates = dict(overrides)
    if isinstance(objective, dict):
        updates["objective"] = objective
    _merge(data, updates)
    return from_dict(TrainConfig, data)


def _merge(data: dict[str, Any], updates: dict[str, Any]) -> None:
    """Deep-merge `updates` into `data`; a mapping naming another `type` replaces the section."""
    for key, value in updates.items():
        current = data.get(key)
        if (
            isinstance(value, dict)
            and isinstance(current, dict)
            and value.get("type", current.get("type")) == current.get("type")
        ):
            _merge(current, value)
        else:
            data[key] = value
