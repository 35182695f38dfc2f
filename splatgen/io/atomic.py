"""Atomic file writes: write a temporary file in the target's folder, fsync it, then `os.replace`.

A reader sees either the old file or the complete new one, never a half-written file, and a
failure part-way leaves the old file untouched. Works for any output (PLY, checkpoints, PNG,
video, YAML):

    with atomic_write(path) as f:          # file object, "wb" or "w"
        f.write(data)

    with atomic_path(path) as tmp:         # a temporary path, for libraries that want a name
        torch.save(state, tmp)             # (it keeps the target's suffix, e.g. ".mp4")
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from splatgen.errors import OutputError

TEMPORARY_NAME = re.compile(r"\..*\.[0-9a-f]{8}\.tmp(\.[^/]*)?")  # what _temporary_sibling creates


def _temporary_sibling(path: Path) -> Path:
    """A new, empty file next to `path` that keeps its suffix (`.name.<random>.tmp.mp4`).

    Created with mode 0o666 so the process umask applies, as it would for a plain `open`.
    """
    for _ in range(100):
        candidate = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise OutputError(f"cannot create a temporary file next to {path}")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` (`.name.<hex>.tmp.suffix`); returns them.

    Call it only while owning the folder (e.g. holding a run's lock): a live writer's file looks the same.
    """
    removed = []
    for candidate in Path(folder).glob(".*.tmp*"):
        if TEMPORARY_NAME.fullmatch(candidate.name) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on a clean exit it replaces `path` atomically.

    Parent folders are created. On any exception the temporary file is removed, `path` keeps
    its old content (or stays absent) and the exception propagates; an `OSError` from creating
    or renaming is re-raised as `OutputError` with a one-line message.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_sibling(target)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (`mode` "wb" or "w"); replace `path` with it on success."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as temporary, open(temporary, mode, encoding=encoding) as handle:
        yield handle
        handle.flush()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)
