"""Time the renderer: forward + backward of `splatgen.render.rasterize` per Gaussian count and resolution.

The scene is splatgen's default initialisation (`BallInit`: Gaussians uniform in a ball of radius
0.5, opacity 0.1, SH degree 3 with zero higher bands), seen from an evaluation orbit at distance
2.75 with a 50 degree field of view; the loss is the sum of the rendered images. Each setting runs
`--warmup` untimed iterations, then reports the median of `--repeats` timed ones, in milliseconds.

    .venv/bin/python scripts/bench_render.py                       # 2k Gaussians at 64 and 128 px, CPU
    .venv/bin/python scripts/bench_render.py --counts 2000 8000 --resolutions 64 128 256 --threads 2
    .venv/bin/python scripts/bench_render.py --device cuda --backend gsplat --json
    .venv/bin/python scripts/bench_render.py --schedule 0:128,0.3:256,0.6:512 --cameras 4   # progressive resolution

`--schedule` times each milestone's resolution and the last one, and reports the rendering time of a
`--steps` run with the schedule against one at the last resolution throughout (`--render-schedule`).

`--json` prints one JSON line with every setting's result instead of a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import evaluation_orbit
from splatgen.scene.gaussians import activate
from splatgen.scene.init import BallInit, random_ball


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_render(
    count: int, resolution: int, num_cameras: int, backend: str, device: torch.device, warmup: int, repeats: int
) -> dict:
    """Median forward, backward and total milliseconds for one (count, resolution) setting."""
    splats = random_ball(BallInit(count=count), sh_degree=3, generator=torch.Generator().manual_seed(0)).to_parameters(
        device
    )
    cameras = evaluation_orbit(num_cameras, resolution, resolution).to(device)
    backgrounds = make_backgrounds("white", num_cameras, device=device)
    forward_ms, backward_ms = [], []
    for iteration in range(warmup + repeats):
        synchronize(device)
        start = time.perf_counter()
        out = rasterize(activate(splats), cameras, backgrounds, backend=backend)
        synchronize(device)
        middle = time.perf_counter()
        out.images.sum().backward()
        synchronize(device)
        end = time.perf_counter()
        splats.zero_grad()
        if iteration >= warmup:
            forward_ms.append(1e3 * (middle - start))
            backward_ms.append(1e3 * (end - middle))
    totals = [f + b for f, b in zip(forward_ms, backward_ms)]
    return {
        "gaussians": count,
        "resolution": resolution,
        "cameras": num_cameras,
        "forward_ms": round(statistics.median(forward_ms), 2),
        "backward_ms": round(statistics.median(backward_ms), 2),
        "total_ms": round(statistics.median(totals), 2),
    }


def parse_schedule(text: str) -> list[tuple[float, int]]:
    """'0:128,0.3:256,0.6:512' -> [(0.0, 128), (0.3, 256), (0.6, 512)]."""
    milestones = []
    for item in text.split(","):
        progress, size = item.split(":")
        milestones.append((float(progress), int(size)))
    return milestones


def schedule_saving(results: list[dict], schedule: list[tuple[float, int]], steps: int) -> dict:
    """Rendering seconds of a `steps`-step run with the schedule vs at its last size throughout (one count)."""
    per_step_ms = {row["resolution"]: row["total_ms"] for row in results}
    final = schedule[-1][1]
    scheduled_ms = 0.0
    for index, (progress, size) in enumerate(schedule):
        end = schedule[index + 1][0] if index + 1 < len(schedule) else 1.0
        scheduled_ms += (round(end * steps) - round(progress * steps)) * per_step_ms[size]
    constant_ms = steps * per_step_ms[final]
    return {
        "schedule": schedule,
        "steps": steps,
        "scheduled_render_s": round(scheduled_ms / 1e3, 1),
        "constant_render_s": round(constant_ms / 1e3, 1),
        "ratio": round(scheduled_ms / constant_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000], help="Gaussian counts")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128], help="square image sizes in pixels")
    parser.add_argument("--cameras", type=int, default=1, help="cameras rendered per call")
    parser.add_argument("--backend", choices=["auto", "torch", "gsplat"], default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    parser.add_argument("--schedule", default=None, help="progressive resolution, e.g. 0:128,0.3:256,0.6:512")
    parser.add_argument("--steps", type=int, default=1200, help="with --schedule: steps of the run")
    args = parser.parse_args()
    schedule = parse_schedule(args.schedule) if args.schedule else None
    if schedule is not None:
        args.resolutions = sorted({size for _, size in schedule})
        args.counts = args.counts[:1]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = [
        time_render(count, resolution, args.cameras, args.backend, device, args.warmup, args.repeats)
        for count in args.counts
        for resolution in args.resolutions
    ]
    context = {
        "device": str(device),
        "backend": args.backend,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    saving = schedule_saving(results, schedule, args.steps) if schedule is not None else None
    if args.json:
        print(json.dumps({**context, "results": results, **({"schedule": saving} if saving else {})}))
        return
    print(", ".join(f"{key} {value}" for key, value in context.items()))
    print(f"{'gaussians':>10} {'res':>5} {'cams':>5} {'fwd ms':>9} {'bwd ms':>9} {'total ms':>9}")
    for row in results:
        print(
            f"{row['gaussians']:>10} {row['resolution']:>5} {row['cameras']:>5} "
            f"{row['forward_ms']:>9.1f} {row['backward_ms']:>9.1f} {row['total_ms']:>9.1f}"
        )
    if saving is not None:
        print(
            f"schedule {args.schedule} over {saving['steps']} steps: rendering {saving['scheduled_render_s']} s "
            f"vs {saving['constant_render_s']} s at {schedule[-1][1]} px throughout (ratio {saving['ratio']})"
        )


if __name__ == "__main__":
    main()
