"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", arXiv 1801.03924) and A-LPIPS over a turntable (D-SDS, Hong et al., arXiv 2303.15413).

LPIPS v0.1, exactly as the reference `lpips` package (0.1.4) computes it:

    x in [-1, 1]  ->  (x - shift) / scale                       (shift = [-.030, -.088, -.188],
                                                                  scale = [.458, .448, .450])
    f_l = backbone features after layer l (5 layers), unit-normalised over channels (eps 1e-10)
    d(x, y) = sum_l mean_{h,w} ( w_l . (f_l(x) - f_l(y))^2 )      (w_l: a 1x1 conv, no bias)

The backbones are torchvision's `vgg16().features` / `alexnet().features` with the same module
indices, so torchvision's ImageNet checkpoints load by key; the calibration heads w_l are the
package's `weights/v0.1/{vgg,alex}.pth`, shipped here as safetensors (BSD-2-Clause, see
`weights/LICENSE`; converted by `scripts/vendor_lpips_heads.py`). The `lpips` package itself is
not imported: it needs torchvision, whose PyPI build does not import beside a CPU-only torch.

A-LPIPS: the mean LPIPS between consecutive frames (i, i+1), i = 0..F-2, of a 360-degree
turntable of F = 100 frames, then averaged over objects (the D-SDS evaluation). Lower = fewer
jumps between neighbouring views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from torch import nn

from splatgen.errors import SplatgenError

Net = Literal["vgg", "alex"]
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
BACKBONE_FILES = {  # torchvision's ImageNet checkpoints (what lpips downloads at first use)
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
}
BACKBONE_URL = "https://download.pytorch.org/models/{name}"
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
ALEX_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # relu1 .. relu5


class LpipsUnavailable(SplatgenError):
    """The LPIPS backbone weights are missing or unreadable."""


def vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features` (3x3 convolutions, ReLU, 2x2 max-pools), up to relu5_3."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features` up to relu5 (the final max-pool is not used by LPIPS)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    )


def default_backbone_path(net: Net) -> Path:
    """Where torchvision (and so `lpips`) caches the ImageNet backbone: torch hub's checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def backbone_file(net: Net, path: Path | None) -> Path:
    """The backbone checkpoint to read (`path`, or torch hub's cache); `LpipsUnavailable` if it is not there.

    `splatgen eval` calls this before it loads CLIP, so a missing file is reported at once."""
    path = Path(path) if path is not None else default_backbone_path(net)
    if not path.is_file():
        name = BACKBONE_FILES[net]
        raise LpipsUnavailable(
            f"LPIPS ({net}) needs torchvision's ImageNet weights {name}, which are not at {path}: download "
            f"{BACKBONE_URL.format(name=name)} into {path.parent} on a machine with network (the `lpips` package "
            f"fetches the same file), or pass --lpips-backbone FILE"
        )
    return path


def load_backbone_state(net: Net, path: Path | None) -> dict[str, torch.Tensor]:
    """The `features.*` tensors of a torchvision checkpoint (a plain state dict, read with weights_only)."""
    path = backbone_file(net, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise LpipsUnavailable(f"cannot read the LPIPS backbone {path}: {type(error).__name__}: {error}") from error
    features = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    if not features:
        raise LpipsUnavailable(f"{path} is not a torchvision {net} checkpoint (it has no features.* weights)")
    return features


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; `forward(x, y)` takes [B, 3, H, W] images and returns [B].

    backbone: "imagenet" loads torchvision's weights (from `backbone_path` or torch hub's cache);
    "random" keeps a seeded random backbone, like `lpips.LPIPS(pnet_rand=True)` (tests only: the
    numbers mean nothing).
    """

    def __init__(
        self,
        net: Net = "vgg",
        backbone: Literal["imagenet", "random"] = "imagenet",
        backbone_path: Path | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if net not in BACKBONE_FILES:
            raise SplatgenError(f"LPIPS net must be 'vgg' or 'alex', got {net!r}")
        self.net_name = net
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = vgg16_features() if net == "vgg" else alexnet_features()
        self.slices = VGG16_SLICES if net == "vgg" else ALEX_SLICES
        if backbone == "imagenet":
            self.features.load_state_dict(load_backbone_state(net, backbone_path), strict=False)
        heads = load_file(WEIGHTS_DIR / f"lpips_v0.1_{net}.safetensors")
        self.heads = nn.ParameterList([nn.Parameter(heads[f"lin{k}"], requires_grad=False) for k in range(5)])
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])
        self.requires_grad_(False).eval()

    def layer_features(self, images: torch.Tensor) -> list[torch.Tensor]:  # images [B, 3, H, W] in [-1, 1]
        hidden = (images - self.shift) / self.scale
        outputs = []
        for start, end in self.slices:
            for index in range(start, end):
                hidden = self.features[index](hidden)
            outputs.append(hidden)  # [B, C_l, H_l, W_l]
        return outputs

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] x2 -> [B]
        total = first.new_zeros(first.shape[0])
        for feature_a, feature_b, head in zip(self.layer_features(first), self.layer_features(second), self.heads):
            unit_a = feature_a / (feature_a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            unit_b = feature_b / (feature_b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            weighted = nn.functional.conv2d((unit_a - unit_b).pow(2), head)  # [B, 1, H_l, W_l]
            total = total + weighted.mean(dim=(1, 2, 3))
        return total


@torch.no_grad()
def consecutive_lpips(
    lpips: LPIPS,
    frames: torch.Tensor,  # [F, 3, H, W], already in the network's input range
    batch_size: int = 8,
) -> torch.Tensor:  # [F - 1]
    """LPIPS between frames i and i + 1 for every i (the terms A-LPIPS averages)."""
    distances = []
    for start in range(0, frames.shape[0] - 1, batch_size):
        end = min(start + batch_size, frames.shape[0] - 1)
        distances.append(lpips(frames[start:end], frames[start + 1 : end + 1]))
    return torch.cat(distances) if distances else frames.new_zeros(0)
