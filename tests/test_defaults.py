"""Per-objective defaults taken from peers (docs/objectives.md): timestep schedules and LoRA updates per step."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from splatgen.io.config_file import from_dict, load_yaml
from splatgen.objectives import CSD, DSDS, ESD, SDS, SSD, VSD
from splatgen.objectives.schedules import TimestepSchedule, timestep_range
from splatgen.prior.lora import LoraScore
from splatgen.train.config import TrainConfig
from splatgen.train.loop import train
from splatgen.viewer import ViewerConfig

SMOKE = Path(__file__).resolve().parents[1] / "splatgen" / "presets" / "smoke.yaml"


@pytest.mark.parametrize("objective", [SDS(), DSDS()], ids=["sds", "dsds"])
def test_sds_family_drops_t_max_to_0_55_after_step_500_of_1200(objective):
    """GaussianDreamer: max_step_percent [500, 0.98, 0.55, 501] over 1,200 steps."""
    assert timestep_range(objective.timesteps, 499 / 1200) == (20, 980)
    assert timestep_range(objective.timesteps, 500 / 1200) == (20, 550)
    assert timestep_range(objective.timesteps, 1.0) == (20, 550)


@pytest.mark.parametrize("objective", [VSD(), ESD()], ids=["vsd", "esd"])
def test_lora_objectives_keep_prolificdreamers_drop_at_a_fifth(objective):
    assert timestep_range(objective.timesteps, 0.19) == (20, 980)
    assert timestep_range(objective.timesteps, 0.2) == (20, 500)
    assert objective.lora_updates_per_step == 1  # threestudio and ProlificDreamer: one LoRA step per render batch


@pytest.mark.parametrize("objective", [SSD(), CSD()], ids=["ssd", "csd"])
def test_ssd_and_csd_keep_the_uniform_range_their_threshold_is_defined_on(objective):
    assert objective.timesteps == TimestepSchedule()
    assert timestep_range(objective.timesteps, 1.0) == (20, 980)


def test_lora_updates_per_step_is_validated():
    with pytest.raises(ValueError, match="lora_updates_per_step"):
        VSD(lora_updates_per_step=0).validate()


def test_each_training_step_runs_the_configured_number_of_lora_updates(tmp_path, tiny_models, monkeypatch):
    calls: list[int] = []
    original = LoraScore.train_step

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LoraScore, "train_step", counting)
    smoke = from_dict(TrainConfig, load_yaml(SMOKE))
    config = replace(
        smoke,
        prompt="a red apple",
        out=tmp_path / "vsd",
        steps=3,
        objective=VSD(lora_updates_per_step=3),
        video_frames=0,
        viewer=ViewerConfig(enabled=False),
    )
    config.prompts.debias = False
    result = train(config, console=Console(file=open(os.devnull, "w")))
    assert result.steps_completed == 3 and result.skipped_steps == 0
    assert len(calls) == 9
