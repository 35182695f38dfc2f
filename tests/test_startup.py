"""Commands answer at once: `--help`, `train --help` and one-line user errors import neither torch
nor the model libraries (a structural property, checked in a fresh interpreter; timings are in
`scripts/bench_startup.py` and docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "viser",
    "gsplat",
    "numpy",
    "scipy",
    "safetensors",
    "huggingface_hub",
    "trimesh",
    "lpips",
)

PROBE = """
import json, sys
from splatgen.cli import main
try:
    status = main(json.loads(sys.argv[1]))
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "loaded": [m for m in HEAVY_NAMES if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY_NAMES", repr(HEAVY))


def probe(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_library():
    code = f"import sys, splatgen.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["export", "--help"],
        ["train", "prior:mvdream", "--help"],
        ["eval", "--help"],
        ["report", "--help"],
        ["compare", "--help"],
        ["trian"],
        ["evl"],
        ["train", "--prompt", "a corgi", "--steps", "0"],
        ["train", "--preset", "no-such-preset", "--prompt", "a corgi"],
        ["export", "in.ply", "--out", "out.xyz"],
        ["export", "missing.ply", "--out", "out.ply"],
        ["export", "missing.ply", "--out", "out.glb"],
        ["export", "assets/sample.ply", "--out", "out.glb", "--frame", "blender"],
        ["render", "missing.splat", "--out", "renders"],
        ["view", "missing.ply"],
        ["eval"],
        ["eval", "missing-run"],
    ],
    ids=[
        "help",
        "train-help",
        "export-help",
        "mvdream-help",
        "eval-help",
        "report-help",
        "compare-help",
        "typo",
        "typo-eval",
        "bad-value",
        "bad-preset",
        "bad-format",
        "export-missing",
        "mesh-missing",
        "mesh-frame",
        "render-missing",
        "view-missing",
        "eval-nothing",
        "eval-missing",
    ],
)
def test_help_and_one_line_errors_do_not_import_torch(args):
    result = probe(args)
    expected = 0 if "--help" in args else 2
    assert result["status"] == expected and result["loaded"] == [], result


def test_bench_startup_reads_the_import_profile():
    """scripts/bench_startup.py: its import summary sees that --help imports no torch, and it times a run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_startup", REPO / "scripts" / "bench_startup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    profile = bench.import_profile(["--help"])
    assert profile["imports_torch"] is False and any(name.startswith("splatgen") for name in profile["top_imports_ms"])
    wall, cpu = bench.time_once(["--help"])
    assert 0.0 < wall < 120.0 and 0.0 < cpu < 120.0
