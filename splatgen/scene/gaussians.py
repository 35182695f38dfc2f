"""The Gaussian scene: raw parameters and their activations (in this one place).

Raw parameters are what the optimiser sees and what a 3DGS PLY stores (Kerbl et al. 2023):

    means      [N, 3]       world positions
    scales     [N, 3]       log of the per-axis standard deviations
    quats      [N, 4]       rotation quaternions, w x y z, unnormalised
    opacities  [N]          logit of the opacity
    sh0        [N, 1, 3]    degree-0 spherical-harmonic coefficient per colour channel
    shN        [N, K-1, 3]  higher SH coefficients, K = (degree + 1) ** 2; K-1 = 0 for degree 0

The keys and layout match gsplat's trainers, so gsplat's densification ops work on them directly.

World frame: right-handed, +y up, the object's front faces +z (three.js convention); azimuth 0
looks at the front (see `cameras.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for a degree: (degree + 1)^2."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(num_bases: int) -> int:
    degree = math.isqrt(num_bases) - 1
    if (degree + 1) ** 2 != num_bases or not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"{num_bases} SH coefficients per channel is not (d+1)^2 for d in 0..3")
    return degree


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> degree-0 SH coefficient (the INRIA convention: rgb = 0.5 + C0 * sh0)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return sh0 * SH_C0 + 0.5


@dataclass
class Gaussians:
    """Raw Gaussian parameters as plain tensors (no autograd): the exchange type for I/O."""

    means: torch.Tensor  # [N, 3]
    scales: torch.Tensor  # [N, 3] log-scales
    quats: torch.Tensor  # [N, 4] wxyz
    opacities: torch.Tensor  # [N] logits
    sh0: torch.Tensor  # [N, 1, 3]
    shN: torch.Tensor  # [N, K-1, 3]

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n,),
            "sh0": (n, 1, 3),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"Gaussians.shN has shape {tuple(self.shN.shape)}, expected ({n}, K-1, 3)")
        sh_degree_from_bases(self.shN.shape[1] + 1)

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.shN.shape[1] + 1)

    def with_sh_degree(self, degree: int) -> Gaussians:
        """Drop higher SH bands, or add zero ones, to reach `degree`."""
        import torch

        k = num_sh_bases(degree) - 1
        have = self.shN.shape[1]
        if k <= have:
            shN = self.shN[:, :k]
        else:
            pad = self.shN.new_zeros(len(self), k - have, 3)
            shN = torch.cat([self.shN, pad], dim=1)
        return Gaussians(self.means, self.scales, self.quats, self.opacities, self.sh0, shN.contiguous())

    def to_parameters(self, device: torch.device | str = "cpu") -> torch.nn.ParameterDict:
        """The optimisable form: one Parameter per key (gsplat's strategies mutate this dict)."""
        import torch

        return torch.nn.ParameterDict(
            {
                key: torch.nn.Parameter(getattr(self, key).detach().to(device, torch.float32).clone())
                for key in SPLAT_KEYS
            }
        )

    @staticmethod
    def from_parameters(splats: torch.nn.ParameterDict | dict[str, torch.Tensor]) -> Gaussians:
        return Gaussians(**{key: splats[key].detach().cpu().clone() for key in SPLAT_KEYS})

    def finite_mask(self) -> torch.Tensor:
        """[N] bool: rows whose every value is finite."""
        import torch

        rows = [
            t.reshape(len(self), -1) for t in (self.means, self.scales, self.quats, self.opacities, self.sh0, self.shN)
        ]
        return torch.isfinite(torch.cat(rows, dim=1)).all(dim=1)

    def select(self, mask: torch.Tensor) -> Gaussians:
        return Gaussians(*(t[mask] for t in (self.means, self.scales, self.quats, self.opacities, self.sh0, self.shN)))


@dataclass
class ActivatedGaussians:
    """What a rasterizer takes: activated, differentiable views of the raw parameters."""

    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] unit wxyz
    scales: torch.Tensor  # [N, 3] standard deviations
    opacities: torch.Tensor  # [N] in (0, 1)
    colors: torch.Tensor  # [N, K, 3] SH coefficients
    sh_degree: int


def activate(
    splats: torch.nn.ParameterDict | dict[str, torch.Tensor], sh_degree: int | None = None
) -> ActivatedGaussians:
    """The activations, in one place: exp for scales, sigmoid for opacity, normalise quaternions.

    `sh_degree` may be lower than what is stored (progressive SH); None uses all stored bands.
    """
    import torch

    stored = sh_degree_from_bases(splats["shN"].shape[1] + 1)
    degree = stored if sh_degree is None else min(sh_degree, stored)
    k = num_sh_bases(degree)
    colors = torch.cat([splats["sh0"], splats["shN"][:, : k - 1]], dim=1)  # [N, K, 3]
    return ActivatedGaussians(
        means=splats["means"],
        quats=torch.nn.functional.normalize(splats["quats"], dim=-1),
        scales=torch.exp(splats["scales"]),
        opacities=torch.sigmoid(splats["opacities"]),
        colors=colors,
        sh_degree=degree,
    )
