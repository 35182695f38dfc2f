"""SHA-256 of the PLY of short CPU training runs, one per objective: checks that a refactor changes no output.

Runs the smoke preset (60 steps, D-SDS, refinements, checkpoints) and 12-step runs of SDS, VSD,
ESD, SSD, CSD with its negative term and D-SDS with interpolated view prompts, all on the tiny
random models, and prints `name sha256 steps` per run. Run it on two checkouts and diff:

    PYTHONPATH=. .venv/bin/python scripts/ply_digests.py > after.txt
    git worktree add /tmp/before <commit> && PYTHONPATH=/tmp/before .venv/bin/python scripts/ply_digests.py > before.txt
    diff before.txt after.txt

The script reads the checkout it is imported from (`splatgen.__file__`), so one copy serves both.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

import splatgen
from splatgen.io.config_file import from_dict, load_yaml
from splatgen.objectives import CSD, ESD, SDS, SSD, VSD
from splatgen.tiny_models import default_tiny_models_dir, make_tiny_models
from splatgen.train.config import TrainConfig
from splatgen.train.loop import train
from splatgen.viewer import ViewerConfig


def main() -> None:
    make_tiny_models(default_tiny_models_dir())
    smoke = Path(splatgen.__file__).parent / "presets" / "smoke.yaml"
    base = from_dict(TrainConfig, load_yaml(smoke))
    cases = {
        "smoke60": {},
        "sds": dict(steps=12, objective=SDS()),
        "vsd": dict(steps=12, objective=VSD()),
        "esd": dict(steps=12, objective=ESD()),
        "ssd": dict(steps=12, objective=SSD()),
        "csdneg": dict(steps=12, objective=CSD(negative_weight=0.5)),
        "interp": dict(steps=12, prompts=replace(base.prompts, interpolate_views=True)),
    }
    quiet = Console(file=open(os.devnull, "w"))
    with tempfile.TemporaryDirectory(prefix="splatgen-digests-") as out:
        for name, changes in cases.items():
            config = replace(
                base,
                prompt="a red apple",
                out=Path(out) / name,
                video_frames=0,
                viewer=ViewerConfig(enabled=False),
                **changes,
            )
            result = train(config, console=quiet)
            print(name, hashlib.sha256(result.ply_path.read_bytes()).hexdigest(), result.steps_completed, flush=True)


if __name__ == "__main__":
    main()
