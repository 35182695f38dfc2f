"""How long `splatgen` takes to answer: `--help`, `train --help` and one-line errors, in fresh processes.

Each command runs N times (`python -m splatgen.cli ...`, so no console-script shim); the median
and the spread of wall time are reported, the median CPU time (user + system, which a busy
machine inflates much less than wall time), the `python -X importtime` top imports of one run and
whether torch was imported at all. Compare wall times only between equally quiet machines.

    python scripts/bench_startup.py --runs 7            # table
    python scripts/bench_startup.py --runs 7 --json     # one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "splatgen --help": ["--help"],
    "splatgen train --help": ["train", "--help"],
    "mistyped command (one-line error)": ["trian"],
    "bad train value (one-line error)": ["train", "--prompt", "a corgi", "--steps", "0"],
    "splatgen export --help": ["export", "--help"],
    "splatgen eval --help": ["eval", "--help"],
    "missing input file (one-line error)": ["render", "missing.ply", "--out", "renders"],
}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


SOURCE = REPO  # the checkout measured (--source)


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SOURCE), "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}


def time_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `python -m splatgen.cli ARGS`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "splatgen.cli", *args], capture_output=True, env=environment(), cwd=SOURCE, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_profile(args: list[str], top: int = 5) -> dict[str, object]:
    """The slowest top-level imports (cumulative microseconds) and whether torch was among all imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "splatgen.cli", *args],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=SOURCE,
        check=False,
    )
    modules = []
    for line in done.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            modules.append((match.group(4), int(match.group(2)), len(match.group(3))))
    top_level = sorted((m for m in modules if m[2] <= 1), key=lambda m: -m[1])[:top]
    return {
        "imports_torch": any(name == "torch" for name, _, _ in modules),
        "top_imports_ms": {name: round(cumulative / 1000, 1) for name, cumulative, _ in top_level},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--source", type=Path, default=REPO, help="splatgen checkout to measure (default: this one)")
    args = parser.parse_args()
    global SOURCE
    SOURCE = args.source.resolve()
    results = {}
    for label, command in COMMANDS.items():
        time_once(command)  # warm the file cache
        samples = [time_once(command) for _ in range(args.runs)]
        times = [wall for wall, _ in samples]
        results[label] = {
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "median_cpu_s": round(statistics.median(cpu for _, cpu in samples), 3),
            **import_profile(command),
        }
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "source": str(SOURCE),
        "runs": args.runs,
        "commands": results,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['machine']}; 1-min load average {report['load_average_1min']}; {args.runs} runs each")
    print(f"{'command':36} {'median s':>8} {'min s':>6} {'max s':>6} {'CPU s':>6}  torch  slowest imports (ms)")
    for label, row in results.items():
        slowest = ", ".join(f"{name} {ms}" for name, ms in row["top_imports_ms"].items())
        print(
            f"{label:36} {row['median_s']:8.2f} {row['min_s']:6.2f} {row['max_s']:6.2f} {row['median_cpu_s']:6.2f}  "
            f"{'yes' if row['imports_torch'] else 'no':5}  {slowest}"
        )


if __name__ == "__main__":
    main()
