"""Distil a known Gaussian asset through the full training loop with an oracle prior, and score it.

    .venv/bin/python scripts/oracle_fit.py --target assets/sample.ply --out /tmp/oracle [--steps N]
        [--seed S] [--growth relative:RATIO | absolute:GRAD2D]

The oracle prior knows the target: for each sampled camera it renders the target and predicts
exactly the noise that leads from that render to x_t (`splatgen.prior.oracle`). Everything else
is the production loop (`splatgen.train.train`): orbit cameras, the renderer, noise and
timesteps, the SDS-form gradient (guidance 1), Adam, densification and pruning, checkpoints and
the PLY export. Starting from a random ball, the result must match the target on views never
used for training; the last line printed is a JSON object with `psnr` (mean over the held-out
views, dB), `seconds` and the run's numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from splatgen.errors import SplatgenError
from splatgen.io.ply import read_ply
from splatgen.objectives import SDS
from splatgen.objectives.schedules import TimestepSchedule
from splatgen.prior.oracle import OraclePrior
from splatgen.prompts import PromptConfig
from splatgen.render import rasterize
from splatgen.scene.cameras import OrbitSampler, evaluation_orbit
from splatgen.scene.densify import AbsoluteGrowth, DensifyConfig, Growth, RelativeGrowth
from splatgen.scene.gaussians import Gaussians, activate
from splatgen.scene.init import BallInit
from splatgen.train.config import TrainConfig
from splatgen.train.optim import OptimConfig
from splatgen.viewer import ViewerConfig

BACKGROUND = (1.0, 1.0, 1.0)


def oracle_config(
    out: Path, steps: int, resolution: int, seed: int, device: str, growth: Growth | None = None
) -> TrainConfig:
    """The production config with the settings of a reconstruction: guidance 1, fixed background."""
    return TrainConfig(
        prompt="oracle reconstruction",
        out=out,
        steps=steps,
        seed=seed,
        batch_size=4,
        render_size=resolution,
        background="white",
        objective=SDS(
            guidance_scale=1.0, weighting="sds", timesteps=TimestepSchedule(min_fraction=0.02, max_fraction=0.98)
        ),
        prompts=PromptConfig(debias=False),
        init=BallInit(count=2000, radius=0.8, opacity=0.3),
        cameras=OrbitSampler(elevation_range=(-30.0, 60.0), distance_range=(2.5, 3.0), fovy_range=(45.0, 55.0)),
        densify=DensifyConfig(
            growth=growth if growth is not None else RelativeGrowth(),
            start_fraction=0.1,
            stop_fraction=0.7,
            refine_every=25,
            max_gaussians=5_000,
        ),
        optim=OptimConfig(means_lr=2e-3, means_lr_final=2e-5, opacities_lr=0.05, scales_lr=0.01, sh0_lr=0.02),
        device=device,
        checkpoint_every=max(steps, 1),
        log_every=max(steps // 10, 1),
        video_frames=0,
        viewer=ViewerConfig(enabled=False),
    )


@torch.no_grad()
def held_out_psnr(
    asset: Gaussians, target: Gaussians, resolution: int, num_views: int = 8, device: str = "cpu"
) -> list[float]:
    """PSNR (dB) per view on a fixed orbit offset from the front by half a step: views the random
    training cameras never hit exactly, at an elevation of 20 degrees."""
    cameras = evaluation_orbit(
        num_views,
        resolution,
        resolution,
        elevation_deg=20.0,
        distance=2.75,
        fovy_deg=50.0,
        start_azimuth_deg=180.0 / num_views,
    ).to(device)
    background = torch.tensor(BACKGROUND, device=device).expand(num_views, 3)
    images = [
        rasterize(activate(g.to_parameters(device)), cameras, background).images.clamp(0, 1) for g in (asset, target)
    ]
    mse = ((images[0] - images[1]) ** 2).flatten(1).mean(dim=1)  # [V]
    return [float(-10.0 * math.log10(max(value, 1e-10))) for value in mse]


def parse_growth(spec: str) -> Growth:
    """`relative:RATIO` (the product's scale-free rule) or `absolute:GRAD2D` (gsplat's fixed threshold)."""
    kind, _, value = spec.partition(":")
    rules = {"relative": RelativeGrowth, "absolute": AbsoluteGrowth}
    if kind not in rules:
        raise argparse.ArgumentTypeError(f"--growth must be relative:RATIO or absolute:GRAD2D, got {spec!r}")
    if not value:
        return rules[kind]()
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--growth needs a number after '{kind}:', got {value!r}") from None
    return rules[kind](number)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, default=Path("assets/sample.ply"), help="the asset to reconstruct (PLY)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=int, default=150, help="training steps")
    parser.add_argument("--resolution", type=int, default=64, help="render size for training and scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--growth",
        type=parse_growth,
        default=RelativeGrowth(),
        help="densify growth rule: relative:RATIO (default, the product's) or absolute:GRAD2D (e.g. absolute:0.15)",
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        from splatgen.train.assemble import resolve_device
        from splatgen.train.loop import train

        device = resolve_device(args.device)
        target = read_ply(args.target)
        config = oracle_config(args.out, args.steps, args.resolution, args.seed, args.device, args.growth)
        prior = OraclePrior(target, args.resolution, background=BACKGROUND, device=device)
        started = time.perf_counter()
        result = train(config, prior=prior, console=console)
        seconds = time.perf_counter() - started
        psnrs = held_out_psnr(read_ply(result.ply_path), target, args.resolution, device=str(device))
    except SplatgenError as error:
        console.print(f"[bold red]error:[/] {error}")
        return 2
    summary = {
        "psnr": sum(psnrs) / len(psnrs),
        "psnr_per_view": [round(value, 2) for value in psnrs],
        "seconds": round(seconds, 1),
        "steps": result.steps_completed,
        "gaussians": len(read_ply(result.ply_path)),
        "target_gaussians": len(target),
        "resolution": args.resolution,
        "seed": args.seed,
        "growth": f"{args.growth.config_name}:{args.growth.threshold}",
        "ply": str(result.ply_path),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
