"""The full-size SD 2.1-base architecture (random weights, `assets/sd21_base/`) through `splatgen train`.

The folder is written once (fp16 safetensors, ~2.6 GB, in the test tiny-models cache shared by
sessions) and loaded by the normal code path (`--prior.model` = a local folder, via the reserved
name `sd21-base-random`); the run is fp32 on the CPU, 64 px renders and prior images, batch 1, 2 steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from splatgen.cli import main
from splatgen.io.ply import read_ply
from splatgen.prior.tiny import is_complete_sd_folder
from splatgen.tiny_models import SD21_RANDOM_ID, default_tiny_models_dir, resolve_sd_model


@pytest.fixture(scope="session")
def sd21_base_random_folder():
    return resolve_sd_model(SD21_RANDOM_ID)


@pytest.mark.slow
def test_full_size_sd21_base_architecture_trains_two_steps(sd21_base_random_folder, tmp_path, capsys):
    folder = default_tiny_models_dir() / SD21_RANDOM_ID
    assert sd21_base_random_folder == str(folder) and is_complete_sd_folder(folder)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    assert unet_config["block_out_channels"] == [320, 640, 1280, 1280] and unet_config["cross_attention_dim"] == 1024
    out = tmp_path / "run"
    # `sd21-base-random` is a reserved name: the same folder, read with from_pretrained like any local folder.
    args = ["train", "--prompt", "a red apple", "--prior.model", SD21_RANDOM_ID, "--prompts.lm", "tiny-random"]
    args += ["--steps", "2", "--batch-size", "1", "--render-size", "64", "--prior.image-size", "64"]
    args += ["--device", "cpu", "--video-frames", "0", "--no-viewer", "--log-every", "1", "--out", str(out)]
    args += ["--init.count", "500"]
    assert main(args) == 0, capsys.readouterr().out
    text = capsys.readouterr().out
    assert f"loading Stable Diffusion from {folder}" in " ".join(text.split())
    gaussians = read_ply(out / "a-red-apple.ply")
    assert len(gaussians.means) == 500 and np.isfinite(gaussians.means.numpy()).all()
    assert (out / "checkpoints" / "last.pt").is_file()
