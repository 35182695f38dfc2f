"""How a run's Gaussians start: a random ball, an existing PLY, or a Shap-E shape for the prompt.

`Init` is the tyro union (`init:ball | init:ply | init:shap-e`); `initial_gaussians` builds the
chosen one. Ball and PLY live here, Shap-E (config and builder) in `shap_e.py`. Adding an
initialisation: a dataclass with a `config_name` and a builder (here, or in its own module when it
loads a model), a branch in `initial_gaussians`, and a member of `Init`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro
from rich.console import Console

from splatgen.errors import SplatgenError
from splatgen.io import read_asset
from splatgen.scene.gaussians import Gaussians, num_sh_bases, rgb_to_sh0
from splatgen.scene.shap_e import ShapEInit, shap_e_gaussians

if TYPE_CHECKING:
    import torch


@dataclass
class BallInit:
    """Initialise Gaussians uniformly inside a ball around the origin (DreamGaussian, threestudio-3dgs)."""

    config_name = "ball"

    count: int = 4096
    """Number of Gaussians to start with."""
    radius: float = 0.5
    """Radius of the ball, in world units (cameras orbit at distance ~2-3)."""
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Base colour, RGB in [0, 1]."""
    color_jitter: float = 0.1
    """Uniform random perturbation added to each Gaussian's colour (breaks symmetry)."""
    opacity: float = 0.1
    """Initial opacity in (0, 1)."""
    scale: float | None = None
    """Initial standard deviation; None = the mean spacing of `count` points in the ball."""

    def validate(self) -> None:
        if self.count < 1:
            raise ValueError(f"init.count must be >= 1, got {self.count}")
        if self.radius <= 0:
            raise ValueError(f"init.radius must be > 0, got {self.radius}")
        if not 0.0 < self.opacity < 1.0:
            raise ValueError(f"init.opacity must be in (0, 1), got {self.opacity}")
        if self.scale is not None and self.scale <= 0:
            raise ValueError(f"init.scale must be > 0, got {self.scale}")


def random_ball(init: BallInit, sh_degree: int, generator: torch.Generator) -> Gaussians:
    """Gaussians uniform in a ball: isotropic, identity rotation, jittered base colour."""
    import torch

    init.validate()
    n = init.count
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    radius = init.radius * torch.rand(n, 1, generator=generator) ** (1.0 / 3.0)  # uniform in volume
    means = direction * radius
    spacing = init.scale if init.scale is not None else init.radius * (4.0 / 3.0 * math.pi / n) ** (1.0 / 3.0)
    scales = torch.full((n, 3), math.log(spacing))
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    opacities = torch.full((n,), math.log(init.opacity / (1.0 - init.opacity)))
    rgb = torch.tensor(init.color).expand(n, 3) + init.color_jitter * (torch.rand(n, 3, generator=generator) - 0.5) * 2
    sh0 = rgb_to_sh0(rgb.clamp(0.0, 1.0)).unsqueeze(1)
    shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3)
    return Gaussians(means, scales, quats, opacities, sh0, shN)


@dataclass
class PlyInit:
    """Start from an existing asset (3DGS PLY, SuperSplat compressed PLY or .splat), e.g. a previous run's."""

    config_name = "ply"
    path: Path = Path("assets/sample.ply")
    """The .ply / .compressed.ply / .splat to start from."""


Init = (
    Annotated[BallInit, tyro.conf.subcommand("ball", description="Random ball (offline default).")]
    | Annotated[PlyInit, tyro.conf.subcommand("ply", description="An existing 3DGS PLY.")]
    | Annotated[ShapEInit, tyro.conf.subcommand("shap-e", description="Shap-E point cloud for the prompt.")]
)


def initial_gaussians(
    init: Init, prompt: str, sh_degree: int, max_gaussians: int, generator: torch.Generator, console: Console
) -> Gaussians:
    """The starting Gaussians of a run, refused with one line when there are more than the cap."""
    if isinstance(init, BallInit):
        gaussians = random_ball(init, sh_degree, generator)
    elif isinstance(init, PlyInit):
        gaussians = read_asset(init.path, finite=True).with_sh_degree(sh_degree)  # NaN rows would poison the run
        console.print(f"starting from {init.path} ({len(gaussians):,} Gaussians)")
    elif isinstance(init, ShapEInit):
        gaussians = shap_e_gaussians(prompt, init, sh_degree, generator, console)
    else:
        raise SplatgenError(f"unknown initialisation {type(init).__name__}")
    if len(gaussians) > max_gaussians:
        raise SplatgenError(
            f"the initial asset has {len(gaussians):,} Gaussians, more than --densify.max-gaussians {max_gaussians:,}"
        )
    return gaussians
