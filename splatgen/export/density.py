"""The asset's opacity field on a voxel grid: D(x) = sum_i o_i exp(-0.5 (x - mu_i)^T Sigma_i^-1 (x - mu_i)).

This is DreamGaussian's mesh-extraction density (Tang et al. 2024, "DreamGaussian", Sec. 3.3 and
its `extract_mesh`): Gaussians with opacity above a cut, evaluated on a grid. Two changes make it
work for the flat, thin Gaussians (surfels) that score distillation and 2DGS-like assets produce:

- a 3D low-pass filter: every covariance gets (voxel / 2)^2 added (as Mip-Splatting's 3D filter,
  Yu et al. 2024, Eq. 7, but keeping the peak o_i, because a splat's rendered opacity does not
  depend on its thickness), so a surface thinner than a voxel still reaches the grid points;
- splatting instead of blocks: each Gaussian is evaluated only on the voxels of its 3-sigma box,
  grouped by box size so every group is one batched tensor expression.

The grid is cubic voxels over the box of all kept Gaussians' 3-sigma extents, `resolution`
voxels along its longest side, with one empty voxel of margin so the surface closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

from splatgen.export.options import MeshError
from splatgen.scene.gaussians import Gaussians

EXTENT_SIGMAS = 3.0
FILTER_VOXELS = 0.5  # std of the 3D low-pass filter, in voxels
BYTES_PER_VOXEL = 32  # density, the filled field, masks and marching cubes' own copy (float64)
MEMORY_FRACTION = 0.8  # of the memory available now, the most a grid may take
CHUNK_PAIRS = 2**22  # (Gaussian, voxel) pairs evaluated at once


@dataclass
class DensityGrid:
    values: np.ndarray  # [X, Y, Z] float32 density at voxel centres
    origin: np.ndarray  # [3] world position of voxel (0, 0, 0)
    voxel: float  # edge length, world units

    def to_world(self, indices: np.ndarray) -> np.ndarray:  # [V, 3] (fractional) voxel indices -> world
        return self.origin + indices * self.voxel


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (psutil's `available`)."""
    import psutil

    return int(psutil.virtual_memory().available)


def plan_grid(
    means: torch.Tensor,  # [N, 3]
    stds: torch.Tensor,  # [N, 3] axis-aligned standard deviations (sqrt of the covariance's diagonal)
    resolution: int,
) -> tuple[np.ndarray, float, tuple[int, int, int]]:
    """Origin [3], voxel size and grid shape for the Gaussians' 3-sigma box; refuses a grid that would not fit."""
    low = (means - EXTENT_SIGMAS * stds).amin(dim=0)
    high = (means + EXTENT_SIGMAS * stds).amax(dim=0)
    voxel = float((high - low).max()) / (resolution - 2)
    if not voxel > 0:
        raise MeshError("the asset's Gaussians all sit at one point; there is no surface to mesh")
    margin = (1 + EXTENT_SIGMAS * FILTER_VOXELS) * voxel  # the filter widens every Gaussian a little
    low, high = low - margin, high + margin
    shape = tuple(int(math.ceil(float(side) / voxel)) + 1 for side in high - low)
    needed = math.prod(shape) * BYTES_PER_VOXEL
    budget = MEMORY_FRACTION * available_memory()
    if needed > budget:
        fits = int((resolution * (budget / needed) ** (1 / 3)) // 8 * 8)
        raise MeshError(
            f"a {shape[0]}x{shape[1]}x{shape[2]} density grid (--resolution {resolution}) needs about "
            f"{needed / 2**30:.1f} GiB of memory but {budget / 2**30:.1f} GiB can be used; "
            f"lower --resolution (at most about {max(fits, 16)} fits now)"
        )
    return low.numpy().astype(np.float64), voxel, shape


def density_grid(gaussians: Gaussians, resolution: int, min_opacity: float) -> DensityGrid:
    """Evaluate the filtered density of the Gaussians brighter than `min_opacity` on a grid."""
    opacities = torch.sigmoid(gaussians.opacities.float())  # [N]
    keep = opacities > min_opacity
    if not keep.any():
        raise MeshError(
            f"no Gaussian is more opaque than --min-opacity {min_opacity}: the asset is empty or transparent"
        )
    means = gaussians.means.float()[keep]  # [M, 3]
    quats = torch.nn.functional.normalize(gaussians.quats.float()[keep], dim=-1)
    scales = torch.exp(gaussians.scales.float()[keep])
    opacities = opacities[keep]
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)  # [M, 3, 3]
    origin, voxel, shape = plan_grid(means, torch.diagonal(covars, dim1=-2, dim2=-1).sqrt(), resolution)
    covars = covars + (FILTER_VOXELS * voxel) ** 2 * torch.eye(3)
    precisions = torch.linalg.inv(covars)  # [M, 3, 3]
    stds = torch.diagonal(covars, dim1=-2, dim2=-1).sqrt()  # [M, 3]

    grid_means = (means - torch.from_numpy(origin).float()) / voxel  # [M, 3] in voxel units
    half_box = torch.ceil(EXTENT_SIGMAS * stds / voxel).long().amax(dim=1)  # [M] half side of the cube, voxels
    centre_voxels = torch.round(grid_means).long()  # [M, 3]
    values = torch.zeros(math.prod(shape))
    dims = torch.tensor(shape)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1])
    for half in torch.unique(half_box).tolist():
        members = torch.nonzero(half_box == half).squeeze(1)
        steps = torch.arange(-half, half + 1)
        offsets = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1).reshape(-1, 3)  # [K, 3]
        per_chunk = max(1, CHUNK_PAIRS // len(offsets))
        for begin in range(0, len(members), per_chunk):
            ids = members[begin : begin + per_chunk]
            voxels = centre_voxels[ids, None, :] + offsets[None]  # [G, K, 3]
            inside = ((voxels >= 0) & (voxels < dims)).all(dim=-1)  # [G, K]
            delta = voxels.float() - grid_means[ids, None, :]  # [G, K, 3] voxel units
            mahalanobis = ((delta @ (precisions[ids] * voxel**2)) * delta).sum(dim=-1)  # [G, K]
            contribution = opacities[ids, None] * torch.exp(-0.5 * mahalanobis)  # [G, K]
            flat = (voxels * strides).sum(dim=-1)
            values.index_add_(0, flat[inside], contribution[inside])
    return DensityGrid(values=values.reshape(shape).numpy(), origin=origin, voxel=voxel)
