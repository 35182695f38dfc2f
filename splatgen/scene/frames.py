"""Asset frames: which way is up in a written file, and rotating Gaussians between frames.

splatgen trains in its own world frame (right-handed, +y up, the front faces +z; see
`cameras.py`). Files are written in a named frame chosen for the tool that opens them; each is a
proper rotation R of the world frame (file = R @ world), so handedness is kept:

    inria    R = Rz(180 deg): (x, y, z) -> (-x, -y, z). -y up, the INRIA / COLMAP convention that
             3DGS PLYs from capture pipelines hold. SuperSplat and the PlayCanvas engine roll every
             PLY 180 deg about z on load to undo it (playcanvas/supersplat#451,
             playcanvas/splat-transform#151), so an `inria` file opens upright there.
    opengl   R = identity. +y up, the front faces +z: splatgen's own frame, three.js (camera up
             +y by default), glTF.
    blender  R = Rx(+90 deg): (x, y, z) -> (x, -z, y). +z up, the front faces -y: Blender's
             "front" view looks at it.

Rotating a Gaussian: mean R m; quaternion q_R * q (Hamilton product, wxyz); log-scales and
opacity unchanged; SH colour c(d) becomes c(R^T d), a per-band linear map on the coefficients
(real SH bands are rotation-invariant subspaces) found here by least squares on sample
directions with the renderer's own SH basis (gsplat `_eval_sh_bases_fast`), so it holds for the
basis the renderer evaluates. 180 deg rotations are signed permutations, computed in float64,
so converting a float32 file there and back is bit-exact.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from splatgen.scene.gaussians import Gaussians

Frame = Literal["inria", "opengl", "blender"]
FRAMES: dict[str, tuple[tuple[float, float, float], ...]] = {  # file = R @ world, row-major 3x3
    "inria": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "opengl": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "blender": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}
WORLD_FRAME: Frame = "opengl"
"""splatgen's own frame: what training, rendering and the viewer use."""
FRAME_UP = {"inria": "-y", "opengl": "+y", "blender": "+z"}
DEFAULT_FRAME: Frame = "inria"
"""What `train` and `export` write, and what a file without a frame record is taken to hold."""


def frame_rotation(source: str, target: str) -> torch.Tensor:
    """[3, 3] float64 rotation taking coordinates in frame `source` to frame `target`."""
    return torch_tensor(FRAMES[target]) @ torch_tensor(FRAMES[source]).T


def frame_quaternion(source: str, target: str) -> torch.Tensor:
    """[4] wxyz quaternion of `frame_rotation(source, target)`, as q_target * conj(q_source), so the
    way back is the conjugate and a round trip multiplies by exactly +1."""
    source_quat = rotation_to_quaternion(torch_tensor(FRAMES[source]))
    conjugate = source_quat * source_quat.new_tensor([1.0, -1.0, -1.0, -1.0])
    return quaternion_product(rotation_to_quaternion(torch_tensor(FRAMES[target])), conjugate[None])[0]


def torch_tensor(rows: tuple[tuple[float, float, float], ...]) -> torch.Tensor:
    import torch

    return torch.tensor(rows, dtype=torch.float64)


def rotation_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """[4] wxyz unit quaternion of a proper rotation [3, 3] (Shepperd's method, largest pivot)."""
    m = rotation.tolist()
    trace = m[0][0] + m[1][1] + m[2][2]
    pivots = [trace, m[0][0], m[1][1], m[2][2]]
    largest = max(range(4), key=lambda index: pivots[index])
    if largest == 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [s / 4, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s]
    elif largest == 1:
        s = 2.0 * math.sqrt(1.0 + m[0][0] - m[1][1] - m[2][2])
        q = [(m[2][1] - m[1][2]) / s, s / 4, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s]
    elif largest == 2:
        s = 2.0 * math.sqrt(1.0 + m[1][1] - m[0][0] - m[2][2])
        q = [(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, s / 4, (m[1][2] + m[2][1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2][2] - m[0][0] - m[1][1])
        q = [(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, s / 4]
    return rotation.new_tensor(q)


def quaternion_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Hamilton product left * right, wxyz; left [4] or [N, 4], right [N, 4] -> [N, 4]."""
    import torch

    w1, x1, y1, z1 = left.unbind(-1)
    w2, x2, y2, z2 = right.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def sh_rotation(rotation: torch.Tensor, num_bases: int) -> torch.Tensor:
    """[K, K] float64 M with sum_k (M c)_k Y_k(d) = sum_k c_k Y_k(R^T d) for every direction d.

    Least squares over 256 fixed directions (the basis has at most 16 functions); entries within
    1e-9 of an integer are snapped, which makes signed permutations exact.
    """
    import torch
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    generator = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(256, 3, generator=generator, dtype=torch.float64), dim=-1)
    basis = _eval_sh_bases_fast(num_bases, directions)  # [D, K]
    rotated_basis = _eval_sh_bases_fast(num_bases, directions @ rotation)  # [D, K]: Y(R^T d), rows d^T R
    matrix = torch.linalg.lstsq(basis, rotated_basis).solution  # [K, K]: basis @ M = rotated_basis
    snapped = matrix.round()
    return torch.where((matrix - snapped).abs() < 1e-9, snapped, matrix)


def quaternion_left_matrix(quat: torch.Tensor) -> torch.Tensor:
    """[4, 4] L with L @ q = quat * q (Hamilton product, wxyz)."""
    import torch

    return torch.stack([quaternion_product(quat, row[None])[0] for row in torch.eye(4, dtype=quat.dtype)], dim=1)


def apply_linear(matrix: torch.Tensor, values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """matrix [K, K] applied along `dim` of `values` (float64 out). A signed permutation is applied by
    indexing and negation, which keeps every bit (a matmul would turn -0.0 into +0.0)."""
    import torch

    values = values.double().movedim(dim, -1)  # [..., K]
    nonzero = matrix != 0
    if bool((nonzero.sum(dim=1) == 1).all()) and bool((matrix.abs()[nonzero] == 1).all()):
        source = nonzero.double().argmax(dim=1)  # [K]: output i reads input source[i]
        signs = matrix.gather(1, source[:, None])[:, 0]  # [K] +-1
        result = torch.where(signs < 0, -values[..., source], values[..., source])
    else:
        result = values @ matrix.T
    return result.movedim(-1, dim)


def convert_frame(gaussians: Gaussians, source: str, target: str) -> Gaussians:
    """The same asset with its coordinates in frame `target` instead of `source` (float32 out)."""
    import torch

    from splatgen.scene.gaussians import Gaussians

    if source == target:
        return gaussians
    rotation = frame_rotation(source, target)  # [3, 3] float64
    means = apply_linear(rotation, gaussians.means)  # [N, 3]
    quats = apply_linear(quaternion_left_matrix(frame_quaternion(source, target)), gaussians.quats)  # [N, 4]
    shN = gaussians.shN
    if shN.shape[1]:
        matrix = sh_rotation(rotation, shN.shape[1] + 1)  # [K, K]; the DC band (k = 0) maps to itself
        shN = apply_linear(matrix, torch.cat([gaussians.sh0, shN], dim=1), dim=1)[:, 1:]  # [N, K-1, 3]
    return Gaussians(
        means=means.float(),
        scales=gaussians.scales,
        quats=quats.float(),
        opacities=gaussians.opacities,
        sh0=gaussians.sh0,
        shN=shN.float().contiguous(),
    )
