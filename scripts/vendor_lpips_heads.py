"""Convert the LPIPS v0.1 calibration heads of the `lpips` package to safetensors for splatgen.

    pip download lpips==0.1.4 --no-deps -d /tmp/lpips && unzip -q /tmp/lpips/lpips-0.1.4-py3-none-any.whl -d /tmp/lpips
    python scripts/vendor_lpips_heads.py /tmp/lpips/lpips/weights/v0.1

writes splatgen/eval/weights/lpips_v0.1_{vgg,alex}.safetensors: the five 1x1 convolutions
(`lin{k}.model.1.weight`, [1, C_k, 1, 1]) of Zhang et al. 2018 as released in
https://github.com/richzhang/PerceptualSimilarity (BSD-2-Clause, copyright 2018 Richard Zhang,
Phillip Isola, Alexei A. Efros, Eli Shechtman, Oliver Wang; see splatgen/eval/weights/LICENSE).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "splatgen" / "eval" / "weights"


def main() -> None:
    source = Path(sys.argv[1])
    for net in ("vgg", "alex"):
        state = torch.load(source / f"{net}.pth", map_location="cpu", weights_only=True)
        heads = {f"lin{k}": state[f"lin{k}.model.1.weight"].float().contiguous() for k in range(5)}
        save_file(
            heads, OUT / f"lpips_v0.1_{net}.safetensors", metadata={"source": f"lpips 0.1.4 weights/v0.1/{net}.pth"}
        )
        print(f"wrote {OUT / f'lpips_v0.1_{net}.safetensors'}: {[tuple(v.shape) for v in heads.values()]}")


if __name__ == "__main__":
    main()
