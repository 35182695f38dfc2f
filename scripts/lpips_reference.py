"""Write tests/data/lpips_reference.json: distances from the reference `lpips` package (0.1.4).

Run it where `lpips` and a torchvision that imports are installed (e.g. a venv with torch 2.14.1
and torchvision 0.29.1); splatgen itself does not need either. The backbone is
`lpips.LPIPS(net, pnet_rand=True)` with every tensor replaced by seeded NumPy draws, so
`tests/test_lpips.py` can rebuild the same backbone in splatgen's LPIPS and compare.

    python scripts/lpips_reference.py
"""

import json
from pathlib import Path

import lpips
import numpy as np
import torch


def fill(shape, seed):
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32) * 0.05)


out = {
    "seed_note": "backbone tensor k of features index i: RandomState(1000 + 10 * i + k).standard_normal * 0.05",
    "inputs": "RandomState(7).uniform(-1, 1, (4, 3, 64, 64)) and RandomState(8)...",
    "distances": {},
}
x = torch.from_numpy(np.random.RandomState(7).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32))
y = torch.from_numpy(np.random.RandomState(8).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32))
y = 0.5 * x + 0.5 * y
for net in ("vgg", "alex"):
    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            slice_name, index, kind = name.split(".")
            p.copy_(fill(tuple(p.shape), 1000 + 10 * int(index) + (0 if kind == "weight" else 1)))
        d = model(x, y).flatten().tolist()
        z = model(x, x).flatten().tolist()
    out["distances"][net] = d
    print(net, d, z)
json.dump(out, open(Path(__file__).resolve().parent.parent / "tests" / "data" / "lpips_reference.json", "w"), indent=1)
