"""Entropic Score Distillation (Wang et al. 2024, arXiv 2401.00909).

VSD's variational score with the entropy of the camera-marginal render distribution restored:
eps_phi = lambda eps_phi(x_t, t, y, none) + (1 - lambda) eps_phi(x_t, t, y, c). Maximising the
entropy of the renders across views discourages every view from collapsing onto the same
(frontal) mode, the Janus artifact. lambda = 0 is VSD exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from splatgen.objectives.base import ScoreInputs
from splatgen.objectives.vsd import VariationalScoreFields, variational_score_gradient

if TYPE_CHECKING:
    import torch


@dataclass
class ESD(VariationalScoreFields):
    """Entropic score distillation: VSD whose LoRA score mixes the no-camera and camera predictions."""

    config_name: ClassVar[str] = "esd"

    entropy_weight: float = 0.5
    """lambda in [0, 1]: weight of the camera-free LoRA score (0 = VSD; threestudio guidance_scale_lora = 1 - lambda)."""

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.entropy_weight <= 1.0:
            raise ValueError(f"entropy_weight must lie in [0, 1], got {self.entropy_weight}")
        if self.entropy_weight > 0.0 and self.camera_dropout == 0.0:
            raise ValueError(
                "camera_dropout must be > 0 when entropy_weight > 0: the LoRA's no-camera score is never trained otherwise"
            )

    def gradient(self, inputs: ScoreInputs) -> torch.Tensor:
        return esd_gradient(self, inputs)


def esd_gradient(config: ESD, inputs: ScoreInputs) -> torch.Tensor:
    """ESD: w(t)(eps_hat_pre - [lambda eps_phi(x_t,t,y,none) + (1 - lambda) eps_phi(x_t,t,y,c)]), [B, c, h, w].

    The ESD project page's gradient grad log p(x|y) - lambda grad log q(x|none) - (1 - lambda)
    grad log q(x|c), in eps-space; the no-camera prediction needs a LoRA trained with camera
    dropout. With entropy_weight = 0 the camera-free prediction is not read (it may be None).
    """
    if inputs.eps_lora_camera is None:
        raise ValueError("ESD needs ScoreInputs.eps_lora_camera (the LoRA prediction with the camera)")
    if config.entropy_weight == 0.0:
        return variational_score_gradient(config, inputs, inputs.eps_lora_camera)
    if inputs.eps_lora_no_camera is None:
        raise ValueError("ESD with entropy_weight > 0 needs ScoreInputs.eps_lora_no_camera (camera dropped)")
    eps_variational = (
        config.entropy_weight * inputs.eps_lora_no_camera + (1.0 - config.entropy_weight) * inputs.eps_lora_camera
    )
    return variational_score_gradient(config, inputs, eps_variational)
