"""Files in and out: 3DGS PLY (INRIA layout), antimatter15 `.splat`, atomic writes.

`export_asset` is what `splatgen export IN.ply --out OUT.{ply,splat} [--sh-degree K]` runs.
Every user-fixable problem raises a `splatgen.errors.SplatgenError` with a one-line message.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from splatgen.errors import UnsupportedFormat
from splatgen.io.atomic import atomic_path, atomic_write, write_bytes_atomic, write_text_atomic
from splatgen.io.ply import NonFiniteDropped, WriteReport, ply_property_names, read_ply, write_ply
from splatgen.io.splat import read_splat, write_splat

EXPORT_FORMATS = (".ply", ".splat")

__all__ = [
    "EXPORT_FORMATS",
    "NonFiniteDropped",
    "WriteReport",
    "atomic_path",
    "atomic_write",
    "export_asset",
    "ply_property_names",
    "read_ply",
    "read_splat",
    "write_bytes_atomic",
    "write_ply",
    "write_splat",
    "write_text_atomic",
]


def export_asset(
    in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], sh_degree: int | None = None
) -> str:
    """Convert a 3DGS PLY to `out_path`, format chosen by its suffix (.ply or .splat); return a summary line.

    `sh_degree` sets the PLY's SH degree (None keeps the input's); `.splat` stores colour only,
    so it ignores `sh_degree` and says so. Raises `UnsupportedFormat` for another suffix (before
    reading anything), `BadAssetFile` for a bad input, `OutputError` if the output cannot be
    written. Rows with NaN/Inf are dropped and counted in the summary.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise UnsupportedFormat(f"{out_path}: unknown output format {suffix or '(no suffix)'!r}; use .ply or .splat")
    gaussians = read_ply(in_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteDropped)  # reported in the summary instead
        report = write_ply(out_path, gaussians, sh_degree) if suffix == ".ply" else write_splat(out_path, gaussians)
    summary = f"{report.summary()} (from {in_path}, SH degree {gaussians.sh_degree})"
    if suffix == ".splat" and sh_degree is not None:
        summary += "; --sh-degree ignored: .splat stores colour only"
    return summary
