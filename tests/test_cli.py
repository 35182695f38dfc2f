"""The `splatgen` command line: help texts, export, render, debias, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from splatgen.cli import main, parse_train_args
from splatgen.io.ply import read_ply
from splatgen.io.splat import read_splat
from splatgen.objectives import DSDS, VSD

SAMPLE = REPO / "assets" / "sample.ply"


def help_text(capsys, args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_lists_every_command(capsys):
    text = help_text(capsys, ["--help"])
    for command in ("train", "export", "render", "view", "debias", "eval", "report", "compare"):
        assert command in text


def test_train_help_lists_every_objective_with_documented_fields(capsys):
    text = help_text(capsys, ["train", "--help"])
    for objective in (
        "objective:sds",
        "objective:dsds",
        "objective:vsd",
        "objective:esd",
        "objective:ssd",
        "objective:csd",
    ):
        assert objective in text
    dsds = help_text(capsys, ["train", "objective:dsds", "--help"])
    assert "--objective.truncation-start" in dsds and "--objective.truncation-end" in dsds


def test_objective_is_selected_by_type():
    config = parse_train_args(["--prompt", "a corgi", "objective:dsds", "--objective.truncation-end", "6"])
    assert isinstance(config.objective, DSDS) and config.objective.truncation_end == 6.0
    assert isinstance(parse_train_args(["--preset", "vsd", "--prompt", "a corgi"]).objective, VSD)


def test_flag_aliases_from_the_docs():
    config = parse_train_args(
        ["--prompt", "a corgi", "--no-debias", "--no-viewer", "--init", "ply", "--init.path", str(SAMPLE)]
    )
    assert not config.prompts.debias and not config.viewer.enabled and config.init.path == SAMPLE


def test_export_ply_and_splat(tmp_path, capsys):
    assert main(["export", str(SAMPLE), "--out", str(tmp_path / "a.ply"), "--sh-degree", "3"]) == 0
    assert read_ply(tmp_path / "a.ply").sh_degree == 3
    assert main(["export", str(SAMPLE), "--out", str(tmp_path / "a.splat")]) == 0
    assert len(read_splat(tmp_path / "a.splat")) == len(read_ply(SAMPLE))


@pytest.mark.parametrize(
    "content", [b"", b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n", b"\x00garbage" * 10]
)
def test_bad_input_file_gives_one_line_and_keeps_the_output(tmp_path, capsys, content):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(content)
    out = tmp_path / "out.ply"
    out.write_bytes(b"keep me")
    assert main(["export", str(bad), "--out", str(out)]) == 2
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("error:") and "bad.ply" in printed and "Traceback" not in printed
    assert out.read_bytes() == b"keep me"


def test_render_writes_video_and_grid(tmp_path):
    assert main(["render", str(SAMPLE), "--out", str(tmp_path), "--frames", "8", "--resolution", "64"]) == 0
    assert (tmp_path / "turntable.mp4").stat().st_size > 0 and (tmp_path / "views.png").stat().st_size > 0


def test_debias_json(tiny_models, capsys):
    assert main(["debias", "--prompt", "a smiling dog", "--lm", str(tiny_models["mlm"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"prompt", "views", "pmi"} and set(result["views"]) == {"front", "side", "back", "overhead"}


def test_debias_missing_lm_is_one_clear_line(tmp_path, capsys):
    assert main(["debias", "--prompt", "a smiling dog", "--lm", str(tmp_path / "nowhere")]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "--no-debias" in printed and "Traceback" not in printed


def test_out_of_memory_is_reported_with_settings_that_need_less(monkeypatch, tmp_path, capsys):
    import torch

    import splatgen.train.loop

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(splatgen.train.loop, "train", exhausted)
    assert main(["train", "--prompt", "a corgi", "--out", str(tmp_path / "run"), "--batch-size", "4"]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "ran out of memory" in printed and "--batch-size 2" in printed and "--render-size 256" in printed


# ---- the first hour: help, typos, summaries, warnings -------------------------------------------


def test_train_help_opens_with_preset_resume_and_the_short_forms(capsys):
    text = help_text(capsys, ["train", "--help"])
    top = text[: text.index("options")]
    for flag in ("--preset NAME", "smoke", "--resume DIR", "--no-debias = --prompts.no-debias", "--no-viewer", "--lm"):
        assert flag in top, flag


@pytest.mark.parametrize(("typed", "meant"), [("trian", "train"), ("exprot", "export"), ("veiw", "view")])
def test_a_mistyped_command_names_the_right_one_on_one_line(capsys, typed, meant):
    assert main([typed, "--prompt", "x"]) == 2
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and f"did you mean '{meant}'?" in printed and "--prior" not in printed


def test_render_prints_a_summary_not_a_repr(tmp_path, capsys):
    assert main(["render", str(SAMPLE), "--out", str(tmp_path), "--frames", "4", "--resolution", "32"]) == 0
    printed = capsys.readouterr().out
    assert "TurntableResult" not in printed and "PosixPath" not in printed
    assert printed.startswith(f"wrote {tmp_path / 'turntable.mp4'} (4 frames, 32 px)")


def test_piped_output_keeps_long_paths_on_one_line(tmp_path):
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "asset.splat"
    deep.parent.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-m", "splatgen.cli", "export", str(SAMPLE), "--out", str(deep)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and str(deep) in done.stdout


def test_warnings_print_as_one_line(capsys):
    import warnings

    from rich.console import Console

    from splatgen.cli import one_line_warnings

    saved = warnings.showwarning
    try:
        one_line_warnings(Console(soft_wrap=True))
        warnings.warn_explicit("a.ply: dropped 3 of 9 Gaussians\n holding NaN", UserWarning, "x.py", 1)
    finally:
        warnings.showwarning = saved
    assert capsys.readouterr().out == "warning: a.ply: dropped 3 of 9 Gaussians holding NaN\n"


def test_gsplat_backend_on_cpu_is_one_line_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--prompt", "a corgi", "--out", str(out), "--device", "cpu", "--render-backend", "gsplat"]
    assert main(args) == 2
    printed = capsys.readouterr().out
    assert (
        printed.count("\n") == 1
        and "--render-backend gsplat needs a CUDA GPU" in printed
        and "Traceback" not in printed
    )
    assert not out.exists()


def test_an_existing_folder_that_is_not_a_run_gets_a_warning(tmp_path):
    from rich.console import Console

    from splatgen.train.assemble import plan_run_folder
    from splatgen.train.config import TrainConfig

    (tmp_path / "notes.txt").write_text("mine")
    console = Console(record=True, width=200)
    plan_run_folder(TrainConfig(prompt="a corgi", out=tmp_path), console)
    assert "is not a splatgen run folder" in console.export_text()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    quiet = Console(record=True, width=200)
    plan_run_folder(TrainConfig(prompt="a corgi", out=empty), quiet)  # nothing there to warn about
    assert quiet.export_text() == ""
