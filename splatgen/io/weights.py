"""Which model weight files splatgen will read: safetensors only, never pickled `.bin` / `.pt` files.

A pickle can run code when loaded; safetensors holds only tensors. Every `from_pretrained` call in
splatgen passes `use_safetensors=True`; `pickled_only(folder)` names what a local folder offers
instead, so the refusal can say what was found.
"""

from __future__ import annotations

from pathlib import Path

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def pickled_only(folder: str | Path) -> list[str]:
    """The pickled weight files under `folder` (relative paths) when it holds no `.safetensors`; else []."""
    root = Path(folder).expanduser()
    if not root.is_dir() or any(root.rglob("*.safetensors")):
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.suffix in PICKLED_SUFFIXES)


def pickled_refusal(folder: str | Path) -> str | None:
    """'only PyTorch pickle weights (pytorch_model.bin); splatgen loads safetensors only', or None."""
    found = pickled_only(folder)
    if not found:
        return None
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return f"it has only pickled PyTorch weights ({shown}); splatgen loads safetensors only"
