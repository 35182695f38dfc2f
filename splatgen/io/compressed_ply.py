"""SuperSplat's compressed PLY (`*.compressed.ply`), decoded from its published layout.

The layout, as SuperSplat writes it and playcanvas/splat-transform reads it (`decompressPly`,
v2.7.1; the PlayCanvas engine's `ply` reader is the other public decoder):

    element chunk  ceil(N / 256) rows, float32: min_x min_y min_z max_x max_y max_z
                   min_scale_x .. max_scale_z [min_r min_g min_b max_r max_g max_b]
    element vertex N rows, uint32 each:
                   packed_position  11/10/11 bits x, y, z: unorm, lerped between the chunk's min/max
                   packed_rotation  2 bits: which wxyz component is largest (dropped); 3 x 10 bits the
                                    other three, in order, each (unorm - 0.5) * sqrt(2)
                   packed_scale     11/10/11 bits: log-scales, lerped like positions
                   packed_color     8/8/8/8 bits r g b a: colour (lerped between the chunk's colour
                                    min/max when present), a = opacity after the sigmoid
    element sh     optional, N rows of uint8 f_rest_0 .. f_rest_{9|24|45 - 1}:
                   value = (n - 0.5) * 8, n = 0 | 1 at bytes 0 | 255, else (byte + 0.5) / 256

Vertex i belongs to chunk i // 256. Colours become SH DC by (c - 0.5) / C0; an alpha byte of 0
or 255 is kept half a step inside (0, 1) so the opacity logit stays finite.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plyfile
import torch

from splatgen.errors import BadAssetFile
from splatgen.scene.gaussians import SH_C0, Gaussians

CHUNK_SIZE = 256
CHUNK_BOUNDS = tuple(f"{end}_{axis}" for end in ("min", "max") for axis in "xyz") + tuple(
    f"{end}_scale_{axis}" for end in ("min", "max") for axis in "xyz"
)
CHUNK_COLOURS = tuple(f"{end}_{channel}" for end in ("min", "max") for channel in "rgb")
PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
SH_VALID_COUNTS = (9, 24, 45)
_ALPHA_EPSILON = 0.5 / 255.0


def is_compressed_ply(data: plyfile.PlyData) -> bool:
    """Whether the file uses the compressed layout (a `chunk` element and packed vertex words)."""
    if "chunk" not in data:
        return False
    names = {prop.name for prop in data["vertex"].properties}
    return any(name in names for name in PACKED)


def _unorm(words: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((words >> shift) & ((1 << bits) - 1)).astype(np.float64) / ((1 << bits) - 1)


def _unpack_111011(words: np.ndarray) -> np.ndarray:
    return np.stack([_unorm(words, 21, 11), _unorm(words, 11, 10), _unorm(words, 0, 11)], axis=1)  # [N, 3]


def _unpack_rotation(words: np.ndarray) -> np.ndarray:
    """[N, 4] wxyz (the file's rot_0..rot_3 order) from the smallest-three encoding."""
    norm = 1.0 / (math.sqrt(2.0) * 0.5)
    others = np.stack([(_unorm(words, shift, 10) - 0.5) * norm for shift in (20, 10, 0)], axis=1)  # [N, 3]
    largest = np.sqrt(np.maximum(0.0, 1.0 - (others**2).sum(axis=1)))  # [N]
    which = (words >> 30).astype(np.int64)  # [N]
    quats = np.empty((len(words), 4))
    for index in range(4):
        rows = which == index
        columns = [column for column in range(4) if column != index]
        quats[np.ix_(rows, columns)] = others[rows]
        quats[rows, index] = largest[rows]
    return quats


def _columns(path: Path, element: plyfile.PlyElement, names: tuple[str, ...], dtype: type) -> np.ndarray:
    have = {prop.name for prop in element.properties}
    missing = [name for name in names if name not in have]
    if missing:
        raise BadAssetFile(
            f"{path}: looks like a SuperSplat compressed PLY, but its {element.name} element lacks {', '.join(missing)}"
        )
    columns = [element.data[name] for name in names]
    if any(column.dtype != dtype for column in columns):
        raise BadAssetFile(f"{path}: compressed PLY {element.name} properties must be {np.dtype(dtype).name}")
    return np.stack(columns, axis=1)  # [rows, len(names)]


def decode_compressed_ply(path: Path, data: plyfile.PlyData) -> Gaussians:
    """The compressed PLY's Gaussians (SH degree from its `sh` element), in the file's own frame."""
    vertex, chunk = data["vertex"], data["chunk"]
    n = vertex.count
    if n == 0:
        raise BadAssetFile(f"{path}: the vertex element is empty (0 Gaussians)")
    if chunk.count != math.ceil(n / CHUNK_SIZE):
        raise BadAssetFile(
            f"{path}: compressed PLY with {n:,} vertices needs {math.ceil(n / CHUNK_SIZE):,} chunks, has {chunk.count:,}"
        )
    packed = _columns(path, vertex, PACKED, np.uint32)  # [N, 4]
    bounds = _columns(path, chunk, CHUNK_BOUNDS, np.float32).astype(np.float64)  # [C, 12]
    has_colours = all(name in {prop.name for prop in chunk.properties} for name in CHUNK_COLOURS)
    per_vertex = np.arange(n) // CHUNK_SIZE  # [N] chunk of each vertex
    bounds = bounds[per_vertex]  # [N, 12]

    def lerp(low: np.ndarray, high: np.ndarray, t: np.ndarray) -> np.ndarray:
        return low * (1 - t) + high * t

    means = lerp(bounds[:, 0:3], bounds[:, 3:6], _unpack_111011(packed[:, 0]))  # [N, 3]
    scales = lerp(bounds[:, 6:9], bounds[:, 9:12], _unpack_111011(packed[:, 2]))  # [N, 3]
    quats = _unpack_rotation(packed[:, 1])  # [N, 4]
    colour = np.stack([_unorm(packed[:, 3], shift, 8) for shift in (24, 16, 8, 0)], axis=1)  # [N, 4]
    rgb = colour[:, :3]
    if has_colours:
        colour_bounds = _columns(path, chunk, CHUNK_COLOURS, np.float32).astype(np.float64)[per_vertex]  # [N, 6]
        rgb = lerp(colour_bounds[:, 0:3], colour_bounds[:, 3:6], rgb)
    alpha = colour[:, 3].clip(_ALPHA_EPSILON, 1.0 - _ALPHA_EPSILON)  # [N]
    shN = torch.zeros(n, 0, 3)
    if "sh" in data:
        sh = data["sh"]
        count = len(sh.properties)
        if count not in SH_VALID_COUNTS or sh.count != n:
            raise BadAssetFile(f"{path}: compressed PLY sh element must have 9, 24 or 45 properties and {n:,} rows")
        raw = _columns(path, sh, tuple(f"f_rest_{i}" for i in range(count)), np.uint8)  # [N, 3 (K-1)]
        unit = np.where(raw == 0, 0.0, np.where(raw == 255, 1.0, (raw.astype(np.float64) + 0.5) / 256))
        shN = torch.from_numpy((unit - 0.5) * 8).float().reshape(n, 3, count // 3).transpose(1, 2).contiguous()

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values).float()

    return Gaussians(
        means=tensor(means),  # [N, 3]
        scales=tensor(scales),  # [N, 3]
        quats=tensor(quats),  # [N, 4]
        opacities=tensor(np.log(alpha / (1 - alpha))),  # [N]
        sh0=tensor((rgb - 0.5) / SH_C0).reshape(n, 1, 3),  # [N, 1, 3]
        shN=shN,  # [N, K-1, 3]
    )
