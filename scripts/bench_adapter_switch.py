"""Time one switch of the VSD/ESD LoRA adapters on the SD 2.1-base UNet: diffusers' calls vs `AdapterSwitch`.

diffusers' `disable_adapters()` / `enable_adapters()` walk every module of the UNet; splatgen's
`AdapterSwitch` flips the flag of the 128 LoRA layers it found once. The UNet is built on the
meta device (shapes only: switching never touches weights), so this needs no download and no GPU.

    .venv/bin/python scripts/bench_adapter_switch.py          # median of 40 calls each, one thread
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from peft import LoraConfig

from splatgen.prior.loading import random_sd21_base_components
from splatgen.prior.lora import LORA_TARGET_MODULES
from splatgen.prior.stable_diffusion import AdapterSwitch


def median_ms(call: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    unet = random_sd21_base_components(torch.float16, "meta").unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGET_MODULES), adapter_name="lora")
    switch = AdapterSwitch.of(unet)
    print(f"SD 2.1-base UNet: {sum(1 for _ in unet.modules()):,} modules, {len(switch.layers)} LoRA layers")
    calls = {
        "diffusers disable_adapters()": unet.disable_adapters,
        "diffusers enable_adapters()": unet.enable_adapters,
        "AdapterSwitch.set(False)": lambda: switch.set(False),
        "AdapterSwitch.set(True)": lambda: switch.set(True),
    }
    for name, call in calls.items():
        print(f"  {name:<30}{median_ms(call, args.repeats):9.3f} ms")


if __name__ == "__main__":
    main()
