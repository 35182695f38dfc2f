"""Presets ship inside the package: each names only what differs from the defaults, and
`--preset NAME` works from any directory and from an installed wheel; `--preset path.yaml` too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from splatgen.cli import PRESETS_DIR, parse_train_args
from splatgen.io.config_file import from_dict, load_yaml, to_dict
from splatgen.objectives import OBJECTIVES
from splatgen.train.config import TrainConfig

PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


def leaves(data: dict, path: tuple[str, ...] = ()):
    """(path, value) of every leaf of a nested mapping; `type` keys (they choose a class) are not leaves."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from leaves(value, (*path, key))
        elif key != "type":
            yield (*path, key), value


def without(data: dict, path: tuple[str, ...]) -> dict:
    """A copy of `data` with the leaf at `path` removed."""
    copy = {key: (dict(value) if isinstance(value, dict) else value) for key, value in data.items()}
    if len(path) == 1:
        copy.pop(path[0])
    else:
        copy[path[0]] = without(data[path[0]], path[1:])
    return copy


def test_presets_ship_in_the_package_one_per_objective_and_smoke():
    assert PRESETS_DIR == REPO / "splatgen" / "presets"
    assert {preset.stem for preset in PRESETS} >= {*OBJECTIVES, "smoke"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_each_preset_sets_only_what_differs_from_the_defaults(preset):
    data = load_yaml(preset)
    config = to_dict(from_dict(TrainConfig, data))
    redundant = [
        ".".join(path) for path, _ in leaves(data) if to_dict(from_dict(TrainConfig, without(data, path))) == config
    ]
    assert not redundant, f"{preset.name} repeats defaults: {', '.join(redundant)}"


def test_a_preset_by_name_from_another_directory_and_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = parse_train_args(["--preset", "vsd", "--prompt", "a corgi"])
    assert by_name.objective == OBJECTIVES["vsd"]() and not by_name.prompts.debias
    custom = tmp_path / "mine.yaml"
    custom.write_text("steps: 7\nobjective:\n  type: sds\n  guidance_scale: 20.0\n", encoding="utf-8")
    by_path = parse_train_args(["--preset", str(custom), "--prompt", "a corgi", "--steps", "9"])
    assert by_path.steps == 9 and by_path.objective == OBJECTIVES["sds"](guidance_scale=20.0)


@pytest.mark.slow
def test_preset_by_name_from_an_installed_wheel(tmp_path, tiny_models):
    """Build the wheel, install it (no dependencies: the test environment has them) into a folder of
    its own, and train with `--preset smoke` from an unrelated directory with only that install on the path."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "splatgen", source / "splatgen", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)], check=True)
    (wheel,) = tmp_path.glob("splatgen-*.whl")
    installed = tmp_path / "installed"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(installed), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = elsewhere / "run"
    code = (
        "import sys, splatgen, splatgen.cli; print('package', splatgen.__file__); "
        "sys.exit(splatgen.cli.main(sys.argv[1:]))"
    )
    arguments = ["train", "--preset", "smoke", "--prompt", "a red apple", "--out", str(out)]
    arguments += ["--steps", "2", "--video-frames", "0", "--no-viewer"]
    environment = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"package {installed / 'splatgen' / '__init__.py'}" in completed.stdout
    assert (installed / "splatgen" / "presets" / "smoke.yaml").is_file()
    assert (out / "a-red-apple.ply").is_file()
    saved = from_dict(TrainConfig, load_yaml(out / "config.yaml"))
    assert saved.prior.model == "tiny-random" and saved.render_size == 64 and saved.steps == 2
