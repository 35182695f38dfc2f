"""Resumable checkpoints: everything a run needs to continue bit-for-bit, written atomically, verified on load.

`save_checkpoint(dir, state, identity)` writes a `TrainState`'s changing part (`TrainState.state_dict()`);
`load_checkpoint(dir, identity)` reads and verifies it and `restore_checkpoint(state, saved, path)`
puts it back. `<run>/checkpoints/last.pt` is a `torch.save` dict (loadable with `weights_only=True`):

    step            int, the number of completed steps
    splats          {means, scales, quats, opacities, sh0, shN} raw tensors
    optimizers      {key: Adam state_dict}
    densifier       the densifier's running statistics
    lora            the VSD/ESD LoRA score's state (or None)
    rng             {"torch": CPU RNG state, "generator": the step generator's state (on the training
                    device), "generator_device": that device's type ("cpu", "cuda"), "cuda": every
                    CUDA device's RNG state when CUDA is in use}
    nan_steps       how many steps were skipped for non-finite values so far
    integrity       {"sha256": digest of everything above, "config": the run's identity as YAML}

Saving refuses a state with a NaN/Inf anywhere (splats, optimiser moments, LoRA weights): the last
good checkpoint is never replaced by a diverged one. Loading recomputes the digest (a flipped byte
is refused, not trained on), checks the config identity (the fields a resume may not change) and
the shapes of the Gaussians, each failure one line. Only consistent states reach `save_checkpoint`:
the loop saves between steps, never inside one (see `loop.py`).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from splatgen.errors import SplatgenError
from splatgen.io.atomic import write_bytes_atomic
from splatgen.io.run_folder import LAST_CHECKPOINT

if TYPE_CHECKING:
    from splatgen.train.step import TrainState
REQUIRED_ENTRIES = ("step", "splats", "optimizers", "densifier", "rng")
SPLAT_TRAILING_SHAPES = {"means": (3,), "scales": (3,), "quats": (4,), "opacities": (), "sh0": (1, 3)}


class CheckpointError(SplatgenError):
    """A checkpoint is missing, unreadable, corrupted, or belongs to another run."""


class NonFiniteCheckpoint(CheckpointError):
    """The state to save holds NaN/Inf; the previous checkpoint is kept."""


def save_checkpoint(checkpoint_dir: Path, state: TrainState, identity: str = "") -> Path:
    """Write the state's changing part (plus its digest and the run's `identity`) to `checkpoint_dir/last.pt`."""
    path = Path(checkpoint_dir) / LAST_CHECKPOINT
    cpu_state = _to_cpu(state.state_dict())
    bad = first_non_finite(cpu_state)
    if bad is not None:
        raise NonFiniteCheckpoint(f"not saving a checkpoint with NaN/Inf in {bad}; {path} keeps the last good state")
    cpu_state["integrity"] = {"sha256": state_digest(cpu_state), "config": identity}
    payload = io.BytesIO()  # serialised in memory: a full disk then fails as a plain OSError in the write
    torch.save(cpu_state, payload)
    write_bytes_atomic(path, payload.getbuffer())
    return path


def load_checkpoint(checkpoint_dir: Path, identity: str | None = None) -> dict[str, Any]:
    """Read and verify `checkpoint_dir/last.pt`; `identity` (when given) must match the saved one."""
    path = Path(checkpoint_dir) / LAST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal below says enough
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, foreign or malicious: say which, never a traceback
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(error)}") from error
    if not isinstance(state, dict) or not isinstance(state.get("integrity"), dict):
        raise CheckpointError(f"{path} is not a splatgen checkpoint (no integrity record)")
    integrity = state.pop("integrity")
    if integrity.get("sha256") != state_digest(state):
        raise CheckpointError(f"{path} is corrupted (its checksum does not match its contents); it cannot be resumed")
    changes = identity_changes(str(integrity.get("config", "")), identity) if identity is not None else []
    if changes:
        raise CheckpointError(
            f"{path} was trained with another config ({describe_changes(changes)}); "
            "resume it with the config it was trained with"
        )
    missing = [key for key in REQUIRED_ENTRIES if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it cannot be resumed")
    check_rng(state["rng"], path)
    check_splats(state.get("splats"), path)
    check_optimizer_moments(state["splats"], state["optimizers"], path)
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path} holds NaN/Inf in {bad}; resuming it would diverge again")
    return state


def restore_checkpoint(state: TrainState, saved: dict[str, Any], path: Path) -> str | None:
    """Continue `state` (a fresh run's, same config) from a verified `load_checkpoint` result; returns
    a note when the random state could not be restored exactly (a resume on another device type)."""
    try:
        return state.load_state_dict(saved)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
        raise CheckpointError(
            f"{path} does not fit this run ({type(error).__name__}: {' '.join(str(error).split())[:160]})"
        ) from error


def check_rng(rng: Any, path: Path) -> None:
    """The random states must be byte tensors (CPU and step generator, each CUDA device's), as torch saves them."""

    def is_state(value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1 and value.numel() > 0

    cuda = rng.get("cuda", []) if isinstance(rng, dict) else None
    if (
        not isinstance(rng, dict)
        or not is_state(rng.get("torch"))
        or not is_state(rng.get("generator"))
        or not isinstance(rng.get("generator_device", "cpu"), str)
        or not isinstance(cuda, (list, tuple))
        or not all(is_state(device_state) for device_state in cuda)
    ):
        raise CheckpointError(f"{path} has no usable random state (rng); it cannot be resumed")


def check_splats(splats: Any, path: Path) -> None:
    """The Gaussians' tensors must agree on N and have their trailing shapes (a torn state does not)."""
    if not isinstance(splats, dict) or not all(isinstance(value, torch.Tensor) for value in splats.values()):
        raise CheckpointError(f"{path} has no Gaussians")
    missing = sorted((set(SPLAT_TRAILING_SHAPES) | {"shN"}) - set(splats))
    if missing:
        raise CheckpointError(f"{path} lacks the Gaussians' {', '.join(missing)}")
    count = splats["means"].shape[0] if splats["means"].dim() else -1
    for key, value in splats.items():
        trailing = SPLAT_TRAILING_SHAPES.get(key)
        shape_ok = value.dim() >= 1 and value.shape[0] == count
        if key == "shN":
            shape_ok = shape_ok and value.dim() == 3 and value.shape[2] == 3
        elif trailing is not None:
            shape_ok = shape_ok and tuple(value.shape[1:]) == trailing
        if not shape_ok:
            raise CheckpointError(
                f"{path} is inconsistent: {key} has shape {tuple(value.shape)} but means has {count} rows"
            )


def check_optimizer_moments(splats: dict, optimizers: Any, path: Path) -> None:
    """Each Adam moment must have its parameter's shape (a refinement cut short leaves them apart)."""
    if not isinstance(optimizers, dict) or set(optimizers) != set(splats):
        raise CheckpointError(f"{path} has optimiser states for {sorted(optimizers)} but Gaussians {sorted(splats)}")
    for key, optimizer in optimizers.items():
        moments = optimizer.get("state", {}) if isinstance(optimizer, dict) else {}
        for per_parameter in moments.values():
            for name, value in per_parameter.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != splats[key].shape:
                    raise CheckpointError(
                        f"{path} is inconsistent: the optimiser's {key}.{name} has shape {tuple(value.shape)} "
                        f"but {key} has {tuple(splats[key].shape)}"
                    )


def state_digest(state: Any) -> str:
    """sha256 over a nested state (dict keys sorted; tensors by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"S{value!r}".encode())


def first_non_finite(value: Any, where: str = "") -> str | None:
    """The path of the first floating tensor or float holding NaN/Inf, or None."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return where or "the state"
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else where
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = first_non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def identity_changes(saved: str, current: str) -> list[str]:
    """ "prompt: 'a red apple' -> 'a pear'" for each field the two identity YAML texts disagree on.

    Fields present on one side only are not changes (a splatgen upgrade added or removed them).
    """
    import yaml

    try:
        before, after = _flatten(yaml.safe_load(saved) or {}), _flatten(yaml.safe_load(current) or {})
    except yaml.YAMLError:
        return ["its config record is unreadable"]
    return [
        f"{key}: {before[key]!r} -> {after[key]!r}"
        for key in sorted(set(before) & set(after))
        if before[key] != after[key]
    ]


def describe_changes(changes: list[str], limit: int = 3) -> str:
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _load_failure(error: Exception) -> str:
    """torch's message, minus its advice to retry with weights_only=False (which would run the file's code)."""
    text = " ".join(str(error).split())
    if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
        return "it holds code or objects other than tensors, refused for safety (do not load it with pickle)"
    return f"{type(error).__name__}: {text[:200]}"


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value
