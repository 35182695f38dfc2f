"""Items per hour of `splatgen batch` (models loaded once per worker) against one process per item.

Each mode runs the same N prompts with the smoke preset (tiny random models, CPU) in fresh
processes, timed end to end from the first process start to the last exit:

    ray        `splatgen batch P --engine ray --workers W`: a local Ray cluster, W actors
    local      `splatgen batch P --engine local`: one worker in the batch's own process
    per-item   `splatgen train --preset smoke --prompt ...` once per prompt, one after another
               (what a shell loop over prompts does: every item pays the process start and the model loads)

Prints one line per mode (a table, or JSON with --json): wall seconds, items per hour, and the
machine's load average before and after (a shared machine's figures move with it).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_batch.py
    .venv/bin/python scripts/bench_batch.py --items 8 --modes ray per-item --workers 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = (
    "a red apple",
    "a blue ceramic mug",
    "a green teapot",
    "a wooden chair",
    "a brass lantern",
    "a stone gargoyle",
    "a knitted wool hat",
    "a toy robot",
)
MODES = ("ray", "local", "per-item")


def splatgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "splatgen", *args]


def run(command: list[str]) -> None:
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if completed.returncode != 0:
        sys.exit(f"bench_batch: {' '.join(command)} failed ({completed.returncode}):\n{completed.stdout[-2000:]}")


def commands(mode: str, prompts: list[str], work: Path, workers: int, flags: list[str]) -> list[list[str]]:
    prompt_file = work / "prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    if mode == "ray":
        return [splatgen("batch", str(prompt_file), "--out", str(work / "out"), "--engine", "ray",
                         "--workers", str(workers), "--preset", "smoke", *flags)]  # fmt: skip
    if mode == "local":
        return [splatgen("batch", str(prompt_file), "--out", str(work / "out"), "--engine", "local",
                         "--preset", "smoke", *flags)]  # fmt: skip
    return [
        splatgen(
            "train", "--preset", "smoke", "--prompt", prompt, "--out", str(work / f"item{index}"), "--no-viewer", *flags
        )  # fmt: skip
        for index, prompt in enumerate(prompts)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4, help=f"prompts (at most {len(PROMPTS)})")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--workers", type=int, default=1, help="Ray workers (1: one item at a time, as the others)")
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    parser.add_argument("flags", nargs="*", help="extra train flags for every item, after --")
    args = parser.parse_args()
    prompts = list(PROMPTS[: args.items])
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    rows = []
    for mode in args.modes:
        with tempfile.TemporaryDirectory(prefix=f"bench-batch-{mode}-") as folder:
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            for command in commands(mode, prompts, Path(folder), args.workers, args.flags):
                run(command)
            wall = time.perf_counter() - started
            row = {
                "mode": mode,
                "items": len(prompts),
                "workers": args.workers if mode == "ray" else 1,
                "wall_s": round(wall, 1),
                "s_per_item": round(wall / len(prompts), 1),
                "items_per_hour": round(len(prompts) / wall * 3600, 1),
                "load_before": round(load_before, 1),
                "load_after": round(os.getloadavg()[0], 1),
                "env": env_note,
            }
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"{'mode':<9} {'items':>5} {'wall s':>7} {'s/item':>7} {'items/h':>8}  load before/after")
        for row in rows:
            print(
                f"{row['mode']:<9} {row['items']:>5} {row['wall_s']:>7} {row['s_per_item']:>7} "
                f"{row['items_per_hour']:>8}  {row['load_before']}/{row['load_after']}"
            )
    baseline = next((row for row in rows if row["mode"] == "per-item"), None)
    for row in rows:
        if baseline is not None and row is not baseline:
            ratio = row["items_per_hour"] / baseline["items_per_hour"]
            print(f"{row['mode']}: {ratio:.2f}x the items per hour of one process per item", file=sys.stderr)


if __name__ == "__main__":
    main()
