"""Optimisers for the Gaussian parameters: one Adam per parameter group (gsplat's convention).

gsplat's densification replaces parameters in place and needs exactly one optimizer with one
param group per key. Learning rates follow DreamGaussian's text-to-3D settings; the position
learning rate decays exponentially, as in 3DGS (Kerbl et al. 2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class OptimConfig:
    """Learning rates of the Gaussian parameters (Adam)."""

    means_lr: float = 1e-3
    """Position learning rate at the start (world units / step)."""
    means_lr_final: float = 2e-5
    """Position learning rate at the end; decays exponentially in between."""
    scales_lr: float = 0.005
    """Log-scale learning rate."""
    quats_lr: float = 0.005
    """Quaternion learning rate."""
    opacities_lr: float = 0.05
    """Opacity-logit learning rate."""
    sh0_lr: float = 0.01
    """Base-colour (SH degree 0) learning rate."""
    shN_lr: float = 0.0005
    """Higher SH bands' learning rate (1/20 of the base colour's, as in 3DGS)."""

    def validate(self) -> None:
        for name in ("means_lr", "means_lr_final", "scales_lr", "quats_lr", "opacities_lr", "sh0_lr", "shN_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"optim.{name} must be > 0, got {getattr(self, name)}")

    def learning_rates(self) -> dict[str, float]:
        return {
            "means": self.means_lr,
            "scales": self.scales_lr,
            "quats": self.quats_lr,
            "opacities": self.opacities_lr,
            "sh0": self.sh0_lr,
            "shN": self.shN_lr,
        }


def make_optimizers(splats: torch.nn.ParameterDict, config: OptimConfig) -> dict[str, torch.optim.Adam]:
    import torch

    rates = config.learning_rates()
    return {key: torch.optim.Adam([splats[key]], lr=rates[key], eps=1e-15) for key in splats}


def means_learning_rate(config: OptimConfig, progress: float) -> float:
    """Exponential decay from `means_lr` to `means_lr_final` over the run (progress in [0, 1])."""
    progress = min(max(progress, 0.0), 1.0)
    return math.exp((1.0 - progress) * math.log(config.means_lr) + progress * math.log(config.means_lr_final))


def set_means_learning_rate(optimizers: dict[str, torch.optim.Optimizer], learning_rate: float) -> None:
    for group in optimizers["means"].param_groups:
        group["lr"] = learning_rate
