"""The training application end to end on CPU with the tiny models: the smoke preset, every
objective, reproducibility, Ctrl-C and resume, NaN handling, and bad input refused early."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console

from splatgen.cli import main, parse_train_args
from splatgen.errors import SplatgenError
from splatgen.io.config_file import from_dict, load_yaml, to_dict
from splatgen.io.ply import read_ply
from splatgen.objectives import CSD, OBJECTIVES
from splatgen.scene.init import random_ball
from splatgen.train.assemble import load_prior
from splatgen.train.config import TrainConfig
from splatgen.train.loop import TrainingDiverged, train
from splatgen.viewer import ViewerConfig

REPO = Path(__file__).resolve().parent.parent
QUIET = Console(file=open(os.devnull, "w"), width=120)


def tiny_config(out: Path, **changes) -> TrainConfig:
    """The smoke preset, shortened: 12 steps with one refinement (step 10) and checkpoints every 4."""
    base = from_dict(TrainConfig, load_yaml(REPO / "splatgen" / "presets" / "smoke.yaml"))
    settings = dict(
        prompt="a red apple",
        out=out,
        steps=12,
        video_frames=0,
        checkpoint_every=4,
        log_every=4,
        viewer=ViewerConfig(enabled=False),
    )
    settings.update(changes)
    return replace(base, **settings)


def test_smoke_preset_runs_the_whole_pipeline(tmp_path, tiny_models, capsys):
    out = tmp_path / "apple"
    status = main(["train", "--preset", "smoke", "--prompt", "a red apple", "--out", str(out), "--no-viewer"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    written = ("a-red-apple.ply", "config.yaml", "prompts.json", "checkpoints/last.pt", "turntable.mp4", "views.png")
    for name in (*written, "metrics.jsonl", "report.html"):
        assert (out / name).is_file(), name
    asset = read_ply(out / "a-red-apple.ply")
    assert len(asset) > 0 and bool(asset.finite_mask().all())
    assert "step 60/60" in printed and "done: 60 steps" in printed  # plain progress lines when not a terminal
    assert (
        "the asset it writes is noise, not an object" in printed
        and "(noise: made with random-weight test models)" in printed
    )
    reloaded = parse_train_args(["--resume", str(out)])
    assert to_dict(replace(reloaded, resume=None, out=out)) == to_dict(
        replace(from_dict(TrainConfig, load_yaml(out / "config.yaml")), out=out)
    )
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 60


@pytest.mark.parametrize("objective", [cls() for cls in OBJECTIVES.values()], ids=lambda o: type(o).__name__)
def test_every_objective_moves_the_gaussians_without_nan(tmp_path, tiny_models, objective):
    config = tiny_config(tmp_path / "run", steps=4, objective=objective)
    initial = random_ball(
        config.init, config.sh_degree, torch.Generator().manual_seed(config.seed)
    )  # the loop's first draw
    result = train(config, console=QUIET)
    asset = read_ply(result.ply_path)
    assert result.steps_completed == 4 and result.skipped_steps == 0
    assert bool(asset.finite_mask().all()) and len(asset) == len(initial)
    moved = (asset.means - initial.means).norm(dim=-1)  # [N]
    assert float(moved.max()) > 1e-4
    lora_state = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["lora"]
    assert (lora_state is not None) == objective.uses_lora


def test_same_seed_same_asset(tmp_path, tiny_models):
    first = train(tiny_config(tmp_path / "a"), console=QUIET)
    second = train(tiny_config(tmp_path / "b"), console=QUIET)
    assert first.ply_path.read_bytes() == second.ply_path.read_bytes()
    third = train(tiny_config(tmp_path / "c", seed=1), console=QUIET)
    assert third.ply_path.read_bytes() != first.ply_path.read_bytes()


def _interrupt_at(step_to_stop: int):
    def on_step(step: int) -> None:
        if step == step_to_stop:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C delivers

    return on_step


def test_ctrl_c_saves_and_resume_continues_exactly(tmp_path, tiny_models):
    uninterrupted = train(tiny_config(tmp_path / "whole"), console=QUIET)

    stopped = train(tiny_config(tmp_path / "split"), console=QUIET, on_step=_interrupt_at(5))
    assert stopped.interrupted and stopped.steps_completed == 5
    assert torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    assert bool(read_ply(stopped.ply_path).finite_mask().all())  # the asset so far

    resumed = train(
        parse_train_args(["--resume", str(tmp_path / "split"), "--video-frames", "0", "--no-viewer"]), console=QUIET
    )
    assert not resumed.interrupted and resumed.steps_completed == 7
    assert torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)["step"] == 12
    assert resumed.ply_path.read_bytes() == uninterrupted.ply_path.read_bytes()


def test_ctrl_c_from_the_terminal_exits_cleanly(tmp_path, tiny_models):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "splatgen.cli",
        "train",
        "--preset",
        "smoke",
        "--prompt",
        "a red apple",
        "--out",
        str(out),
        "--steps",
        "2000",
        "--log-every",
        "1",
        "--no-viewer",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("step 3/"):
            process.send_signal(signal.SIGINT)
            break
    output = "".join(lines) + process.communicate(timeout=600)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert "resume with: splatgen train --resume" in output
    assert (out / "a-red-apple.ply").is_file() and (out / "checkpoints" / "last.pt").is_file()


class FlakyPrior:
    """The real tiny prior, except that chosen steps' noise predictions are NaN."""

    def __init__(self, prior, nan_calls) -> None:
        self.prior, self.nan_calls, self.calls = prior, nan_calls, 0
        self.alphas_cumprod, self.image_size = prior.alphas_cumprod, prior.image_size

    def encode_images(self, images):
        return self.prior.encode_images(images)

    def embed_prompts(self, prompts):
        return self.prior.embed_prompts(prompts)

    def predict_noise(self, *args, **kwargs):
        eps = self.prior.predict_noise(*args, **kwargs)
        self.calls += 1
        return torch.full_like(eps, float("nan")) if self.nan_calls(self.calls) else eps


def test_nan_steps_are_skipped_and_counted(tmp_path, tiny_models):
    config = tiny_config(tmp_path / "run")
    prior = FlakyPrior(load_prior(config, torch.device("cpu"), QUIET), nan_calls=lambda call: call in (3, 4))
    result = train(config, prior=prior, console=QUIET)
    assert result.skipped_steps == 2 and not result.interrupted
    assert bool(read_ply(result.ply_path).finite_mask().all())


def test_repeated_nan_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, tiny_models):
    config = tiny_config(tmp_path / "run", max_bad_steps=3)
    prior = FlakyPrior(load_prior(config, torch.device("cpu"), QUIET), nan_calls=lambda call: call > 5)
    with pytest.raises(TrainingDiverged, match="3 consecutive steps produced NaN/Inf"):
        train(config, prior=prior, console=QUIET)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--steps", "-3"], "--steps must be in [1, "),
        (["--render-size", "100"], "--render-size must be a multiple of 8"),
        (["--batch-size", "1000"], "--batch-size must be in [1, 64], got 1000"),
        (["--preset", "nonexistent"], "unknown preset 'nonexistent'"),
        (["--prior.image-size", "500"], "image_size"),
        (["--objective.truncation-start", "-1"], "--objective.truncation-start must be in (0, "),
    ],
)
def test_bad_values_are_refused_before_any_model_loads(tmp_path, capsys, arguments, message):
    out = tmp_path / "run"
    status = main(["train", "--prompt", "a red apple", "--out", str(out), "--no-viewer", *arguments])
    printed = capsys.readouterr().out
    assert status == 2
    assert message in " ".join(printed.split()) and "Traceback" not in printed
    assert "loading Stable Diffusion" not in printed


def test_empty_prompt_is_refused(tmp_path, capsys):
    assert main(["train", "--prompt", "   ", "--out", str(tmp_path / "run")]) == 2
    assert "--prompt is empty" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_existing_run_is_not_overwritten(tmp_path, tiny_models):
    first = train(tiny_config(tmp_path / "run", steps=2), console=QUIET)
    before = first.ply_path.read_bytes()
    with pytest.raises(SplatgenError, match="already holds a run"):
        train(tiny_config(tmp_path / "run", steps=2), console=QUIET)
    assert first.ply_path.read_bytes() == before


def test_csd_negative_term_uses_a_third_prompt_batch(tmp_path, tiny_models):
    config = tiny_config(
        tmp_path / "run",
        steps=2,
        objective=CSD(negative_weight=0.5),
        prior=replace(tiny_config(tmp_path).prior, negative_prompt="blurry, low quality"),
    )
    calls = []
    prior = load_prior(config, torch.device("cpu"), QUIET)
    original = prior.predict_noise
    prior.predict_noise = lambda latents, *rest: calls.append(latents.shape[0]) or original(latents, *rest)
    result = train(config, prior=prior, console=QUIET)
    assert result.skipped_steps == 0 and calls == [3 * config.batch_size] * 2
