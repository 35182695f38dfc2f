"""Measure how the prior's dtype biases the VSD/ESD LoRA gradient: exact zeros and bias against fp32.

For each dtype the same prior (tiny random SD-shaped pipeline, or the full SD 2.1-base
architecture with random weights) gets the same LoRA weights and the same inputs, and one LoRA
gradient is compared with the fp32 one (`splatgen.prior.precision`):

- `zero_fraction`: gradient entries that are exactly 0 where the fp32 gradient is not;
- `scale`: <g, g32> / <g32, g32>, 1 = unbiased on average, < 1 = shrunk by underflow;
- `relative_error`: ||g - g32|| / ||g32||.

    .venv/bin/python scripts/precision_probe.py                                   # CPU, tiny, a table
    .venv/bin/python scripts/precision_probe.py --device cuda --architecture sd21 --json

Defaults: batch 4 at a 512x512 prior size (64x64 latents: what a training step's LoRA loss
averages over). `--json` prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from splatgen.prior.precision import lora_gradient_precision
from splatgen.prior.stable_diffusion import StableDiffusionConfig, StableDiffusionPrior
from splatgen.tiny_models import TINY_MODEL_ID, resolve_sd_model
from splatgen.train.assemble import quiet_library_progress_bars

REPO = Path(__file__).resolve().parent.parent
DTYPES = ("fp32", "bf16", "fp16")


def prior_factory(architecture: str, device: torch.device, image_size: int):
    def make_prior(dtype: str) -> StableDiffusionPrior:
        if architecture == "sd21":
            config = StableDiffusionConfig(dtype=dtype, image_size=image_size)
            return StableDiffusionPrior.with_random_sd21_base_weights(config, device)
        config = StableDiffusionConfig(model=resolve_sd_model(TINY_MODEL_ID), dtype=dtype, image_size=image_size)
        return StableDiffusionPrior.from_config(config, device)

    return make_prior


def commit() -> str | None:
    try:
        command = ["git", "rev-parse", "--short", "HEAD"]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--architecture", choices=["tiny", "sd21"], default="tiny", help="the UNet probed")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES), help="dtypes compared with fp32")
    parser.add_argument("--batch", type=int, default=4, help="latents per LoRA loss (default: 4)")
    parser.add_argument("--image-size", type=int, default=512, help="prior image size; latents are 1/8 (default: 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of a table")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU")
    if args.batch < 1 or args.image_size < 8 or args.image_size % 8:
        parser.error("--batch must be >= 1 and --image-size a positive multiple of 8")
    quiet_library_progress_bars()
    make_prior = prior_factory(args.architecture, device, args.image_size)
    results = lora_gradient_precision(make_prior, args.dtype, args.batch, args.seed)
    record = {
        "architecture": args.architecture,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "batch": args.batch,
        "latent_size": args.image_size // 8,
        "torch": torch.__version__,
        "commit": commit(),
        "results": [result.as_dict() for result in results],
    }
    if args.json:
        print(json.dumps(record), flush=True)
    else:
        print(
            f"LoRA gradient vs fp32: {args.architecture} UNet, batch {args.batch}, {args.image_size // 8}x"
            f"{args.image_size // 8} latents, {record['device']}, torch {record['torch']}, commit {record['commit']}"
        )
        print(f"  {'dtype':<6}{'zero_fraction':>15}{'scale':>10}{'relative_error':>16}{'loss':>10}")
        for result in results:
            print(
                f"  {result.dtype:<6}{result.zero_fraction:>15.4f}{result.scale:>10.4f}"
                f"{result.relative_error:>16.4f}{result.loss:>10.4f}"
            )
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
