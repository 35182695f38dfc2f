"""Fault suite, part 2: training runs under faults keep the last good state and say what happened.

Each test reproduces a hole a fault campaign found (see docs/reliability.md): a second Ctrl-C in
the middle of a densify refinement, SIGTERM / SIGKILL during a checkpoint write, two runs on one
folder, Ctrl-C while paused from the viewer, a full disk, a read-only folder, a NaN that reaches
the state, and resumes from checkpoints that are corrupted, foreign, torn or malicious.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
import yaml
from test_train import QUIET, REPO, tiny_config

from splatgen.cli import main, parse_train_args
from splatgen.errors import SplatgenError
from splatgen.io.ply import ply_property_names, read_ply
from splatgen.io.run_folder import RunFolder, RunFolderBusy, RunLock, slugify
from splatgen.objectives import VSD
from splatgen.scene.densify import AbsoluteGrowth, Densifier
from splatgen.scene.init import PlyInit
from splatgen.train.checkpoint import load_checkpoint, state_digest
from splatgen.train.config import run_identity
from splatgen.train.loop import TrainingDiverged, train

CLI_RUN = ["--preset", "smoke", "--prompt", "a red apple", "--steps", "12", "--video-frames", "0"]
CLI_RUN += ["--checkpoint-every", "4", "--log-every", "4", "--no-viewer"]  # = tiny_config(out)
DEADLINE_S = 240  # generous: the suite must pass on a loaded machine


def resume_args(out: Path) -> list[str]:
    return ["--resume", str(out), "--video-frames", "0", "--no-viewer"]


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob(".*.tmp*")]


@pytest.fixture(scope="module")
def reference_ply(tmp_path_factory, tiny_models) -> bytes:
    """The asset of the uninterrupted 12-step run every interrupted run must reproduce."""
    return train(tiny_config(tmp_path_factory.mktemp("whole") / "run"), console=QUIET).ply_path.read_bytes()


# -- 1. a second Ctrl-C inside a refinement ---------------------------------------------------


def test_second_ctrl_c_inside_a_refinement_never_tears_the_checkpoint(tmp_path, tiny_models, monkeypatch):
    import gsplat.strategy.ops as ops

    original = ops._update_param_with_optimizer
    fired: list[int] = []

    def ctrl_c_twice_midway(param_fn, optimizer_fn, params, optimizers, names=None):
        def update(name, param):
            new = param_fn(name, param)
            if name == "scales" and not fired:  # `means` already has its new rows, the rest not yet
                fired.append(len(params["means"]))
                handler = signal.getsignal(signal.SIGINT)  # exactly what two Ctrl-C presses run
                handler(signal.SIGINT, None)
                handler(signal.SIGINT, None)
            return new

        return original(update, optimizer_fn, params, optimizers, names)

    monkeypatch.setattr(ops, "_update_param_with_optimizer", ctrl_c_twice_midway)
    config = tiny_config(tmp_path / "run")
    config = replace(config, densify=replace(config.densify, growth=AbsoluteGrowth(grad2d=1e-12)))  # all grow
    result = train(config, console=QUIET)
    assert fired and result.interrupted and result.steps_completed == 11  # the refinement (step 11) finished whole
    state = load_checkpoint(result.run_dir / "checkpoints", run_identity(config))  # verifies shapes + digest
    counts = {key: len(value) for key, value in state["splats"].items()}
    assert len(set(counts.values())) == 1 and counts["means"] > 1000, counts
    assert len(read_ply(result.ply_path)) == counts["means"]
    monkeypatch.setattr(ops, "_update_param_with_optimizer", original)
    resumed = train(parse_train_args(resume_args(result.run_dir)), console=QUIET)
    assert not resumed.interrupted and resumed.steps_completed == 1


# -- 2. SIGTERM and SIGKILL during a checkpoint write (a real process) --------------------------

PAUSED_WRITER = """
import sys
import splatgen.train.checkpoint as checkpoint
from splatgen.cli import main
from splatgen.io.atomic import atomic_write

def paused_write(path, data):  # half the bytes on disk, then wait for the test's go-ahead
    with atomic_write(path) as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        print("WRITING", flush=True)
        sys.stdin.readline()
        handle.write(data[len(data) // 2 :])

checkpoint.write_bytes_atomic = paused_write
sys.exit(main(sys.argv[1:]))
"""


class Child:
    """A `splatgen train` process whose checkpoint writes wait for `proceed()`."""

    def __init__(self, arguments: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PAUSED_WRITER, "train", *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            if line is None:
                raise AssertionError("the run ended before " + repr(text) + ":\n" + "".join(self.output))
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {DEADLINE_S} s")

    def proceed(self) -> None:
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self) -> str:
        self.process.stdin.close()
        self.process.wait(timeout=DEADLINE_S)
        while (line := self.lines.get(timeout=DEADLINE_S)) is not None:
            self.output.append(line)
        return "".join(self.output)


def test_sigterm_during_a_checkpoint_write_saves_and_resumes_exactly(tmp_path, tiny_models, reference_ply):
    out = tmp_path / "run"
    child = Child([*CLI_RUN, "--out", str(out)])
    child.wait_for("WRITING")  # step 4
    child.proceed()
    child.wait_for("WRITING")  # step 8, half written
    child.process.send_signal(signal.SIGTERM)
    child.proceed()
    child.wait_for("WRITING")  # the final checkpoint after the stop
    child.proceed()
    output = child.finish()
    assert child.process.returncode == 130, output
    assert "SIGTERM: finishing this step" in output and "Traceback" not in output
    assert load_checkpoint(out / "checkpoints")["step"] == 8 and (out / "a-red-apple.ply").is_file()
    assert train(parse_train_args(resume_args(out)), console=QUIET).ply_path.read_bytes() == reference_ply
    assert not temporaries(out)


def test_sigkill_during_a_checkpoint_write_keeps_the_last_one_and_resumes_exactly(tmp_path, tiny_models, reference_ply):
    out = tmp_path / "run"
    child = Child([*CLI_RUN, "--out", str(out)])
    child.wait_for("WRITING")
    child.proceed()
    child.wait_for("WRITING")  # step 8, half written
    child.process.kill()
    child.finish()
    assert temporaries(out), "the killed write leaves its temporary file"
    assert load_checkpoint(out / "checkpoints")["step"] == 4
    assert train(parse_train_args(resume_args(out)), console=QUIET).ply_path.read_bytes() == reference_ply
    assert not temporaries(out), "a resume removes what the killed run left"


# -- 3. two runs, one folder ------------------------------------------------------------------


def test_two_runs_started_at_once_on_one_folder_exactly_one_proceeds(tmp_path, tiny_models):
    out = tmp_path / "shared"
    runs = {
        prompt: subprocess.Popen(
            [sys.executable, "-m", "splatgen.cli", "train", *CLI_RUN[:2], "--prompt", prompt, "--steps", "4"]
            + ["--video-frames", "0", "--no-viewer", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for prompt in ("a red apple", "a green pear")
    }
    outputs = {prompt: process.communicate(timeout=DEADLINE_S)[0] for prompt, process in runs.items()}
    codes = {prompt: process.returncode for prompt, process in runs.items()}
    assert sorted(codes.values()) == [0, 2], outputs
    winner = next(prompt for prompt, code in codes.items() if code == 0)
    loser = next(prompt for prompt, code in codes.items() if code == 2)
    error_lines = [line for line in outputs[loser].splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in outputs[loser], outputs[loser]
    assert "in use by another splatgen run" in error_lines[0] or "already" in error_lines[0], error_lines
    saved = parse_train_args(["--resume", str(out)])
    assert saved.prompt == winner
    load_checkpoint(out / "checkpoints", run_identity(saved))  # the checkpoint belongs to that config
    assert [path.name for path in out.glob("*.ply")] == [f"{slugify(winner)}.ply"]


def test_a_folder_owned_by_a_live_process_is_refused_before_models_load(tmp_path, capsys):
    folder = RunFolder(tmp_path / "run", "x")
    lock = folder.lock()
    try:
        assert main(["train", "--prompt", "x", "--out", str(folder.path), "--no-viewer"]) == 2
        printed = capsys.readouterr().out
        assert f"in use by another splatgen run (pid {os.getpid()})" in printed and "loading" not in printed
        with pytest.raises(RunFolderBusy):
            RunLock.acquire(folder.lock_path)
    finally:
        lock.release()
    RunLock.acquire(folder.lock_path).release()  # free again once released


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, tiny_models):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("999999999\n")  # no such process holds it
    result = train(tiny_config(tmp_path / "run", steps=2), console=QUIET)
    assert result.steps_completed == 2
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


# -- 4. Ctrl-C while the viewer has paused the run --------------------------------------------


def test_ctrl_c_while_paused_stops_promptly(tmp_path, tiny_models, monkeypatch):
    from splatgen.train import assemble
    from splatgen.viewer import ViewerConfig

    viewers = []
    start_viewer = assemble.start_viewer

    def capture(*args, **kwargs):
        viewers.append(start_viewer(*args, **kwargs))
        return viewers[-1]

    monkeypatch.setattr(assemble, "start_viewer", capture)

    def pause_at_two(step: int) -> None:
        if step == 2:
            viewers[0].set_paused(True)

    def ctrl_c_once_paused() -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not (viewers and viewers[0].paused) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition, not a fixed wait
        os.kill(os.getpid(), signal.SIGINT)

    config = tiny_config(tmp_path / "run", viewer=ViewerConfig(enabled=True, port=0))
    threading.Thread(target=ctrl_c_once_paused, daemon=True).start()
    watchdog = threading.Timer(DEADLINE_S, lambda: viewers and viewers[0].set_paused(False))  # unhang a failure
    watchdog.start()
    started = time.monotonic()
    try:
        result = train(config, console=QUIET, on_step=pause_at_two)
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < DEADLINE_S - 1, "the paused run ignored Ctrl-C"
    assert result.interrupted and result.steps_completed == 2
    assert load_checkpoint(result.run_dir / "checkpoints")["step"] == 2


# -- 5. full disk, read-only folder, occupied or unusable --out ---------------------------------


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    attempt = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if attempt.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root in a mount namespace): {attempt.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "small"
    _mount_tmpfs(where, "size=1m")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(small_disk, tiny_models, capsys):
    out = small_disk / "run"
    status = main(["train", *CLI_RUN, "--init.count", "4000", "--out", str(out)])  # ~0.7 MB checkpoints
    printed = capsys.readouterr().out
    assert status == 2 and "Traceback" not in printed, printed
    error = [line for line in printed.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "No space left on device" in error[0], printed
    assert not temporaries(out)
    if (out / "checkpoints" / "last.pt").exists():
        assert load_checkpoint(out / "checkpoints")["step"] % 4 == 0


def test_a_read_only_out_is_refused_before_models_load(tmp_path, capsys):
    where = tmp_path / "readonly"
    _mount_tmpfs(where, "ro,size=1m")
    try:
        assert main(["train", "--prompt", "x", "--out", str(where / "run"), "--no-viewer"]) == 2
        printed = capsys.readouterr().out
        assert "is not writable" in printed and printed.count("\n") == 1, printed
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize("occupant", ["file", "checkpoints-file", "foreign-ply"])
def test_an_unusable_or_occupied_out_is_refused_and_left_alone(tmp_path, capsys, occupant):
    out = tmp_path / "run"
    if occupant == "file":
        out.write_text("mine")
        expected, keep = "is a file, not a folder", out
    elif occupant == "checkpoints-file":
        out.mkdir()
        (out / "checkpoints").write_text("mine")
        expected, keep = "checkpoints is a file", out / "checkpoints"
    else:
        out.mkdir()
        (out / "a-red-apple.ply").write_text("mine")
        expected, keep = "already has a-red-apple.ply", out / "a-red-apple.ply"
    assert main(["train", "--prompt", "a red apple", "--out", str(out), "--no-viewer"]) == 2
    printed = capsys.readouterr().out
    assert expected in printed and printed.count("\n") == 1 and "loading" not in printed, printed
    assert keep.read_text() == "mine"


def test_a_bad_init_ply_leaves_no_run_folder(tmp_path, tiny_models, capsys):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nend_header\n")
    out = tmp_path / "run"
    assert main(["train", *CLI_RUN, "--out", str(out), "--init", "ply", "--init.path", str(bad)]) == 2
    assert "error:" in capsys.readouterr().out
    assert not out.exists()


def write_nan_ply(path: Path, count: int = 5) -> None:
    """An INRIA-layout PLY whose every value is NaN (write_ply itself refuses to write one)."""
    names = ply_property_names(0)
    records = np.full(count, np.nan, dtype=[(name, "<f4") for name in names])
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(path))


def test_an_all_nan_init_ply_is_refused(tmp_path, tiny_models):
    write_nan_ply(tmp_path / "nan.ply")
    with pytest.raises(SplatgenError, match="none of its 5 Gaussians is finite"):
        train(tiny_config(tmp_path / "run", init=PlyInit(path=tmp_path / "nan.ply")), console=QUIET)
    assert not (tmp_path / "run").exists()


# -- 6. NaN must never reach the last good checkpoint -----------------------------------------


def test_a_nan_lora_update_is_skipped_and_never_saved(tmp_path, tiny_models, monkeypatch):
    from splatgen.prior.lora import LoraScore

    forward, train_step = LoraScore._forward, LoraScore.train_step
    training = threading.local()

    def nan_while_training(self, *args, **kwargs):
        eps = forward(self, *args, **kwargs)
        return eps * float("nan") if getattr(training, "on", False) else eps

    def flagged_train_step(self, *args, **kwargs):
        training.on = True
        try:
            return train_step(self, *args, **kwargs)
        finally:
            training.on = False

    monkeypatch.setattr(LoraScore, "_forward", nan_while_training)
    monkeypatch.setattr(LoraScore, "train_step", flagged_train_step)
    result = train(tiny_config(tmp_path / "run", steps=4, objective=VSD()), console=QUIET)
    state = load_checkpoint(result.run_dir / "checkpoints")  # refuses NaN anywhere, LoRA included
    assert state["lora"] is not None and result.skipped_steps == 0


def test_the_done_line_counts_skipped_steps(tmp_path, tiny_models, monkeypatch, capsys):
    from test_train import FlakyPrior

    from splatgen.train import assemble

    load_prior = assemble.load_prior
    monkeypatch.setattr(
        assemble, "load_prior", lambda *args: FlakyPrior(load_prior(*args), nan_calls=lambda call: call in (2, 3))
    )
    assert main(["train", *CLI_RUN, "--steps", "4", "--out", str(tmp_path / "run")]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the done line may wrap
    assert "done: 4 steps" in printed and "; 2 steps skipped for NaN/Inf" in printed, printed


def test_nan_in_the_state_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_models, monkeypatch):
    step_post_backward = Densifier.step_post_backward

    def poisoned(self, params, optimizers, step, info, thresholds):
        report = step_post_backward(self, params, optimizers, step, info, thresholds)
        if step == 5:
            self.state["grad2d"][0] = float("nan")
        return report

    monkeypatch.setattr(Densifier, "step_post_backward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite by step 8: .*densifier.grad2d"):
        train(tiny_config(tmp_path / "run"), console=QUIET)
    assert load_checkpoint(tmp_path / "run" / "checkpoints")["step"] == 4


# -- 7. --resume verifies what it finds ---------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path, tiny_models) -> Path:
    return train(tiny_config(tmp_path / "run", steps=4), console=QUIET).run_dir


def _rewrite(run: Path, change) -> None:
    """Load last.pt, apply `change`, and save it back with a matching digest (a well-formed forgery)."""
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    integrity = state.pop("integrity")
    change(state)
    state["integrity"] = {**integrity, "sha256": state_digest(state)}
    torch.save(state, path)


def _resume_error(run: Path, capsys, *extra: str) -> str:
    prompts_before = (run / "prompts.json").read_bytes()
    assert main(["train", *resume_args(run), "--steps", "6", *extra]) == 2
    printed = capsys.readouterr().out
    assert "Traceback" not in printed and "loading Stable Diffusion" not in printed, printed  # refused first
    errors = [line for line in printed.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, printed
    assert (run / "prompts.json").read_bytes() == prompts_before
    return errors[0]


def test_resume_refuses_a_checkpoint_with_flipped_bytes(finished_run, capsys):
    path = finished_run / "checkpoints" / "last.pt"
    data = bytearray(path.read_bytes())
    offset = data.index(b"data/0") + 4096 if b"data/0" in data else len(data) // 2  # inside a tensor's bytes
    for position in (offset, offset + 1):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    printed = _resume_error(finished_run, capsys)
    assert "corrupted" in printed or "cannot read checkpoint" in printed


def test_resume_refuses_a_changed_config(finished_run, capsys):
    config_path = finished_run / "config.yaml"
    saved = yaml.safe_load(config_path.read_text())
    saved["seed"] = 7
    config_path.write_text(yaml.safe_dump(saved))
    assert "trained with another config (seed: 0 -> 7)" in _resume_error(finished_run, capsys)


def test_resume_refuses_another_prompt(finished_run, capsys):
    printed = _resume_error(finished_run, capsys, "--prompt", "a green pear")
    assert "these cannot change: prompt: 'a red apple' -> 'a green pear'" in printed
    assert not (finished_run / "a-green-pear.ply").exists()


def test_resume_refuses_a_checkpoint_of_another_run(finished_run, tmp_path, capsys):
    other = train(tiny_config(tmp_path / "other", steps=4, seed=3), console=QUIET).run_dir
    (finished_run / "checkpoints" / "last.pt").write_bytes((other / "checkpoints" / "last.pt").read_bytes())
    assert "trained with another config (seed: 3 -> 0)" in _resume_error(finished_run, capsys)


def test_resume_refuses_a_torn_checkpoint(finished_run, capsys):
    _rewrite(finished_run, lambda state: state["splats"].update(scales=state["splats"]["scales"][:300]))
    assert "inconsistent: scales has shape (300, 3) but means has 1000 rows" in _resume_error(finished_run, capsys)


def test_resume_refuses_nan_in_a_checkpoint(finished_run, capsys):
    _rewrite(finished_run, lambda state: state["splats"]["means"].view(-1)[0].fill_(float("nan")))
    assert "holds NaN/Inf in splats.means" in _resume_error(finished_run, capsys)


def test_resume_refuses_a_checkpoint_without_its_parts(finished_run, capsys):
    _rewrite(finished_run, lambda state: state.pop("optimizers"))
    assert "last.pt lacks optimizers; it cannot be resumed" in _resume_error(finished_run, capsys)


def test_resume_refuses_a_checkpoint_without_a_usable_random_state(finished_run, capsys):
    _rewrite(finished_run, lambda state: state["rng"].update(generator=torch.zeros(3)))
    assert "last.pt has no usable random state (rng); it cannot be resumed" in _resume_error(finished_run, capsys)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_a_malicious_checkpoint_is_refused_without_unsafe_advice(finished_run, capsys):
    with open(finished_run / "checkpoints" / "last.pt", "wb") as handle:
        pickle.dump({"step": Payload()}, handle)
    printed = _resume_error(finished_run, capsys)
    assert "refused for safety" in printed and "weights_only=False" not in printed and "owned" not in printed


def test_a_resume_cleans_temporaries_a_killed_run_left(finished_run, tiny_models):
    leftover = finished_run / "checkpoints" / ".last.0123abcd.tmp.pt"
    leftover.write_bytes(b"half a checkpoint")
    video = finished_run / ".turntable.89abcdef.tmp.mp4"
    video.write_bytes(b"half a video")
    train(parse_train_args([*resume_args(finished_run), "--steps", "5"]), console=QUIET)
    assert not leftover.exists() and not video.exists()
