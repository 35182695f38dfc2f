"""LPIPS against the reference `lpips` package (0.1.4), and A-LPIPS's known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from splatgen.errors import SplatgenError
from splatgen.eval.lpips import LPIPS, consecutive_lpips

REFERENCE = json.loads((Path(__file__).parent / "data" / "lpips_reference.json").read_text())


def _reference_backbone(model: LPIPS) -> None:
    """The backbone the reference numbers were computed with (see the fixture's seed_note)."""
    with torch.no_grad():
        for name, parameter in model.features.named_parameters():
            index, kind = name.split(".")
            seed = 1000 + 10 * int(index) + (0 if kind == "weight" else 1)
            values = np.random.RandomState(seed).standard_normal(tuple(parameter.shape)).astype(np.float32) * 0.05
            parameter.copy_(torch.from_numpy(values))


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_equals_the_reference_package(net):
    """tests/data/lpips_reference.json: `lpips.LPIPS(net, pnet_rand=True)` with the same backbone tensors."""
    model = LPIPS(net, backbone="random")
    _reference_backbone(model)
    first = torch.from_numpy(np.random.RandomState(7).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32))
    second = 0.5 * first + 0.5 * torch.from_numpy(
        np.random.RandomState(8).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    )
    with torch.no_grad():
        distances = model(first, second)
        same = model(first, first)
    torch.testing.assert_close(distances, torch.tensor(REFERENCE["distances"][net]), rtol=1e-4, atol=1e-6)
    assert same.abs().max() == 0


def test_imagenet_backbone_missing_is_one_clear_line(tmp_path):
    with pytest.raises(SplatgenError, match="vgg16-397923af.pth") as error:
        LPIPS("vgg", backbone_path=tmp_path / "missing.pth")
    assert "\n" not in str(error.value)
    torch.save({"classifier.0.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(SplatgenError, match="no features"):
        LPIPS("alex", backbone_path=tmp_path / "other.pth")


def test_torchvision_checkpoint_keys_load(tmp_path):
    """A checkpoint in torchvision's layout (features.N.weight / .bias) loads into the backbone."""
    model = LPIPS("alex", backbone="random", seed=3)
    state = {f"features.{key}": value + 1.0 for key, value in model.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 4)
    torch.save(state, tmp_path / "alexnet-owt-7be5be79.pth")
    loaded = LPIPS("alex", backbone_path=tmp_path / "alexnet-owt-7be5be79.pth")
    torch.testing.assert_close(loaded.features[0].weight, model.features[0].weight + 1.0)


def test_consecutive_distances_of_a_constant_turntable_are_zero():
    model = LPIPS("alex", backbone="random")
    frames = torch.rand(1, 3, 64, 64).expand(5, 3, 64, 64) * 2 - 1
    distances = consecutive_lpips(model, frames, batch_size=3)
    assert distances.shape == (4,) and distances.abs().max() == 0
