"""Orbit cameras around the origin: random training batches and fixed evaluation orbits.

Conventions (shared by the renderer, the view prompts and the viewer):
- World: right-handed, +y up; the object's front faces +z.
- Azimuth 0 deg looks at the front (camera on +z), 90 deg is on +x; azimuths live in [-180, 180).
- Elevation is the angle above the horizontal plane, in degrees (90 = straight overhead).
- `viewmats` are world-to-camera in the OpenCV convention (x right, y down, z forward), which is
  what gsplat's `rasterization` takes; `Ks` are pinhole intrinsics in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch


UP_AXIS = 1  # the world axis that points up (+y)
MAX_ABS_ELEVATION = 89.0  # the look-at frame is undefined straight above or below


@dataclass
class OrbitSampler:
    """Random cameras on an orbit around the object, looking at (a jittered) origin."""

    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    """Azimuth interval in degrees (0 = front)."""
    elevation_range: tuple[float, float] = (-10.0, 60.0)
    """Elevation interval in degrees (threestudio / GaussianDreamer default)."""
    elevation_sampling: Literal["uniform", "sphere"] = "uniform"
    """'uniform': uniform in degrees; 'sphere': uniform over the sphere's area (fewer overhead views)."""
    distance_range: tuple[float, float] = (2.5, 3.0)
    """Camera distance from the origin, world units."""
    fovy_range: tuple[float, float] = (40.0, 60.0)
    """Vertical field of view in degrees."""
    stratified_azimuth: bool = True
    """Spread a batch's azimuths evenly over the range (one random offset per view's stratum)."""
    jitter: float = 0.0
    """Std of Gaussian noise on camera position and look-at target, world units (0 = off)."""
    distance_relative_to_fovy: bool = False
    """distance_range holds d, the half-height of the view at the origin, and the camera stands at d / tan(fovy / 2)
    (threestudio's relative radius: the object fills the frame alike at every field of view)."""

    def validate(self) -> None:
        def check(name: str, lo: float, hi: float, low: float, high: float) -> None:
            if not (low <= lo <= hi <= high):
                raise ValueError(f"cameras.{name} must satisfy {low} <= lo <= hi <= {high}, got ({lo}, {hi})")

        check("azimuth_range", *self.azimuth_range, -360.0, 360.0)
        check("elevation_range", *self.elevation_range, -90.0, 90.0)
        check("distance_range", *self.distance_range, 1e-3, 1e6)
        check("fovy_range", *self.fovy_range, 1.0, 170.0)
        if self.jitter < 0:
            raise ValueError(f"cameras.jitter must be >= 0, got {self.jitter}")


@dataclass
class CameraBatch:
    """A batch of C pinhole cameras, all with the same image size."""

    viewmats: torch.Tensor  # [C, 4, 4] world-to-camera, OpenCV
    Ks: torch.Tensor  # [C, 3, 3] intrinsics in pixels
    width: int
    height: int
    azimuth_deg: torch.Tensor  # [C] in [-180, 180)
    elevation_deg: torch.Tensor  # [C]
    distance: torch.Tensor  # [C]
    fovy_deg: torch.Tensor  # [C]

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    @property
    def camtoworlds(self) -> torch.Tensor:  # [C, 4, 4]
        return rigid_inverse(self.viewmats)

    def to(self, device: torch.device | str) -> CameraBatch:
        return CameraBatch(
            self.viewmats.to(device),
            self.Ks.to(device),
            self.width,
            self.height,
            self.azimuth_deg.to(device),
            self.elevation_deg.to(device),
            self.distance.to(device),
            self.fovy_deg.to(device),
        )

    def repeat(self, copies: int) -> CameraBatch:
        """The batch `copies` times over, in order (camera i of copy k is camera k * C + i), on the same device."""
        return CameraBatch(
            self.viewmats.repeat(copies, 1, 1),
            self.Ks.repeat(copies, 1, 1),
            self.width,
            self.height,
            self.azimuth_deg.repeat(copies),
            self.elevation_deg.repeat(copies),
            self.distance.repeat(copies),
            self.fovy_deg.repeat(copies),
        )

    def select(self, index: slice | torch.Tensor) -> CameraBatch:
        return CameraBatch(
            self.viewmats[index],
            self.Ks[index],
            self.width,
            self.height,
            self.azimuth_deg[index],
            self.elevation_deg[index],
            self.distance[index],
            self.fovy_deg[index],
        )


def rigid_inverse(matrices: torch.Tensor) -> torch.Tensor:  # [..., 4, 4] -> [..., 4, 4]
    """The inverse of rigid transforms [R t; 0 1] in closed form, [R^T, -R^T t; 0 1].

    Exact for orthonormal R (every camera here), and unlike `torch.linalg.inv` it never reads the
    device (linalg.inv checks for singular matrices on the host).
    """
    import torch

    rotation_t = matrices[..., :3, :3].transpose(-1, -2)  # [..., 3, 3]
    inverse = torch.zeros_like(matrices)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ matrices[..., :3, 3:])[..., 0]
    inverse[..., 3, 3] = 1.0
    return inverse


def wrap_azimuth(azimuth_deg: torch.Tensor) -> torch.Tensor:
    """Map degrees to [-180, 180)."""
    import torch

    return torch.remainder(azimuth_deg + 180.0, 360.0) - 180.0


def orbit_position(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Camera centres [C, 3] on the orbit sphere (azimuth 0 on +z, 90 on +x, +y up)."""
    import torch

    az = torch.deg2rad(azimuth_deg)
    el = torch.deg2rad(elevation_deg.clamp(-MAX_ABS_ELEVATION, MAX_ABS_ELEVATION))
    return distance[:, None] * torch.stack(
        [torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1
    )


def look_at_viewmats(positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """World-to-camera OpenCV matrices [C, 4, 4] for cameras at `positions` [C, 3] looking at `targets` [C, 3]."""
    import torch

    forward = torch.nn.functional.normalize(targets - positions, dim=-1)  # camera +z
    up = torch.zeros_like(forward)  # filled on the device: a host tensor would be a blocking copy
    up[:, UP_AXIS] = 1.0
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=-1)  # camera +x
    down = torch.linalg.cross(forward, right)  # camera +y
    rotation_c2w = torch.stack([right, down, forward], dim=-1)  # [C, 3, 3], columns are camera axes
    viewmats = torch.zeros(positions.shape[0], 4, 4, dtype=positions.dtype, device=positions.device)
    viewmats[:, :3, :3] = rotation_c2w.transpose(1, 2)
    viewmats[:, :3, 3] = -(rotation_c2w.transpose(1, 2) @ positions[..., None])[..., 0]
    viewmats[:, 3, 3] = 1.0
    return viewmats


def intrinsics(fovy_deg: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pinhole intrinsics [C, 3, 3] with square pixels and the principal point at the centre."""
    import torch

    focal = 0.5 * height / torch.tan(0.5 * torch.deg2rad(fovy_deg))
    Ks = torch.zeros(fovy_deg.shape[0], 3, 3, dtype=fovy_deg.dtype, device=fovy_deg.device)
    Ks[:, 0, 0] = focal
    Ks[:, 1, 1] = focal
    Ks[:, 0, 2] = 0.5 * width
    Ks[:, 1, 2] = 0.5 * height
    Ks[:, 2, 2] = 1.0
    return Ks


def make_cameras(
    azimuth_deg: torch.Tensor,
    elevation_deg: torch.Tensor,
    distance: torch.Tensor,
    fovy_deg: torch.Tensor,
    width: int,
    height: int,
    targets: torch.Tensor | None = None,
    position_offsets: torch.Tensor | None = None,
) -> CameraBatch:
    """Cameras from orbit coordinates (all [C]); optional look-at targets and position offsets [C, 3]."""
    import torch

    positions = orbit_position(azimuth_deg, elevation_deg, distance)
    if position_offsets is not None:
        positions = positions + position_offsets
    if targets is None:
        targets = torch.zeros_like(positions)
    return CameraBatch(
        viewmats=look_at_viewmats(positions, targets),
        Ks=intrinsics(fovy_deg, width, height),
        width=width,
        height=height,
        azimuth_deg=wrap_azimuth(azimuth_deg),
        elevation_deg=elevation_deg,
        distance=distance,
        fovy_deg=fovy_deg,
    )


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator) -> torch.Tensor:  # [n] on generator.device
    import torch

    return lo + (hi - lo) * torch.rand(n, generator=generator, device=generator.device)


def sample_cameras(
    sampler: OrbitSampler,
    batch_size: int,
    width: int,
    height: int,
    generator: torch.Generator,
    views_per_group: int = 1,
) -> CameraBatch:
    """Draw `batch_size` random orbit cameras on the generator's device; reproducible for a given generator state.

    With `views_per_group` V > 1 (a multi-view prior) the batch is G = batch_size / V groups of V
    contiguous views: one elevation, distance and field of view per group, azimuths
    offset + {0, 360/V, ...} (MVDream's 4 views 90 degrees apart; threestudio `random_multiview.py`),
    the group offsets stratified over one 360/V sector and the azimuth range ignored.
    """
    import torch

    if batch_size % views_per_group != 0:
        raise ValueError(f"a batch of {batch_size} views is not made of whole groups of {views_per_group}")
    device = generator.device
    draws = batch_size // views_per_group  # independent draws: views, or groups of views
    if views_per_group > 1:
        sector = 360.0 / views_per_group
        strata = (torch.arange(draws, device=device) + torch.rand(draws, generator=generator, device=device)) / draws
        group_offsets = strata * sector - 180.0  # [G]
        view_offsets = sector * torch.arange(views_per_group, device=device)  # [V]
        azimuth = (group_offsets[:, None] + view_offsets).reshape(-1)  # [G * V]
    elif sampler.stratified_azimuth:
        lo, hi = sampler.azimuth_range
        offsets = torch.rand(batch_size, generator=generator, device=device)
        strata = (torch.arange(batch_size, device=device) + offsets) / batch_size
        azimuth = lo + (hi - lo) * strata
    else:
        azimuth = _uniform(*sampler.azimuth_range, batch_size, generator)
    el_lo, el_hi = sampler.elevation_range
    if sampler.elevation_sampling == "sphere":
        sin_lo, sin_hi = math.sin(math.radians(el_lo)), math.sin(math.radians(el_hi))
        elevation = torch.rad2deg(torch.asin(_uniform(sin_lo, sin_hi, draws, generator)))
    else:
        elevation = _uniform(el_lo, el_hi, draws, generator)
    distance = _uniform(*sampler.distance_range, draws, generator)
    fovy = _uniform(*sampler.fovy_range, draws, generator)
    if sampler.distance_relative_to_fovy:
        distance = distance / torch.tan(0.5 * torch.deg2rad(fovy))
    elevation, distance, fovy = (value.repeat_interleave(views_per_group) for value in (elevation, distance, fovy))
    targets = offsets = None
    if sampler.jitter > 0:
        offsets = sampler.jitter * torch.randn(batch_size, 3, generator=generator, device=device)
        targets = sampler.jitter * torch.randn(batch_size, 3, generator=generator, device=device)
    return make_cameras(azimuth, elevation, distance, fovy, width, height, targets=targets, position_offsets=offsets)


def evaluation_orbit(
    num_views: int,
    width: int,
    height: int,
    elevation_deg: float = 15.0,
    distance: float = 2.75,
    fovy_deg: float = 50.0,
    start_azimuth_deg: float = 0.0,
) -> CameraBatch:
    """A fixed turntable: `num_views` cameras evenly spaced in azimuth, starting at the front."""
    import torch

    azimuth = start_azimuth_deg + 360.0 * torch.arange(num_views, dtype=torch.float32) / num_views
    full = lambda value: torch.full((num_views,), float(value))  # noqa: E731
    return make_cameras(azimuth, full(elevation_deg), full(distance), full(fovy_deg), width, height)
