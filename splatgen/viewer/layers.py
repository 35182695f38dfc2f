"""Scene nodes the viewer keeps up to date: one splat node, and a frustum per training camera."""

from __future__ import annotations

import torch
import viser

from splatgen.scene.cameras import CameraBatch
from splatgen.viewer.convert import frustum_poses, splat_arrays

FRUSTUM_COLOR = (230, 110, 20)
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

    def show(self, cameras: CameraBatch | None) -> None:
        """Draw one frustum per camera; None (or an empty batch) removes them all."""
        poses = frustum_poses(cameras) if cameras is not None and len(cameras) > 0 else []
        while len(self._handles) > len(poses):
            self._handles.pop().remove()
        for index, pose in enumerate(poses):
            if index < len(self._handles):
                handle = self._handles[index]
                handle.fov, handle.aspect, handle.wxyz, handle.position = (
                    pose.fov,
                    pose.aspect,
                    pose.wxyz,
                    pose.position,
                )
            else:
                self._handles.append(
                    self._scene.add_camera_frustum(
                        f"{self._root}/{index}",
                        fov=pose.fov,
                        aspect=pose.aspect,
                        scale=FRUSTUM_SCALE,
                        color=FRUSTUM_COLOR,
                        wxyz=pose.wxyz,
                        position=pose.position,
                    )
                )
