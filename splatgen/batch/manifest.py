"""`DIR/manifest.jsonl`: one line per item, rewritten atomically on every change; the batch folder's lock.

Each line is one JSON object:

    {"id": "a-red-apple-dsds-s0", "prompt": "a red apple", "objective": "dsds", "seed": 0,
     "where": "prompts.txt:3", "status": "done", "attempts": 1, "seconds": 41.2, "steps": 1200,
     "run": "a-red-apple-dsds-s0", "ply": "a-red-apple-dsds-s0/a-red-apple.ply",
     "video": ".../turntable.mp4", "views": ".../views.png", "mesh": null, "report": ".../report.html",
     "log": "logs/a-red-apple-dsds-s0.log", "error": null, "worker": "pid 4242 on node-1", "updated": 1.7e9}

`status` is queued | running | done | failed; paths are relative to DIR; `error` is one line.
The whole file is rewritten to a temporary file and renamed over the old one (`io/atomic.py`), so a
reader (or a crash) only ever sees a complete manifest. Its one writer is the process holding the
batch's lock (`.batch.lock`, an flock through `RunLock`); a process started with `--shard I/N` has
its own manifest and lock (`manifest.shard-I-of-N.jsonl`), so the shards of one list can share DIR.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from splatgen.errors import SplatgenError
from splatgen.io.atomic import write_text_atomic
from splatgen.io.run_folder import RunFolderBusy, RunLock

STATUSES = ("queued", "running", "done", "failed")
MANIFEST_FILE = "manifest.jsonl"
MANIFEST_GLOB = "manifest*.jsonl"
LOCK_FILE = ".batch.lock"
LOG_DIR = "logs"


class BatchBusy(SplatgenError):
    """Another live `splatgen batch` process owns this batch folder (or this shard of it)."""


@dataclass
class ManifestEntry:
    id: str
    prompt: str
    objective: str
    seed: int
    where: str
    status: str = "queued"
    attempts: int = 0
    seconds: float = 0.0
    steps: int | None = None
    run: str = ""
    ply: str | None = None
    video: str | None = None
    views: str | None = None
    mesh: str | None = None
    report: str | None = None
    log: str | None = None
    error: str | None = None
    worker: str | None = None
    updated: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestEntry | None:
        known = {field.name for field in fields(cls)}
        try:
            entry = cls(**{key: value for key, value in data.items() if key in known})
        except TypeError:
            return None
        return entry if entry.status in STATUSES else None


def shard_suffix(shard: tuple[int, int] | None) -> str:
    return "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"


class Manifest:
    """The items of this batch process, by id, in list order; `save()` rewrites the file atomically."""

    def __init__(self, path: Path, entries: dict[str, ManifestEntry] | None = None) -> None:
        self.path = Path(path)
        self.entries: dict[str, ManifestEntry] = entries or {}

    @classmethod
    def path_in(cls, out_dir: Path, shard: tuple[int, int] | None) -> Path:
        return Path(out_dir) / f"manifest{shard_suffix(shard)}.jsonl"

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """The manifest at `path` (empty when missing); lines that do not parse are dropped."""
        entries: dict[str, ManifestEntry] = {}
        if Path(path).is_file():
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                entry = ManifestEntry.from_json(data) if isinstance(data, dict) else None
                if entry is not None:
                    entries[entry.id] = entry
        return cls(path, entries)

    def update(self, item_id: str, **changes: Any) -> ManifestEntry:
        entry = self.entries[item_id]
        for key, value in changes.items():
            setattr(entry, key, value)
        entry.updated = round(time.time(), 3)
        self.save()
        return entry

    def save(self) -> None:
        write_text_atomic(
            self.path, "".join(json.dumps(asdict(entry), ensure_ascii=False) + "\n" for entry in self.entries.values())
        )

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.entries.values():
            counts[entry.status] += 1
        return counts


def all_entries(out_dir: Path) -> list[ManifestEntry]:
    """Every item recorded in DIR by any process (all shards' manifests), one per id: the newest wins."""
    newest: dict[str, ManifestEntry] = {}
    for path in sorted(Path(out_dir).glob(MANIFEST_GLOB)):
        for entry in Manifest.load(path).entries.values():
            if entry.id not in newest or entry.updated > newest[entry.id].updated:
                newest[entry.id] = entry
    return list(newest.values())


def lock_batch(out_dir: Path, shard: tuple[int, int] | None) -> RunLock:
    """Own the batch folder (this shard of it) until `release()`; `BatchBusy` when another process does."""
    path = Path(out_dir) / f"{LOCK_FILE}{shard_suffix(shard)}"
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SplatgenError(f"cannot create the batch folder {out_dir}: {error.strerror or error}") from error
    try:
        return RunLock.acquire(path)
    except RunFolderBusy:
        owner = path.read_text(encoding="ascii", errors="replace").strip() or "unknown"
        which = "this shard of " if shard is not None else ""
        raise BatchBusy(
            f"another splatgen batch (pid {owner}) is running {which}{out_dir}; wait for it to finish, "
            "or split the list between processes with --shard I/N"
        ) from None
