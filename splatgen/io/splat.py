"""The antimatter15 `.splat` format (antimatter15/splat `convert.py`), read by many web viewers.

32 bytes per Gaussian, no header, little endian:

    position  3 x float32     world xyz
    scale     3 x float32     activated standard deviations, exp(log scale)
    colour    4 x uint8       RGBA: rgb = 0.5 + C0 * sh0 (SH degree 0 only), a = sigmoid(opacity),
                              each * 255, clipped to 0..255 and truncated as the converter does
    rotation  4 x uint8       normalised wxyz quaternion q, (q * 128 + 128) clipped and truncated

Records are sorted by descending exp(sum of log scales) * sigmoid(opacity), the converter's
order (here computed in log space, which gives the same order without overflow). Higher SH bands
are not stored. Writes are atomic and drop rows holding NaN/Inf, like `write_ply`. The format has
no header, so the frame cannot be recorded: files are written in `frame` (default `inria`, as
antimatter15's converter passes INRIA PLY coordinates through) and read as `inria`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from splatgen.errors import BadAssetFile
from splatgen.io.atomic import write_bytes_atomic
from splatgen.io.ply import WriteReport, as_float32_cpu, check_frame, drop_nonfinite
from splatgen.scene.frames import DEFAULT_FRAME, WORLD_FRAME, convert_frame
from splatgen.scene.gaussians import SH_C0, Gaussians

SPLAT_RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
_ALPHA_EPSILON = 0.5 / 255.0  # keeps decoded opacities off 0 and 1 (finite logits)


def splat_order(gaussians: Gaussians) -> torch.Tensor:
    """[N] indices, largest exp(sum log scales) * sigmoid(opacity) first (stable on ties)."""
    log_importance = gaussians.scales.double().sum(dim=1) + torch.nn.functional.logsigmoid(
        gaussians.opacities.double()
    )  # [N]
    return torch.from_numpy(np.argsort(-log_importance.numpy(), kind="stable"))


def _quantise(values: np.ndarray) -> np.ndarray:
    """The converter's 8-bit step: clip to 0..255, then truncate."""
    return values.clip(0, 255).astype(np.uint8)


def encode_splat(gaussians: Gaussians) -> np.ndarray:
    """[N] structured records in file order, computed in float32 like antimatter15/splat `convert.py`."""
    gaussians = as_float32_cpu(gaussians)
    gaussians = gaussians.select(splat_order(gaussians))
    dc = gaussians.sh0[:, 0, :].numpy()  # [N, 3]
    opacity = gaussians.opacities.numpy()[:, None]  # [N, 1]
    rot = gaussians.quats.numpy()  # [N, 4]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        rgba = np.concatenate([np.float32(0.5) + np.float32(SH_C0) * dc, 1 / (1 + np.exp(-opacity))], axis=1)  # [N, 4]
        unit_rot = np.nan_to_num(rot / np.linalg.norm(rot, axis=1, keepdims=True))  # [N, 4]; zero quaternion -> 0
    records = np.empty(len(gaussians), dtype=SPLAT_RECORD)
    records["position"] = gaussians.means.numpy()
    records["scale"] = np.exp(gaussians.scales.numpy())
    records["rgba"] = _quantise(rgba * 255)
    records["rotation"] = _quantise(unit_rot * 128 + 128)
    return records


def write_splat(path: str | os.PathLike[str], gaussians: Gaussians, frame: str = DEFAULT_FRAME) -> WriteReport:
    """Write an antimatter15 `.splat` file (antimatter15/splat `convert.py` `process_ply_to_splat`).

    `gaussians` are in splatgen's world frame; the file holds them rotated into `frame`.

    Rows with NaN/Inf, or whose exp(log scale) overflows float32, are dropped (see
    `WriteReport.dropped` and the `NonFiniteDropped` warning); all rows dropped raises
    `SplatgenError` and writes nothing. Atomic.
    """
    path = Path(path)
    check_frame(frame)
    gaussians = as_float32_cpu(gaussians)
    valid = gaussians.finite_mask() & torch.isfinite(torch.exp(gaussians.scales)).all(dim=1)  # [N]
    gaussians, dropped = drop_nonfinite(gaussians, path, valid)
    write_bytes_atomic(path, encode_splat(convert_frame(gaussians, WORLD_FRAME, frame)).tobytes())
    return WriteReport(path=path, written=len(gaussians), dropped=dropped, sh_degree=0, frame=frame)


def read_splat(path: str | os.PathLike[str], frame: str = DEFAULT_FRAME) -> Gaussians:
    """Decode a `.splat` file (held in `frame`) to raw Gaussians in splatgen's world frame (SH degree 0),
    up to its 8-bit quantisation.

    rgb = byte / 255, opacity = byte / 255 (kept inside (0, 1)), quaternion = (byte - 128) / 128
    (not renormalised). Raises `BadAssetFile` for a missing or empty file or a size that is not
    a multiple of 32 bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise BadAssetFile(f"{path}: no such file")
    data = path.read_bytes()
    if not data or len(data) % SPLAT_RECORD.itemsize:
        raise BadAssetFile(f"{path}: {len(data)} bytes is not a positive multiple of the 32-byte .splat record")
    records = np.frombuffer(data, dtype=SPLAT_RECORD)
    rgba = torch.from_numpy(records["rgba"].astype(np.float32) / 255.0)  # [N, 4]
    alpha = rgba[:, 3].clamp(_ALPHA_EPSILON, 1.0 - _ALPHA_EPSILON)  # [N]
    n = len(records)
    gaussians = Gaussians(
        means=torch.from_numpy(records["position"].copy()),  # [N, 3]
        scales=torch.log(torch.from_numpy(records["scale"].copy())),  # [N, 3]
        quats=torch.from_numpy((records["rotation"].astype(np.float32) - 128.0) / 128.0),  # [N, 4]
        opacities=torch.logit(alpha),  # [N]
        sh0=((rgba[:, :3] - 0.5) / SH_C0).reshape(n, 1, 3),  # [N, 1, 3]
        shN=torch.zeros(n, 0, 3),
    )
    return convert_frame(gaussians, frame, WORLD_FRAME)
