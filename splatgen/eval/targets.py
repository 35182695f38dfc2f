"""What `splatgen eval` measures: a run folder (its PLY, prompt and view ranges) or a PLY with a prompt.

Read without torch, so a mistyped input is refused at once, before the models load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from splatgen.eval.settings import EvalInputError
from splatgen.io.run_folder import slugify
from splatgen.prompts.views import ViewPrompts, ViewRanges


@dataclass
class EvalTarget:
    """One asset to measure."""

    label: str
    ply: Path
    prompt: str
    ranges: ViewRanges = field(default_factory=ViewRanges)
    run_dir: Path | None = None


def resolve_target(path: Path, prompt: str | None = None) -> EvalTarget:
    """A run folder (PLY, prompt and view ranges from prompts.json) or a PLY (`prompt` required)."""
    path = Path(path)
    if path.is_dir():
        prompts_file = path / "prompts.json"
        if not prompts_file.is_file():
            raise EvalInputError(f"{path} is not a splatgen run folder (it has no prompts.json)")
        try:
            view_prompts = ViewPrompts.from_json(json.loads(prompts_file.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise EvalInputError(f"cannot read {prompts_file}: {error}") from error
        asset = path / f"{slugify(view_prompts.prompt)}.ply"  # the name train gives it (RunFolder.ply_path)
        plys = [asset] if asset.is_file() else sorted(path.glob("*.ply"))
        if not plys:
            raise EvalInputError(f"run folder {path} has no .ply yet (has its training finished or saved?)")
        return EvalTarget(path.name, plys[0], prompt or view_prompts.prompt, view_prompts.ranges, path)
    if path.suffix.lower() != ".ply" or not path.is_file():
        raise EvalInputError(f"{path} is neither a run folder nor a .ply file")
    if not prompt:
        raise EvalInputError(f"{path} is a bare PLY: say what it should show with --prompt TEXT")
    return EvalTarget(path.stem, path, prompt)
