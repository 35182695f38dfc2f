"""Resumable checkpoints: everything a run needs to continue bit-for-bit, written atomically.

`save_checkpoint(dir, state)` writes a `TrainState`'s changing part (`TrainState.state_dict()`);
`restore_checkpoint(dir, state)` puts it back. `<run>/checkpoints/last.pt` is a `torch.save` dict
(loadable with `weights_only=True`):

    step            int, the number of completed steps
    splats          {means, scales, quats, opacities, sh0, shN} raw tensors
    optimizers      {key: Adam state_dict}
    densifier       the densifier's running statistics
    lora            the VSD/ESD LoRA score's state (or None)
    rng             {"torch": CPU RNG state, "generator": the sampling generator's state, "cuda": ...}
    nan_steps       how many steps were skipped for non-finite values so far
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from splatgen.errors import SplatgenError
from splatgen.io.atomic import atomic_path
from splatgen.io.run_folder import LAST_CHECKPOINT

if TYPE_CHECKING:
    from splatgen.train.step import TrainState


def save_checkpoint(checkpoint_dir: Path, state: TrainState) -> Path:
    """Write the state's changing part to `checkpoint_dir/last.pt` atomically; returns the path."""
    path = Path(checkpoint_dir) / LAST_CHECKPOINT
    cpu_state = _to_cpu(state.state_dict())
    with atomic_path(path) as temporary:
        torch.save(cpu_state, temporary)
    return path


def restore_checkpoint(checkpoint_dir: Path, state: TrainState) -> None:
    """Continue `state` (a fresh run's, same config) from `checkpoint_dir/last.pt`."""
    state.load_state_dict(load_checkpoint(checkpoint_dir))


def load_checkpoint(checkpoint_dir: Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / LAST_CHECKPOINT
    if not path.is_file():
        raise SplatgenError(f"no checkpoint to resume from: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which, never a traceback
        raise SplatgenError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from error


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value
