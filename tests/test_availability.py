"""Offline diagnosis: every missing model named in one line, quickly, with no hub retry loop.

The unreachable hub is simulated with `HF_ENDPOINT` pointing at a local port nothing listens on;
no traffic leaves the machine."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest
from huggingface_hub import constants
from test_train import QUIET, tiny_config

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
        init=ShapEInit(model="example-org/not-a-cached-shap-e"),
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
    assert constants.HF_HUB_OFFLINE  # the loaders that follow would not retry either
    assert not (tmp_path / "run").exists()


def test_a_missing_local_folder_is_reported_without_a_probe(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "run")
    config = replace(config, prior=replace(config.prior, model=str(tmp_path / "no-sd-here")))
    monkeypatch.setattr("splatgen.train.availability.hub_reachable", lambda: pytest.fail("probed the hub"))
    with pytest.raises(ModelsUnavailable, match="--prior.model .*no-sd-here: no such folder"):
        check_models_available(config)


def test_tiny_models_need_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("splatgen.train.availability.hub_reachable", lambda: pytest.fail("probed the hub"))
    check_models_available(tiny_config(tmp_path / "run"))
