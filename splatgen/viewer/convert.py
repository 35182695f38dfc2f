"""Conversions from splatgen's tensors to what viser draws: splat buffers, frustum poses, framing.

viser shares our world frame (right-handed, +y up once `set_up_direction("+y")` is called) and
draws camera frustums in the OpenCV camera convention (+z forward, +x right, +y down), the same
convention as `CameraBatch.viewmats`, so a frustum's pose is simply the camera-to-world matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import viser.transforms as vtf

from splatgen.scene.cameras import CameraBatch, orbit_position
from splatgen.scene.gaussians import sh0_to_rgb


@dataclass
class SplatArrays:
    """The four arrays `add_gaussian_splats` / `set_gaussians` take, float32 numpy."""

    centers: np.ndarray  # [N, 3]
    covariances: np.ndarray  # [N, 3, 3]
    rgbs: np.ndarray  # [N, 3] in [0, 1]
    opacities: np.ndarray  # [N, 1] in [0, 1]

    def __len__(self) -> int:
        return self.centers.shape[0]


@dataclass
class FrustumPose:
    """One camera as viser draws it: vertical fov in radians, aspect w/h, and its pose in the world."""

    fov: float
    aspect: float
    wxyz: np.ndarray  # [4] camera-to-world rotation
    position: np.ndarray  # [3] camera centre


@dataclass
class Framing:
    """An initial client camera: where it sits, what it looks at, its vertical fov in radians."""

    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    fov: float


def quats_to_rotations(quats: torch.Tensor) -> torch.Tensor:
    """Unnormalised wxyz quaternions [N, 4] -> rotation matrices [N, 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def covariances_from_raw(quats: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """Sigma = R diag(s^2) R^T from wxyz quats [N, 4] and log standard deviations [N, 3]."""
    rotations = quats_to_rotations(quats)  # [N, 3, 3]
    variances = torch.exp(2.0 * log_scales)  # [N, 3]
    return (rotations * variances[:, None, :]) @ rotations.transpose(1, 2)


def finite_rows(splats: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N] bool: Gaussians whose displayed parameters are all finite."""
    n = splats["means"].shape[0]
    keys = ("means", "scales", "quats", "opacities", "sh0")
    return torch.isfinite(torch.cat([splats[key].reshape(n, -1) for key in keys], dim=1)).all(dim=1)


def splat_arrays(splats: dict[str, torch.Tensor]) -> SplatArrays:
    """Raw parameters (CPU tensors) -> viser arrays; rows with NaN/Inf are left out.

    Colour is the SH DC term only (view-independent), clamped to [0, 1]; opacity is sigmoid(logit).
    """
    with torch.no_grad():
        keep = finite_rows(splats)
        if bool(keep.all()):
            keep = slice(None)  # no copy
        means = splats["means"][keep].float()
        covariances = covariances_from_raw(splats["quats"][keep].float(), splats["scales"][keep].float())
        rgbs = sh0_to_rgb(splats["sh0"][keep].float().reshape(-1, 3)).clamp(0.0, 1.0)
        opacities = torch.sigmoid(splats["opacities"][keep].float()).reshape(-1, 1)
    return SplatArrays(
        centers=means.numpy(),
        covariances=covariances.numpy(),
        rgbs=rgbs.numpy(),
        opacities=opacities.numpy(),
    )


def frustum_poses(cameras: CameraBatch) -> list[FrustumPose]:
    """OpenCV world-to-camera viewmats -> viser frustum poses (camera-to-world, same axes)."""
    camtoworlds = torch.linalg.inv(cameras.viewmats.double()).numpy()  # [C, 4, 4]
    focal_y = cameras.Ks[:, 1, 1].double().numpy()  # [C]
    aspect = cameras.width / cameras.height
    return [
        FrustumPose(
            fov=2.0 * math.atan(0.5 * cameras.height / float(focal_y[index])),
            aspect=aspect,
            wxyz=vtf.SO3.from_matrix(camtoworld[:3, :3]).wxyz,
            position=camtoworld[:3, 3].copy(),
        )
        for index, camtoworld in enumerate(camtoworlds)
    ]


def front_camera(
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0),
    distance: float = 2.75,
    elevation_deg: float = 15.0,
    fovy_deg: float = 50.0,
) -> Framing:
    """A camera in front of the object (azimuth 0, on +z), slightly above it, looking at `look_at`."""
    offset = orbit_position(torch.tensor([0.0]), torch.tensor([elevation_deg]), torch.tensor([distance]))[0]
    position = tuple(float(a + b) for a, b in zip(look_at, offset.tolist()))
    return Framing(position=position, look_at=tuple(float(v) for v in look_at), fov=math.radians(fovy_deg))


def framing_for(means: torch.Tensor, fovy_deg: float = 50.0, margin: float = 2.0) -> Framing:
    """A front camera that fits most of a point set (median centre, 90th-percentile radius)."""
    finite = means[torch.isfinite(means).all(dim=1)].float()
    if finite.shape[0] == 0:
        return front_camera(fovy_deg=fovy_deg)
    finite = finite[:: max(1, finite.shape[0] // 100_000)]  # torch.quantile caps its input size
    centre = finite.median(dim=0).values
    radius = float(torch.quantile((finite - centre).norm(dim=1), 0.9)) if finite.shape[0] > 1 else 0.0
    radius = max(radius, 1e-3)
    distance = margin * radius / math.sin(0.5 * math.radians(fovy_deg))
    return front_camera(look_at=tuple(centre.tolist()), distance=distance, fovy_deg=fovy_deg)
