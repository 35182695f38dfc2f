"""Build the small procedural Gaussian asset shipped as `assets/sample.ply`.

A round yellow character about 1 unit across, made of flat, opaque surface Gaussians (surfels):
its front (+z, the world frame of `splatgen/scene/gaussians.py`) has a face (white eyes with black pupils,
a red smile and a protruding orange nose); its back is blue and carries a green cone spike
pointing to -z. Front and back are therefore easy to tell apart in any render, which makes it a
fixture for the viewer, the turntable renderer, the exporters and Janus checks. Colours are SH
degree 0 with a little baked top-front shading. Deterministic for a given seed.

    python scripts/make_sample_asset.py assets/sample.ply --count 3000 --seed 0
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from splatgen.io import write_ply
from splatgen.scene.gaussians import Gaussians, rgb_to_sh0

BODY_RADIUS = 0.75
NOSE_RADIUS = 0.1
SPIKE_BASE_RADIUS = 0.25
SPIKE_LENGTH = 0.5
OPACITY = 0.9
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
LIGHT = torch.nn.functional.normalize(torch.tensor([0.3, 0.8, 0.5]), dim=0)  # baked shading direction

SKIN = (0.98, 0.78, 0.22)
HAIR = (0.18, 0.3, 0.75)
EYE_WHITE = (0.97, 0.97, 0.97)
PUPIL = (0.05, 0.05, 0.08)
MOUTH = (0.8, 0.1, 0.12)
NOSE = (0.95, 0.45, 0.15)
SPIKE = (0.15, 0.65, 0.25)


def fibonacci_sphere(count: int) -> torch.Tensor:
    """[count, 3] nearly evenly spaced unit vectors."""
    index = torch.arange(count, dtype=torch.float64) + 0.5
    y = 1.0 - 2.0 * index / count
    ring = torch.sqrt(1.0 - y**2)
    angle = GOLDEN_ANGLE * index
    return torch.stack([ring * torch.sin(angle), y, ring * torch.cos(angle)], dim=1).float()


def quats_from_normals(normals: torch.Tensor) -> torch.Tensor:
    """[N, 4] wxyz rotations taking local +z (a surfel's thin axis) to each unit normal [N, 3]."""
    w = 1.0 + normals[:, 2]
    quats = torch.stack([w, -normals[:, 1], normals[:, 0], torch.zeros_like(w)], dim=1)
    flipped = w < 1e-6  # normal = -z: half turn about x
    quats[flipped] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return torch.nn.functional.normalize(quats, dim=1)


def paint(regions: list[tuple[torch.Tensor, tuple[float, float, float]]], count: int) -> torch.Tensor:
    """[count, 3] colours: later (mask, colour) regions paint over earlier ones."""
    colors = torch.zeros(count, 3)
    for mask, color in regions:
        colors[mask] = torch.tensor(color)
    return colors


def body_colors(directions: torch.Tensor) -> torch.Tensor:
    """The body's texture as a function of the unit direction [N, 3]: face on +z, blue back."""
    x, y, z = directions.unbind(dim=1)
    eye_centre_x, eye_centre_y = 0.3, 0.25
    eye_distance = torch.minimum(
        torch.hypot(x - eye_centre_x, y - eye_centre_y), torch.hypot(x + eye_centre_x, y - eye_centre_y)
    )
    pupil_distance = torch.minimum(
        torch.hypot(x - eye_centre_x, y - eye_centre_y + 0.03), torch.hypot(x + eye_centre_x, y - eye_centre_y + 0.03)
    )
    front = z > 0
    smile = front & (x.abs() < 0.32) & ((y - (-0.42 + 1.6 * x**2)).abs() < 0.06)
    return paint(
        [
            (torch.ones_like(front), SKIN),
            (z < -0.15 + 0.5 * y.clamp(min=0), HAIR),
            (front & (eye_distance < 0.16), EYE_WHITE),
            (front & (pupil_distance < 0.08), PUPIL),
            (smile, MOUTH),
        ],
        len(directions),
    )


def surfels(
    points: torch.Tensor, normals: torch.Tensor, colors: torch.Tensor, area: float, generator: torch.Generator
) -> Gaussians:
    """Flat Gaussians on a surface of total `area`: tangential std ~ 0.7 x spacing, thin along the normal."""
    n = len(points)
    spacing = math.sqrt(area / n)
    tangential = 0.7 * spacing
    points = points + 0.15 * spacing * torch.randn(n, 3, generator=generator)
    shade = 0.65 + 0.35 * (normals @ LIGHT).clamp(min=0.0)  # [N]
    jitter = 0.03 * (torch.rand(n, 3, generator=generator) - 0.5)
    rgb = (colors * shade[:, None] + jitter).clamp(0.0, 1.0)
    scales = torch.log(torch.tensor([tangential, tangential, 0.2 * tangential])).expand(n, 3).clone()
    return Gaussians(
        means=points,  # [N, 3]
        scales=scales,  # [N, 3]
        quats=quats_from_normals(normals),  # [N, 4]
        opacities=torch.full((n,), math.log(OPACITY / (1.0 - OPACITY))),  # [N]
        sh0=rgb_to_sh0(rgb).unsqueeze(1),  # [N, 1, 3]
        shN=torch.zeros(n, 0, 3),
    )


def body(count: int, generator: torch.Generator) -> Gaussians:
    directions = fibonacci_sphere(count)
    return surfels(
        BODY_RADIUS * directions, directions, body_colors(directions), 4 * math.pi * BODY_RADIUS**2, generator
    )


def nose(count: int, generator: torch.Generator) -> Gaussians:
    directions = fibonacci_sphere(count)
    centre = torch.tensor([0.0, 0.0, BODY_RADIUS])
    colors = torch.tensor(NOSE).expand(count, 3)
    return surfels(centre + NOSE_RADIUS * directions, directions, colors, 4 * math.pi * NOSE_RADIUS**2, generator)


def spike(count: int, generator: torch.Generator) -> Gaussians:
    """A cone on the back: base circle inside the body at z = -0.9 R, apex pointing to -z."""
    index = torch.arange(count, dtype=torch.float32) + 0.5
    fraction = torch.sqrt(index / count)  # uniform in area: 0 at the apex, 1 at the base
    angle = GOLDEN_ANGLE * index
    radius = SPIKE_BASE_RADIUS * fraction
    base_z, apex_z = -0.9 * BODY_RADIUS, -BODY_RADIUS - SPIKE_LENGTH
    z = apex_z + (base_z - apex_z) * fraction
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), z], dim=1)
    slope = SPIKE_BASE_RADIUS / (base_z - apex_z)
    normals = torch.nn.functional.normalize(
        torch.stack([torch.cos(angle), torch.sin(angle), -slope * torch.ones(count)], dim=1), dim=1
    )
    area = math.pi * SPIKE_BASE_RADIUS * math.hypot(SPIKE_BASE_RADIUS, base_z - apex_z)
    return surfels(points, normals, torch.tensor(SPIKE).expand(count, 3), area, generator)


def concatenate(parts: list[Gaussians]) -> Gaussians:
    keys = ("means", "scales", "quats", "opacities", "sh0", "shN")
    return Gaussians(*(torch.cat([getattr(part, key) for part in parts]) for key in keys))


def make_sample_asset(count: int = 3000, seed: int = 0) -> Gaussians:
    """About `count` Gaussians: 80% body, 5% nose, 15% spike."""
    if count < 60:
        raise ValueError(f"--count must be at least 60, got {count}")
    generator = torch.Generator().manual_seed(seed)
    num_nose = max(20, count // 20)
    num_spike = max(20, 3 * count // 20)
    return concatenate(
        [body(count - num_nose - num_spike, generator), nose(num_nose, generator), spike(num_spike, generator)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output .ply path")
    parser.add_argument("--count", type=int, default=3000, help="number of Gaussians")
    parser.add_argument("--seed", type=int, default=0, help="random seed (positions and colour jitter)")
    args = parser.parse_args()
    report = write_ply(args.out, make_sample_asset(args.count, args.seed))
    print(report.summary())


if __name__ == "__main__":
    main()
