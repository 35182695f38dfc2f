"""The run folder: where a run's files live (every name spelled here once), written atomically.

<run>/config.yaml        the resolved config (reloadable: `splatgen train --resume <run>`)
<run>/prompts.json       the view prompts and their azimuth/elevation ranges
<run>/checkpoints/       last.pt (resumable)
<run>/metrics.jsonl      per-step training metrics, refinements.jsonl one line per refinement (train/metrics.py)
<run>/<name>.ply         the asset, INRIA 3DGS layout
<run>/turntable.mp4      a turntable video
<run>/views.png          a grid of views
<run>/export_step_XXXXXX.ply  splats exported from the live viewer at that step
<run>/.lock              held (flock) by the process that owns the run; holds its pid

A run owns its folder through an exclusive `fcntl.flock` on `.lock` from before its first write
to its exit; a second run on the same folder is refused with one line. The kernel drops the lock
when its process dies, so a `.lock` left by a killed run is stale by construction and is taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splatgen.errors import OutputError, SplatgenError
from splatgen.io.atomic import remove_stale_temporaries, write_text_atomic

CONFIG_FILE = "config.yaml"
PROMPTS_FILE = "prompts.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
LAST_CHECKPOINT_PATH = Path(CHECKPOINT_DIR) / LAST_CHECKPOINT  # relative to the run folder
LOCK_FILE = ".lock"


class RunFolderBusy(SplatgenError):
    """Another live process owns the run folder."""


def slugify(text: str, max_length: int = 48) -> str:
    """'A DSLR photo of a corgi!' -> 'a-dslr-photo-of-a-corgi' (ASCII, lowercase, dashes)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "asset"


@dataclass(frozen=True)
class RunFolder:
    path: Path
    asset_name: str = "asset"  # the PLY's stem: the slug of the prompt

    @staticmethod
    def default_path(prompt: str, root: Path = Path("outputs")) -> Path:
        return root / f"{slugify(prompt)}-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def prompts_path(self) -> Path:
        return self.path / PROMPTS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT_PATH

    @property
    def ply_path(self) -> Path:
        return self.path / f"{self.asset_name}.ply"

    def live_export_path(self, step: int) -> Path:
        return self.path / f"export_step_{step:06d}.ply"

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def create(self) -> None:
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise OutputError(f"cannot create the run folder: {error.filename} is a file, not a folder") from error
        except OSError as error:
            raise OutputError(f"cannot create the run folder {self.path}: {error.strerror or error}") from error

    def lock(self) -> RunLock:
        """Take the folder (creating it): `RunFolderBusy` if a live process has it. Cleans stale temporaries."""
        self.create()
        lock = RunLock.acquire(self.lock_path)
        for folder in (self.path, self.checkpoint_dir):
            remove_stale_temporaries(folder)
        return lock

    def check_free(self) -> None:
        """Fail fast (before models load) when a live run owns this folder; creates nothing."""
        if self.lock_path.is_file():
            RunLock.acquire(self.lock_path, create=False, claim=False).release()

    def write_config(self, yaml_text: str) -> None:
        write_text_atomic(self.config_path, yaml_text)

    def write_prompts(self, prompts: dict[str, Any]) -> None:
        write_text_atomic(self.prompts_path, json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")


class RunLock:
    """An exclusive, non-blocking `flock` on a run's `.lock` file, with the owner's pid written in it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @staticmethod
    def acquire(path: Path, create: bool = True, claim: bool = True) -> RunLock:
        """Lock `path` (`claim`: and write this pid in it) or raise `RunFolderBusy` naming the owner's pid."""
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            return RunLock(path, -1)
        except OSError as error:
            raise OutputError(f"cannot lock {path}: {error.strerror or error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(
                f"{path.parent} is in use by another splatgen run (pid {owner}); wait for it or pick another --out"
            ) from None
        if claim:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return RunLock(path, fd)

    def release(self) -> None:
        """Unlock (the file stays: removing it would race with a process about to lock it)."""
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1
