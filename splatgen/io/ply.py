"""3DGS PLY files in the INRIA layout (Kerbl et al. 2023, `gaussian_model.py` `save_ply`/`load_ply`).

One binary little-endian `vertex` element, every property float32, in this order:

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3(K-1)-1} opacity
    scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

Values are raw (what the optimiser holds): logit opacity, log scales, wxyz quaternion
(unnormalised). Normals are written as zeros. `f_rest` is channel-major, as INRIA writes
`features_rest.transpose(1, 2).flatten(start_dim=1)` from [N, K-1, 3]: all K-1 red coefficients,
then green, then blue. SuperSplat, the three.js / Unity / Unreal splat plugins and nerfstudio
read this layout.

Frames: files are written in a named frame (`splatgen.scene.frames`; default `inria`, -y up, which
SuperSplat shows upright) and say so in a header line `comment splatgen frame NAME`. Reading
converts to splatgen's world frame (+y up) from the recorded frame, or from `inria` when a file
has no record (what 3DGS PLYs from other tools hold), so every file shows upright in `view`.

Writing drops rows holding NaN or Inf (a viewer would choke on them) and reports how many: the
returned `WriteReport.dropped`, plus a `NonFiniteDropped` warning so it cannot go unnoticed.
Writes are atomic. Every problem with an input file raises `BadAssetFile` with one line that
names the file.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plyfile
import torch

from splatgen.errors import BadAssetFile, SplatgenError
from splatgen.io.atomic import atomic_write
from splatgen.scene.frames import DEFAULT_FRAME, FRAME_UP, FRAMES, WORLD_FRAME, convert_frame
from splatgen.scene.gaussians import MAX_SH_DEGREE, Gaussians, num_sh_bases

POSITION = ("x", "y", "z")
NORMALS = ("nx", "ny", "nz")
SH_DC = ("f_dc_0", "f_dc_1", "f_dc_2")
OPACITY = ("opacity",)
SCALES = ("scale_0", "scale_1", "scale_2")
ROTATION = ("rot_0", "rot_1", "rot_2", "rot_3")
REQUIRED = POSITION + SH_DC + OPACITY + SCALES + ROTATION
VALID_REST_COUNTS = tuple(3 * (num_sh_bases(degree) - 1) for degree in range(MAX_SH_DEGREE + 1))  # (0, 9, 24, 45)
_REST_NAME = re.compile(r"f_rest_(\d+)$")
_FRAME_COMMENT = re.compile(r"^splatgen frame (\S+)")


class NonFiniteDropped(UserWarning):
    """Some Gaussians held NaN/Inf values and were left out of the written file."""


@dataclass(frozen=True)
class WriteReport:
    """What a writer put on disk."""

    path: Path
    written: int  # Gaussians in the file
    dropped: int  # rows left out because they held NaN/Inf
    sh_degree: int  # SH degree stored in the file (0 for .splat)
    frame: str = DEFAULT_FRAME  # the file's frame (`splatgen.scene.frames`)

    def summary(self) -> str:
        size = self.path.stat().st_size if self.path.exists() else 0
        line = (
            f"wrote {self.path}: {self.written:,} Gaussians, SH degree {self.sh_degree}, frame {self.frame} "
            f"({FRAME_UP[self.frame]} up), {_format_size(size)}"
        )
        if self.dropped:
            line += f"; dropped {self.dropped:,} with NaN/Inf values"
        return line


def _format_size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 1e6 else f"{num_bytes / 1e3:.1f} kB"


def ply_property_names(sh_degree: int) -> list[str]:
    """The INRIA vertex property names, in file order, for an SH degree."""
    rest = [f"f_rest_{i}" for i in range(3 * (num_sh_bases(sh_degree) - 1))]
    return [*POSITION, *NORMALS, *SH_DC, *rest, *OPACITY, *SCALES, *ROTATION]


def frame_comment(frame: str) -> str:
    """The header comment that records a file's frame."""
    return f"splatgen frame {frame} ({FRAME_UP[frame]} up)"


def recorded_frame(path: Path, comments: list[str]) -> str:
    """The frame a file's header records; `DEFAULT_FRAME` when it records none."""
    for comment in comments:
        if match := _FRAME_COMMENT.match(comment.strip()):
            name = match.group(1)
            if name not in FRAMES:
                raise BadAssetFile(f"{path}: unknown frame {name!r} in the header; known: {', '.join(FRAMES)}")
            return name
    return DEFAULT_FRAME


def check_frame(frame: str) -> None:
    if frame not in FRAMES:
        raise SplatgenError(f"unknown frame {frame!r}; use one of: {', '.join(FRAMES)}")


def check_sh_degree(sh_degree: int | None) -> None:
    if sh_degree is not None and not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise SplatgenError(f"SH degree must be between 0 and {MAX_SH_DEGREE}, got {sh_degree}")


def as_float32_cpu(gaussians: Gaussians) -> Gaussians:
    """Detached float32 CPU copies: what files store (a float64 value beyond float32 range becomes Inf here)."""
    tensors = (gaussians.means, gaussians.scales, gaussians.quats, gaussians.opacities, gaussians.sh0, gaussians.shN)
    return Gaussians(*(tensor.detach().to("cpu", torch.float32) for tensor in tensors))


def drop_nonfinite(gaussians: Gaussians, path: Path, valid: torch.Tensor | None = None) -> tuple[Gaussians, int]:
    """Keep the `valid` rows (default: all values finite), warn about the rest; refuse to write nothing."""
    if len(gaussians) == 0:
        raise SplatgenError(f"nothing to write to {path}: the asset has no Gaussians")
    mask = gaussians.finite_mask() if valid is None else valid  # [N] bool
    dropped = int((~mask).sum())
    if dropped == len(gaussians):
        raise SplatgenError(f"nothing to write to {path}: all {dropped:,} Gaussians hold NaN/Inf values")
    if dropped:
        warnings.warn(
            f"{path}: dropped {dropped:,} of {len(gaussians):,} Gaussians holding NaN/Inf values",
            NonFiniteDropped,
            stacklevel=3,
        )
        gaussians = gaussians.select(mask)
    return gaussians, dropped


def finite_only(gaussians: Gaussians, path: Path) -> Gaussians:
    """The rows of `gaussians` (read from `path`) free of NaN/Inf, for showing or rendering them;
    `BadAssetFile` when none is left (an all-NaN file would render blank frames over good ones)."""
    mask = gaussians.finite_mask()  # [N] bool
    if not bool(mask.any()):
        raise BadAssetFile(f"{path}: none of its {len(gaussians):,} Gaussians is finite (NaN/Inf); nothing to show")
    return gaussians if bool(mask.all()) else gaussians.select(mask)


def _vertex_columns(gaussians: Gaussians) -> np.ndarray:
    """All properties as one float32 matrix [N, P] in `ply_property_names` order."""
    n = len(gaussians)
    f_rest = gaussians.shN.transpose(1, 2).reshape(n, -1)  # channel-major: R coefficients, then G, then B
    columns = [
        gaussians.means,  # [N, 3]
        torch.zeros(n, 3, dtype=torch.float32),  # [N, 3] normals
        gaussians.sh0.reshape(n, 3),  # [N, 3]
        f_rest,  # [N, 3 (K-1)]
        gaussians.opacities.reshape(n, 1),  # [N, 1]
        gaussians.scales,  # [N, 3]
        gaussians.quats,  # [N, 4]
    ]
    return torch.cat(columns, dim=1).numpy().astype("<f4", copy=False)


def write_ply(
    path: str | os.PathLike[str], gaussians: Gaussians, sh_degree: int | None = None, frame: str = DEFAULT_FRAME
) -> WriteReport:
    """Write `gaussians` (splatgen's world frame) as an INRIA-layout 3DGS PLY (INRIA `gaussian_model.py` `save_ply`).

    `frame` names the file's frame (rotated into, and recorded in the header); `sh_degree` None
    keeps the stored degree; lower drops bands, higher pads zeros. Rows with
    NaN/Inf are dropped (see `WriteReport.dropped` and the `NonFiniteDropped` warning); if every
    row would be dropped, `SplatgenError` is raised and nothing is written. Atomic: on failure
    `path` keeps its previous bytes.
    """
    path = Path(path)
    check_sh_degree(sh_degree)
    check_frame(frame)
    gaussians = as_float32_cpu(gaussians)
    if sh_degree is not None:
        gaussians = gaussians.with_sh_degree(sh_degree)
    gaussians, dropped = drop_nonfinite(gaussians, path)
    gaussians = convert_frame(gaussians, WORLD_FRAME, frame)
    names = ply_property_names(gaussians.sh_degree)
    values = _vertex_columns(gaussians)  # [N, P]
    records = values.view(np.dtype([(name, "<f4") for name in names]))[:, 0]  # [N] structured, no copy
    element = plyfile.PlyElement.describe(records, "vertex")
    with atomic_write(path, "wb") as handle:
        plyfile.PlyData([element], text=False, byte_order="<", comments=[frame_comment(frame)]).write(handle)
    return WriteReport(path=path, written=len(gaussians), dropped=dropped, sh_degree=gaussians.sh_degree, frame=frame)


def load_ply_data(path: Path) -> plyfile.PlyData:
    """Parse the file with plyfile; every failure becomes one `BadAssetFile` line."""
    if not path.exists():
        raise BadAssetFile(f"{path}: no such file")
    if not path.is_file():
        raise BadAssetFile(f"{path}: not a file")
    try:
        with open(path, "rb") as handle:
            if not _looks_like_ply(handle.read(5)):
                raise BadAssetFile(f"{path}: not a PLY file (it does not start with 'ply')")
            handle.seek(0)
            data = plyfile.PlyData.read(handle)  # memory-mapped (copy-on-write); columns are copied out below
    except BadAssetFile:
        raise
    except OSError as error:
        raise BadAssetFile(f"{path}: cannot read ({error.strerror or error})") from error
    except Exception as error:  # plyfile/numpy raise many types for corrupt input
        raise BadAssetFile(f"{path}: {_describe_parse_error(error)}") from error
    if "vertex" not in data:
        raise BadAssetFile(f"{path}: no 'vertex' element, so no Gaussians")
    return data


def _looks_like_ply(head: bytes) -> bool:
    """The magic line is 'ply' (with a Unix or Windows line end)."""
    return head[:4] == b"ply\n" or head == b"ply\r\n"


def _describe_parse_error(error: Exception) -> str:
    detail = (" ".join(str(error).split()) or type(error).__name__)[:200]
    if "end-of-file" in detail:
        return f"truncated PLY file ({detail})"
    if isinstance(error, plyfile.PlyHeaderParseError):
        return f"corrupt PLY header ({detail})"
    return f"corrupt PLY data ({detail})"


def _rest_names(path: Path, names: list[str]) -> list[str]:
    """The f_rest_* names sorted by index; their count must be 0, 9, 24 or 45 and contiguous."""
    indices = sorted(int(match.group(1)) for name in names if (match := _REST_NAME.match(name)))
    if len(indices) not in VALID_REST_COUNTS:
        raise BadAssetFile(f"{path}: has {len(indices)} f_rest_* properties; an SH degree 0..3 file has 0, 9, 24 or 45")
    if indices != list(range(len(indices))):
        raise BadAssetFile(f"{path}: f_rest_* properties are not numbered 0..{len(indices) - 1}")
    return [f"f_rest_{i}" for i in indices]


def _column(path: Path, vertex: plyfile.PlyElement, name: str) -> np.ndarray:
    values = vertex.data[name]
    if values.dtype == object or not np.issubdtype(values.dtype, np.number):
        raise BadAssetFile(f"{path}: property '{name}' is not a numeric scalar")
    return values.astype(np.float32)


def read_ply(path: str | os.PathLike[str], keep_file_frame: bool = False) -> Gaussians:
    """Read a 3DGS PLY into raw `Gaussians` in splatgen's world frame (+y up), or as stored with `keep_file_frame`.

    Two layouts: INRIA's (`gaussian_model.py` `load_ply`) and SuperSplat's compressed PLY
    (`splatgen.io.compressed_ply`). The file's frame is read from its header (`inria` when it
    records none) and rotated into the world frame. Normals and extra properties (and extra
    elements) are ignored; the SH degree comes from the number of f_rest_* properties. float32
    values of an `inria` or `opengl` file come back bit-exact. Raises `BadAssetFile` for a missing,
    non-PLY, corrupt or truncated file, a missing required property, a wrong f_rest count, or
    zero vertices.
    """
    from splatgen.io.compressed_ply import decode_compressed_ply, is_compressed_ply

    path = Path(path)
    data = load_ply_data(path)
    frame = recorded_frame(path, data.comments)
    gaussians = decode_compressed_ply(path, data) if is_compressed_ply(data) else decode_inria_ply(path, data["vertex"])
    return gaussians if keep_file_frame else convert_frame(gaussians, frame, WORLD_FRAME)


def decode_inria_ply(path: Path, vertex: plyfile.PlyElement) -> Gaussians:
    """The INRIA-layout vertex element as raw `Gaussians`, in the file's own frame."""
    names = [prop.name for prop in vertex.properties]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise BadAssetFile(f"{path}: not a 3DGS PLY, missing vertex properties: {', '.join(missing)}")
    rest = _rest_names(path, names)
    n = vertex.count
    if n == 0:
        raise BadAssetFile(f"{path}: the vertex element is empty (0 Gaussians)")

    def stack(group: tuple[str, ...] | list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([_column(path, vertex, name) for name in group], axis=1))  # [N, len(group)]

    num_rest = len(rest) // 3
    shN = stack(rest).reshape(n, 3, num_rest).transpose(1, 2) if num_rest else torch.zeros(n, 0, 3)  # [N, K-1, 3]
    return Gaussians(
        means=stack(POSITION),  # [N, 3]
        scales=stack(SCALES),  # [N, 3]
        quats=stack(ROTATION),  # [N, 4]
        opacities=stack(OPACITY).reshape(n),  # [N]
        sh0=stack(SH_DC).reshape(n, 1, 3),  # [N, 1, 3]
        shN=shN.contiguous(),
    )
