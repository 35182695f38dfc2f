"""Scene nodes the viewer keeps up to date: one splat node, and a frustum per training camera."""

from __future__ import annotations

import torch
import viser

from splatgen.scene.cameras import CameraBatch
from splatgen.viewer.convert import frustum_poses, splat_arrays

FRUSTUM_COLOR = (230, 110, 20)
GROUP_COLORS = (FRUSTUM_COLOR, (30, 110, 230), (40, 170, 80), (200, 40, 160), (120, 80, 200), (20, 170, 190))
"""One colour per view group of a multi-view prior (cycled); single-view batches are all FRUSTUM_COLOR."""
FRUSTUM_SCALE = 0.2


class SplatLayer:
    """One `add_gaussian_splats` node, updated in place with `set_gaussians` (N may change)."""

    def __init__(self, scene: viser.SceneApi, name: str = "/splats") -> None:
        self._scene = scene
        self._name = name
        self._handle: viser.GaussianSplatHandle | None = None

    def show(self, splats: dict[str, torch.Tensor]) -> int:
        """Draw raw parameters (CPU tensors); returns how many Gaussians were drawn."""
        arrays = splat_arrays(splats)
        fields = dict(
            centers=arrays.centers, covariances=arrays.covariances, rgbs=arrays.rgbs, opacities=arrays.opacities
        )
        if self._handle is None:
            self._handle = self._scene.add_gaussian_splats(self._name, **fields)
        else:
            self._handle.set_gaussians(**fields)
        return len(arrays)


class FrustumLayer:
    """Camera frustums for the last sampled training batch; handles are reused between updates."""

    def __init__(self, scene: viser.SceneApi, root: str = "/training_cameras") -> None:
        self._scene = scene
        self._root = root
        self._handles: list[viser.CameraFrustumHandle] = []

    def show(self, cameras: CameraBatch | None, views_per_group: int = 1) -> None:
        """Draw one frustum per camera, each group of `views_per_group` in its own colour; None removes them all."""
        poses = frustum_poses(cameras) if cameras is not None and len(cameras) > 0 else []
        while len(self._handles) > len(poses):
            self._handles.pop().remove()
        for index, pose in enumerate(poses):
            color = (
                GROUP_COLORS[(index // views_per_group) % len(GROUP_COLORS)] if views_per_group > 1 else FRUSTUM_COLOR
            )
            if index < len(self._handles):
                handle = self._handles[index]
                handle.fov, handle.aspect, handle.wxyz, handle.position = (
                    pose.fov,
                    pose.aspect,
                    pose.wxyz,
                    pose.position,
                )
                if tuple(handle.color) != color:
                    handle.color = color
            else:
                self._handles.append(
                    self._scene.add_camera_frustum(
                        f"{self._root}/{index}",
                        fov=pose.fov,
                        aspect=pose.aspect,
                        scale=FRUSTUM_SCALE,
                        color=color,
                        wxyz=pose.wxyz,
                        position=pose.position,
                    )
                )
