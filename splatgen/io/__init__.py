"""Files in and out: 3DGS PLY (INRIA layout; SuperSplat's compressed PLY read too), antimatter15
`.splat`, asset frames, atomic writes.

`read_asset` is how every command reads an asset (`view`, `export`, `render`, `--init ply`): by
suffix, `.splat` or a PLY of either layout, always returned in splatgen's world frame.
`export_asset` is what `splatgen export IN --out OUT.{ply,splat} [--sh-degree K] [--frame F]` runs.
Every user-fixable problem raises a `splatgen.errors.SplatgenError` with a one-line message.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from splatgen.errors import BadAssetFile, UnsupportedFormat
from splatgen.io.atomic import atomic_path, atomic_write, write_bytes_atomic, write_text_atomic
from splatgen.lazy import lazy_exports
from splatgen.scene.frames import DEFAULT_FRAME

__getattr__, __dir__ = lazy_exports(  # the PLY and .splat modules need torch: imported on first use
    __name__,
    {
        "NonFiniteDropped": "splatgen.io.ply",
        "WriteReport": "splatgen.io.ply",
        "ply_property_names": "splatgen.io.ply",
        "read_ply": "splatgen.io.ply",
        "read_splat": "splatgen.io.splat",
        "write_ply": "splatgen.io.ply",
        "write_splat": "splatgen.io.splat",
    },
)

EXPORT_FORMATS = (".ply", ".splat")
READ_FORMATS = (".ply", ".splat")

__all__ = [
    "EXPORT_FORMATS",
    "NonFiniteDropped",
    "WriteReport",
    "atomic_path",
    "atomic_write",
    "check_asset_path",
    "export_asset",
    "read_asset",
    "ply_property_names",
    "read_ply",
    "read_splat",
    "write_bytes_atomic",
    "write_ply",
    "write_splat",
    "write_text_atomic",
]


def check_asset_path(path: str | os.PathLike[str]) -> Path:
    """`path` when it names an existing file of a kind splatgen reads (`READ_FORMATS`); checked without
    importing torch, so the commonest mistakes answer at once. `UnsupportedFormat` / `BadAssetFile` otherwise."""
    path = Path(path)
    if not path.exists():
        raise BadAssetFile(f"{path}: no such file")
    if not path.is_file():
        raise BadAssetFile(f"{path}: not a file (give a .ply or .splat)")
    suffix = path.suffix.lower()
    if suffix not in READ_FORMATS:
        raise UnsupportedFormat(f"{path}: cannot read {suffix or '(no suffix)'!r} files; give a .ply or .splat")
    return path


def read_asset(path: str | os.PathLike[str], finite: bool = False):
    """The Gaussians of a `.ply` (INRIA or compressed layout) or `.splat` file, in splatgen's world frame.

    `finite=True` keeps only the rows free of NaN/Inf (for showing, rendering or starting a run from
    them; `BadAssetFile` when none is left). Raises `UnsupportedFormat` for another suffix and
    `BadAssetFile` for a bad file.
    """
    path = check_asset_path(path)
    from splatgen.io.ply import finite_only, read_ply
    from splatgen.io.splat import read_splat

    gaussians = read_splat(path) if path.suffix.lower() == ".splat" else read_ply(path)
    return finite_only(gaussians, path) if finite else gaussians


def export_asset(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    sh_degree: int | None = None,
    frame: str = DEFAULT_FRAME,
) -> str:
    """Convert an asset (`read_asset`) to `out_path`, format chosen by its suffix (.ply or .splat); return a summary.

    `frame` is the written file's frame (`splatgen.scene.frames`): the input's recorded frame is
    undone on reading, so converting between frames is one command.
    `sh_degree` sets the PLY's SH degree (None keeps the input's); `.splat` stores colour only,
    so it ignores `sh_degree` and says so. Raises `UnsupportedFormat` for another suffix (before
    reading anything), `BadAssetFile` for a bad input, `OutputError` if the output cannot be
    written. Rows with NaN/Inf are dropped and counted in the summary.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise UnsupportedFormat(f"{out_path}: unknown output format {suffix or '(no suffix)'!r}; use .ply or .splat")
    from splatgen.io.ply import NonFiniteDropped, write_ply
    from splatgen.io.splat import write_splat

    gaussians = read_asset(in_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteDropped)  # reported in the summary instead
        if suffix == ".ply":
            report = write_ply(out_path, gaussians, sh_degree, frame=frame)
        else:
            report = write_splat(out_path, gaussians, frame=frame)
    summary = f"{report.summary()} (from {in_path}, SH degree {gaussians.sh_degree})"
    if suffix == ".splat" and sh_degree is not None:
        summary += "; --sh-degree ignored: .splat stores colour only"
    return summary
