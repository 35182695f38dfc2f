"""Time the mesh exporter (`splatgen export x.glb`) on a 100,000-Gaussian asset, stage by stage.

The asset is `scripts/make_sample_asset.py`'s character at 100,000 Gaussians (the size a 512x512
run reaches), built in memory; meshing runs `splatgen.export.mesh.mesh_from_gaussians` with the
default `MeshOptions` (or the resolutions given) and writes the .glb, which is timed too. Prints
one line per resolution with the wall seconds of each stage, the CPU seconds the process used
(user + system: on a busy shared machine this is the steadier figure; a compute-bound run on an idle one
takes roughly between CPU seconds / threads and CPU seconds of wall time), the load average and the peak RSS.

    .venv/bin/python scripts/bench_mesh.py                          # default resolution (128), 2 threads
    .venv/bin/python scripts/bench_mesh.py --resolutions 64 128 256 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample_asset import make_sample_asset  # noqa: E402

from splatgen.export import MeshOptions  # noqa: E402
from splatgen.export.mesh import mesh_from_gaussians  # noqa: E402
from splatgen.export.writers import write_glb  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="Gaussians in the asset")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[MeshOptions().resolution])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", action="store_true", help="one JSON line per resolution")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gaussians = make_sample_asset(args.count, seed=0)
    for resolution in args.resolutions:
        options = replace(MeshOptions(), resolution=resolution)
        started = time.perf_counter()
        cpu_started = cpu_seconds()
        mesh = mesh_from_gaussians(gaussians, options)
        with tempfile.TemporaryDirectory() as folder:
            write_started = time.perf_counter()
            write_glb(mesh, Path(folder) / "asset.glb")
            size = (Path(folder) / "asset.glb").stat().st_size
            mesh.seconds["write .glb"] = time.perf_counter() - write_started
        result = {
            "gaussians": len(gaussians),
            "resolution": resolution,
            "seconds": round(time.perf_counter() - started, 1),
            "cpu_seconds": round(cpu_seconds() - cpu_started, 1),
            "stages": {stage: round(seconds, 1) for stage, seconds in mesh.seconds.items()},
            "triangles": len(mesh.faces),
            "glb_mb": round(size / 2**20, 1),
            "threads": args.threads,
            "load_average_1min": round(os.getloadavg()[0], 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        if args.json:
            print(json.dumps(result))
        else:
            stages = ", ".join(f"{stage} {seconds}" for stage, seconds in result["stages"].items())
            print(
                f"{result['gaussians']:,} Gaussians, resolution {resolution}: {result['seconds']} s wall, "
                f"{result['cpu_seconds']} s CPU ({stages}); "
                f"{result['triangles']:,} triangles, {result['glb_mb']} MB .glb; load {result['load_average_1min']}, "
                f"peak RSS {result['peak_rss_mb']} MB"
            )


if __name__ == "__main__":
    main()
