"""`splatgen batch`'s own options (every other flag is a `splatgen train` flag applied to each item)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from splatgen.errors import SplatgenError

MAX_WORKERS = 1024
MAX_RETRIES = 10


class BatchOptionError(SplatgenError):
    """A batch option has a bad value; the message names the option."""


@dataclass
class BatchOptions:
    """Train many prompts: one ordinary run folder per item under --out, DIR/manifest.jsonl and a gallery DIR/index.html.

    PROMPTS comes first. Every other flag is a `splatgen train` flag applied to every item (e.g. --steps 600,
    objective:sds, --no-debias, --export-mesh). Re-running the same command skips finished items and resumes
    the others from their checkpoints.
    """

    prompts: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="PROMPTS")]
    """Prompt list: a text file (one prompt a line, # comments) or .jsonl ({"prompt": ..., "seed": ..., "preset": ..., any train field})."""
    out: Path
    """The batch folder: DIR/<item>/ run folders, DIR/manifest.jsonl, DIR/index.html, DIR/logs/."""
    preset: str | None = None
    """Preset for every item (a JSONL line's "preset" wins), as `splatgen train --preset`."""
    objectives: str = ""
    """Cross every prompt with these objectives, comma-separated (e.g. dsds,sds,esd); default: the preset's."""
    seeds: str = ""
    """Cross every prompt with these seeds, comma-separated (e.g. 0,1,2); default: the preset's seed."""
    engine: Literal["auto", "ray", "local"] = "auto"
    """ray: workers as Ray actors (one per GPU); local: one worker in this process; auto: ray when installed."""
    workers: int | None = None
    """Ray workers; default one per GPU of the cluster, or 1 without GPUs."""
    ray_address: str | None = None
    """An existing Ray cluster (e.g. 10.0.0.5:6379, or auto); default: start a local one."""
    shard: str | None = None
    """I/N: take items I, I+N, I+2N, ... of the list (1-based); default from SLURM_ARRAY_TASK_ID/_COUNT or RANK/WORLD_SIZE."""
    retries: int = 2
    """Times an item is run again after its worker died (a failing item is recorded, not retried)."""

    def objective_names(self) -> list[str]:
        from splatgen.objectives import OBJECTIVES  # here, not at import: `splatgen --help` loads no torch

        names = [name.strip() for name in self.objectives.split(",") if name.strip()]
        for name in names:
            if name not in OBJECTIVES:
                raise BatchOptionError(f"--objectives: unknown objective {name!r}; one of: {', '.join(OBJECTIVES)}")
        if len(set(names)) != len(names):
            raise BatchOptionError(f"--objectives names an objective twice: {self.objectives}")
        return names

    def seed_values(self) -> list[int]:
        from splatgen.train.limits import MAX_SEED

        seeds = []
        for text in (part.strip() for part in self.seeds.split(",")):
            if not text:
                continue
            if not text.isdigit() or int(text) > MAX_SEED:
                raise BatchOptionError(f"--seeds: {text!r} is not a seed (a whole number in 0..{MAX_SEED})")
            seeds.append(int(text))
        if len(set(seeds)) != len(seeds):
            raise BatchOptionError(f"--seeds names a seed twice: {self.seeds}")
        return seeds

    def validate(self) -> None:
        self.objective_names()
        self.seed_values()
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            raise BatchOptionError(f"--workers must be in 1..{MAX_WORKERS}, got {self.workers}")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise BatchOptionError(f"--retries must be in 0..{MAX_RETRIES}, got {self.retries}")
        if self.out.exists() and not self.out.is_dir():
            raise BatchOptionError(f"--out {self.out} is a file, not a folder")
        self.resolved_shard()

    def resolved_shard(self, environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
        """(I, N) with 1 <= I <= N, or None for the whole list; from --shard, else SLURM or torchrun variables."""
        if self.shard is not None:
            return parse_shard(self.shard, "--shard")
        if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
            index = _env_int(environ, "SLURM_ARRAY_TASK_ID") - first + 1
            shard = parse_shard(f"{index}/{environ['SLURM_ARRAY_TASK_COUNT']}", "SLURM_ARRAY_TASK_ID/_COUNT")
        elif "RANK" in environ and "WORLD_SIZE" in environ:
            shard = parse_shard(f"{_env_int(environ, 'RANK') + 1}/{environ['WORLD_SIZE']}", "RANK/WORLD_SIZE")
        else:
            return None
        return None if shard[1] == 1 else shard


def _env_int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise BatchOptionError(f"{name}={environ[name]!r} is not a whole number") from None


def parse_shard(text: str, source: str) -> tuple[int, int]:
    parts = text.split("/")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise BatchOptionError(f"{source} must be I/N (e.g. 1/4), got {text!r}")
    index, count = (int(part) for part in parts)
    if not 1 <= index <= count:
        raise BatchOptionError(f"{source} {text}: I must be in 1..N (shards are numbered from 1)")
    return index, count
