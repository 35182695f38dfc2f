"""Offline diagnosis: every missing model named in one line, quickly, with no hub retry loop.

The unreachable hub is simulated with `HF_ENDPOINT` pointing at a local port nothing listens on;
no traffic leaves the machine."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import replace

import pytest
from conftest import REPO
from huggingface_hub import constants
from test_train import QUIET, tiny_config

from splatgen.cli import main
from splatgen.prior.mvdream import MVDreamConfig
from splatgen.scene.shap_e import ShapEInit
from splatgen.train.availability import ModelsUnavailable, check_models_available, hub_reachable
from splatgen.train.loop import train


@pytest.fixture
def unreachable_hub(monkeypatch):
    """No HF_HUB_OFFLINE, and a hub endpoint that refuses connections; offline state restored afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return port


def test_probe_sees_the_closed_port(unreachable_hub):
    started = time.perf_counter()
    assert not hub_reachable()
    assert time.perf_counter() - started < 3.0


def test_every_missing_model_is_named_in_one_line_before_anything_loads(tmp_path, unreachable_hub):
    config = tiny_config(tmp_path / "run")
    config = replace(
        config,
        prior=replace(config.prior, model="example-org/not-a-cached-sd"),
        prompts=replace(config.prompts, debias=True, lm="example-org/not-a-cached-lm"),
        init=ShapEInit(model="example-org/not-a-cached-shap-e", count=1_000),
    )
    started = time.perf_counter()
    with pytest.raises(ModelsUnavailable) as error:
        train(config, console=QUIET)
    message = str(error.value)
    assert time.perf_counter() - started < 15.0  # a 2 s probe, then cache lookups: no retry loop
    assert "3 of the 3 models" in message and "cannot be reached" in message and "\n" not in message
    for setting in ("--prompts.lm example-org/not-a-cached-lm", "--prior.model example-org/not-a-cached-sd"):
        assert setting in message
    assert "--init.model example-org/not-a-cached-shap-e" in message and "--no-debias" in message
    for setting, name in (
        ("--prompts.lm", "example-org/not-a-cached-lm"),
        ("--prior.model", "example-org/not-a-cached-sd"),
        ("--init.model", "example-org/not-a-cached-shap-e"),
    ):  # each missing hub model: how to fetch it and which flag takes the copy
        assert f"`hf download {name} --local-dir DIR` and pass {setting} DIR" in message
    assert constants.HF_HUB_OFFLINE  # the loaders that follow would not retry either
    assert not (tmp_path / "run").exists()


def test_the_download_hint_names_only_the_missing_models(tmp_path, unreachable_hub, monkeypatch):
    config = tiny_config(tmp_path / "run")
    config = replace(
        config,
        prior=replace(config.prior, model="example-org/not-a-cached-sd"),
        prompts=replace(config.prompts, debias=True, lm="example-org/a-cached-lm"),
    )
    monkeypatch.setattr("splatgen.train.availability.cached", lambda model: model.name == "example-org/a-cached-lm")
    with pytest.raises(ModelsUnavailable) as error:
        check_models_available(config)
    message = str(error.value)
    assert message.startswith("1 of the 2 models this run needs is unavailable")
    assert "`hf download example-org/not-a-cached-sd --local-dir DIR` and pass --prior.model DIR" in message
    assert "a-cached-lm" not in message


def test_a_missing_local_folder_is_reported_without_a_probe(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "run")
    config = replace(config, prior=replace(config.prior, model=str(tmp_path / "no-sd-here")))
    monkeypatch.setattr("splatgen.train.availability.hub_reachable", lambda: pytest.fail("probed the hub"))
    with pytest.raises(ModelsUnavailable, match="--prior.model .*no-sd-here: no such folder"):
        check_models_available(config)


def test_tiny_models_need_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("splatgen.train.availability.hub_reachable", lambda: pytest.fail("probed the hub"))
    check_models_available(tiny_config(tmp_path / "run"))


def test_the_mvdream_unet_is_checked_with_the_other_models(tmp_path, unreachable_hub):
    config = tiny_config(tmp_path / "run")
    prior = MVDreamConfig(model=config.prior.model, unet="example-org/not-a-cached-mvdream")
    with pytest.raises(ModelsUnavailable) as error:
        check_models_available(replace(config, prior=prior))
    message = str(error.value)
    assert "the model this run needs is unavailable" in message and "cannot be reached" in message
    assert "--prior.unet example-org/not-a-cached-mvdream: not in the local hub cache" in message
    assert '`hf download example-org/not-a-cached-mvdream --include "unet/*" --local-dir DIR`' in message


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        ("weights in unet/", None),
        ("weights at the top", None),
        ("a .safetensors file", None),
        ("a pickle", "not a .safetensors file"),
        ("an empty folder", "the folder has no unet/diffusion_pytorch_model.safetensors or diffusion_pytorch_model"),
        ("nothing", "no such file or folder"),
    ],
)
def test_a_local_mvdream_unet_is_a_folder_or_a_safetensors_file(tmp_path, monkeypatch, layout, reason):
    """The local layouts `splatgen.prior.mvdream` reads, told apart before anything loads (no hub probe)."""
    root = tmp_path / "mvdream"
    paths = {
        "weights in unet/": root / "unet" / "diffusion_pytorch_model.safetensors",
        "weights at the top": root / "diffusion_pytorch_model.safetensors",
        "a .safetensors file": tmp_path / "mvdream.safetensors",
        "a pickle": tmp_path / "sd-v2.1-base-4view.pt",
        "an empty folder": root / "README.md",
    }
    unet = paths.get(layout, tmp_path / "missing")
    if layout != "nothing":
        unet.parent.mkdir(parents=True, exist_ok=True)
        unet.write_bytes(b"\0")
        unet = unet if unet.suffix in (".safetensors", ".pt") and unet.parent == tmp_path else root
    config = tiny_config(tmp_path / "run")
    config = replace(config, prior=MVDreamConfig(model=config.prior.model, unet=str(unet)))
    monkeypatch.setattr("splatgen.train.availability.hub_reachable", lambda: pytest.fail("probed the hub"))
    if reason is None:
        check_models_available(config)
    else:
        with pytest.raises(ModelsUnavailable, match=re.escape(reason)):
            check_models_available(config)


def test_eval_names_a_missing_clip_at_once(tmp_path, unreachable_hub, capsys):
    started = time.perf_counter()
    status = main(
        ["eval", str(REPO / "assets" / "sample.ply"), "--prompt", "a face", "--clip-model", "example-org/no-clip"]
    )
    printed = capsys.readouterr().out
    assert status == 2 and time.perf_counter() - started < 15.0, printed
    assert "--clip-model example-org/no-clip: not in the local hub cache" in printed
    assert len(printed.strip().splitlines()) == 1


def test_reserved_model_names_are_built_here_not_looked_up(tmp_path, monkeypatch):
    monkeypatch.setattr("splatgen.train.availability.hub_reachable", lambda: pytest.fail("probed the hub"))
    config = tiny_config(tmp_path / "run")
    for model in ("tiny-random", "sd21-base-random"):
        check_models_available(replace(config, prior=replace(config.prior, model=model)))
    check_models_available(replace(config, prior=MVDreamConfig(model="tiny-random", unet="tiny-random")))
