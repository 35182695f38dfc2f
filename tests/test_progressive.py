"""Progressive resolution (`--render-schedule`): the render size steps up at its milestones, and a run
interrupted before a milestone resumes to the same asset as an uninterrupted one."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

import splatgen.render.torch_backend as torch_backend
from splatgen.cli import parse_train_args
from splatgen.io.config_file import ConfigError, from_dict, load_yaml
from splatgen.train.config import TrainConfig
from splatgen.train.loop import train
from splatgen.viewer import ViewerConfig

SMOKE = Path(__file__).resolve().parents[1] / "splatgen" / "presets" / "smoke.yaml"
QUIET = Console(file=open(os.devnull, "w"), width=120)
SCHEDULE = ((0.0, 32), (0.5, 64))


def progressive_config(out: Path) -> TrainConfig:
    smoke = from_dict(TrainConfig, load_yaml(SMOKE))
    config = replace(
        smoke,
        prompt="a red apple",
        out=out,
        steps=10,
        render_schedule=SCHEDULE,
        video_frames=0,
        checkpoint_every=4,
        log_every=5,
        viewer=ViewerConfig(enabled=False),
    )
    config.prompts.debias = False
    return config


def test_render_size_follows_the_milestones():
    config = replace(TrainConfig(prompt="x"), render_size=512, render_schedule=((0.0, 128), (0.3, 256), (0.6, 512)))
    assert [config.render_size_at(p) for p in (0.0, 0.29, 0.3, 0.59, 0.6, 1.0)] == [128, 128, 256, 256, 512, 512]
    late_start = replace(config, render_schedule=((0.5, 64),))
    assert [late_start.render_size_at(p) for p in (0.0, 0.5)] == [512, 64]  # --render-size before the first


def test_render_schedule_is_read_from_the_command_line():
    config = parse_train_args(["--prompt", "x", "--render-schedule", "0", "128", "0.3", "256", "0.6", "512"])
    assert config.render_schedule == ((0.0, 128), (0.3, 256), (0.6, 512))


@pytest.mark.parametrize(
    "schedule",
    [((0.5, 128), (0.3, 256)), ((0.0, 100),), ((1.5, 128),), ((0.0, 4096),)],
    ids=["decreasing", "not-multiple-of-8", "progress-above-1", "too-large"],
)
def test_bad_render_schedules_are_refused(schedule):
    with pytest.raises(ValueError, match="render-schedule"):
        replace(TrainConfig(prompt="x"), render_schedule=schedule).validate()


def test_a_bad_schedule_in_a_preset_is_refused_with_one_line(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("render_schedule: [[0.0, 128], [0.3]]\n")
    with pytest.raises(ConfigError, match=r"render_schedule\[1\] must be a list of 2 values, got 1"):
        parse_train_args(["--preset", str(preset), "--prompt", "x"])


def test_training_renders_at_each_milestone_and_resumes_across_one(tmp_path, tiny_models, monkeypatch):
    sizes: list[int] = []
    unwrapped = torch_backend.rasterize_torch

    def recording(gaussians, cameras, backgrounds, **options):
        sizes.append(cameras.width)
        return unwrapped(gaussians, cameras, backgrounds, **options)

    monkeypatch.setattr(torch_backend, "rasterize_torch", recording)
    whole = train(progressive_config(tmp_path / "whole"), console=QUIET)
    assert sizes == [32] * 5 + [64] * 5  # milestone at progress 0.5 = step 5 of 10

    def interrupt_at_step_3(step: int) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C delivers

    stopped = train(progressive_config(tmp_path / "split"), console=QUIET, on_step=interrupt_at_step_3)
    assert stopped.interrupted and stopped.steps_completed == 3
    resumed = train(parse_train_args(["--resume", str(tmp_path / "split"), "--no-viewer"]), console=QUIET)
    assert resumed.steps_completed == 7
    assert resumed.ply_path.read_bytes() == whole.ply_path.read_bytes()
