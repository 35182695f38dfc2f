"""What the live viewer shows of one training step, and the CPU copy its worker thread keeps.

The training loop hands the viewer a factory of `TrainingSnapshot`s (`splatgen.train.step.snapshot_factory`);
the viewer calls it only when a push is due and keeps `detached_cpu_copy` of the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from splatgen.scene.cameras import CameraBatch

if TYPE_CHECKING:
    import torch


@dataclass
class TrainingSnapshot:
    """What the viewer shows of one training step (built only when a push is due)."""

    step: int
    total_steps: int
    loss: float
    num_gaussians: int
    truncation: float | None
    timestep_range: tuple[int, int]
    splats: dict[str, torch.Tensor]  # raw params: means, scales, quats, opacities, sh0, shN (any device)
    cameras: CameraBatch | None = None  # the last sampled batch, drawn as frustums
    view_prompts: dict[str, Any] | None = None  # prompts.json contents
    views_per_group: int = 1  # the prior's view groups (MVDream: 4), drawn one colour per group


def detached_cpu_copy(snapshot: TrainingSnapshot) -> TrainingSnapshot:
    """A copy the worker may keep: tensors detached and copied to the CPU (never aliasing training's)."""
    splats = {key: value.detach().to("cpu", copy=True) for key, value in snapshot.splats.items()}
    cameras = None
    if snapshot.cameras is not None:
        source = snapshot.cameras
        cameras = CameraBatch(
            *(tensor.detach().to("cpu", copy=True) for tensor in (source.viewmats, source.Ks)),
            source.width,
            source.height,
            *(
                tensor.detach().to("cpu", copy=True)
                for tensor in (source.azimuth_deg, source.elevation_deg, source.distance, source.fovy_deg)
            ),
        )
    return TrainingSnapshot(
        step=int(snapshot.step),
        total_steps=int(snapshot.total_steps),
        loss=float(snapshot.loss),
        num_gaussians=int(snapshot.num_gaussians),
        truncation=None if snapshot.truncation is None else float(snapshot.truncation),
        timestep_range=(int(snapshot.timestep_range[0]), int(snapshot.timestep_range[1])),
        splats=splats,
        cameras=cameras,
        view_prompts=snapshot.view_prompts,
        views_per_group=int(snapshot.views_per_group),
    )
