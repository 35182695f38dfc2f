"""`splatgen batch` on CPU with the local engine and the tiny models: prompt lists, crossing, shards,
the manifest, resume and skip, failures recorded, locks, and the model cache behind the workers.
(Ray's engine, a killed worker and the gallery in a browser: tests/test_batch_ray.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console

from splatgen.batch import BatchOptions
from splatgen.batch.items import cross, read_prompt_list
from splatgen.batch.manifest import lock_batch
from splatgen.batch.run import plan_batch, shard_of
from splatgen.cli import main, train_config_from_flags
from splatgen.io.ply import read_ply
from splatgen.io.run_folder import RunFolder
from splatgen.train.assemble import ModelCache
from splatgen.train.loop import train

REPO = Path(__file__).resolve().parent.parent
QUIET = Console(file=open(os.devnull, "w"), width=120)
TINY = ["--preset", "smoke", "--steps", "3", "--video-frames", "2", "--checkpoint-every", "2", "--no-debias"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def batch(prompts: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", str(prompts), "--out", str(out), "--engine", "local", *TINY, *extra]


def manifest_lines(out: Path, name: str = "manifest.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


# -- prompt lists, crossing and planning (no training) ---------------------------------------------------


def test_text_list_skips_comments_and_blank_lines_and_names_lines(tmp_path):
    prompts = write(tmp_path / "p.txt", "# props\na red apple\n\n   # indented comment\n  a   blue mug  \n")
    lines = read_prompt_list(prompts)
    assert [(line.prompt, line.where) for line in lines] == [
        ("a red apple", f"{prompts}:2"),
        ("a blue mug", f"{prompts}:5"),
    ]


def test_jsonl_lines_cross_objectives_and_seeds_except_where_a_line_sets_its_own(tmp_path):
    prompts = write(
        tmp_path / "p.jsonl",
        '{"prompt": "a red apple"}\n# a comment\n{"prompt": "a corgi", "seed": 7, "objective": "esd", "steps": 5}\n',
    )
    items = cross(read_prompt_list(prompts), ["dsds", "sds"], [0, 1])
    assert [(item.line.prompt, item.objective, item.seed) for item in items] == [
        ("a red apple", "dsds", 0),
        ("a red apple", "dsds", 1),
        ("a red apple", "sds", 0),
        ("a red apple", "sds", 1),
        ("a corgi", "esd", 7),
    ]
    options = BatchOptions(prompts=prompts, out=tmp_path / "out", objectives="dsds,sds", seeds="0,1")
    plan = plan_batch(options, TINY, train_config_from_flags)
    assert [item.id for item in plan] == [
        "a-red-apple-dsds-s0",
        "a-red-apple-dsds-s1",
        "a-red-apple-sds-s0",
        "a-red-apple-sds-s1",
        f"a-corgi-esd-s7-{plan[-1].id[-6:]}",  # overrides: a short hash of them in the id
    ]
    corgi = plan[-1].config
    assert (corgi.steps, corgi.seed, type(corgi.objective).config_name, corgi.prompt) == (5, 7, "esd", "a corgi")
    assert plan[0].config.steps == 3 and plan[0].config.out == tmp_path / "out" / "a-red-apple-dsds-s0"
    assert not any(item.config.viewer.enabled for item in plan)  # no viewer ports shared by workers


def test_a_jsonl_objective_mapping_is_merged_like_a_preset_and_named_by_its_hash(tmp_path):
    prompts = write(
        tmp_path / "p.jsonl",
        '{"prompt": "a mug", "objective": {"type": "sds", "guidance_scale": 50.0}}\n'
        '{"prompt": "a mug", "objective": {"guidance_scale": 20.0}}\n',
    )
    plan = plan_batch(BatchOptions(prompts=prompts, out=tmp_path / "out"), TINY, train_config_from_flags)
    (sds, dsds) = (item.config.objective for item in plan)
    assert (type(sds).config_name, sds.guidance_scale) == ("sds", 50.0)
    assert (type(dsds).config_name, dsds.guidance_scale) == ("dsds", 20.0)  # no type: the preset's objective, tuned
    assert plan[0].id.startswith("a-mug-sds-s0-") and plan[1].id.startswith("a-mug-dsds-s0-")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"prompt": "a red apple"}\n{"prompt": "a mug",}\n', "p.jsonl:2: not valid JSON"),
        ('{"prompt": "a red apple"}\n\n["a mug"]\n', "p.jsonl:3: expected a JSON object"),
        ('{"prompt": ""}\n', 'p.jsonl:1: needs a non-empty "prompt" string'),
        ('{"prompt": "a mug", "seed": -1}\n', 'p.jsonl:1: "seed" must be a whole number >= 0'),
        ('{"prompt": "a mug", "steps": "many"}\n', "p.jsonl:1: steps must be a whole number"),
        ('{"prompt": "a mug", "stpes": 3}\n', "p.jsonl:1: unknown config field(s) stpes"),
        ('{"prompt": "a mug", "steps": 0}\n', "p.jsonl:1: --steps must be in [1, 10,000,000], got 0"),
        ('{"prompt": "a mug", "objective": "sdss"}\n', "p.jsonl:1: unknown objective 'sdss'"),
        ('{"prompt": "a mug", "preset": "nope"}\n', "p.jsonl:1: unknown preset 'nope'"),
        ('{"prompt": "a mug", "out": "x"}\n', 'p.jsonl:1: "out" cannot be set per item'),
        ('{"prompt": "a mug"}\n{"prompt": "a  mug"}\n', "p.jsonl:2: the same item as"),
    ],
)
def test_a_bad_line_is_one_line_naming_file_and_line_and_writes_nothing(tmp_path, capsys, text, message):
    prompts = write(tmp_path / "p.jsonl", text)
    out = tmp_path / "out"
    assert main(batch(prompts, out)) == 2
    printed = capsys.readouterr().out
    assert message in printed and printed.count("\n") == 1, printed
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--objectives", "dsds,nope"], "--objectives: unknown objective 'nope'"),
        (["--seeds", "0,x"], "--seeds: 'x' is not a seed"),
        (["--shard", "3/2"], "--shard 3/2: I must be in 1..N"),
        (["--shard", "1-2"], "--shard must be I/N"),
        (["--workers", "0"], "--workers must be in 1..1024"),
        (["--prompt", "x"], "splatgen batch does not take --prompt"),
        (["--objectives", "sds", "objective:dsds"], "either with --objectives or as objective:dsds"),
        (["--workers", "2"], "--engine local runs one worker"),
    ],
)
def test_bad_batch_options_are_one_line(tmp_path, capsys, extra, message):
    prompts = write(tmp_path / "p.txt", "a red apple\n")
    assert main(batch(prompts, tmp_path / "out", *extra)) == 2
    printed = capsys.readouterr().out
    assert message in printed and printed.count("\n") == 1, printed


def test_shards_cover_the_list_exactly_once_and_read_slurm_and_torchrun_variables(tmp_path):
    prompts = write(tmp_path / "p.txt", "".join(f"prompt number {index}\n" for index in range(7)))
    options = BatchOptions(prompts=prompts, out=tmp_path / "out", seeds="0,1")
    plan = plan_batch(options, TINY, train_config_from_flags)
    shards = [shard_of(plan, (index, 3)) for index in (1, 2, 3)]
    ids = [item.id for shard in shards for item in shard]
    assert sorted(ids) == sorted(item.id for item in plan) and len(ids) == len(set(ids)) == 14
    assert options.resolved_shard(
        {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    ) == (3, 4)
    assert options.resolved_shard({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}) == (1, 2)
    assert options.resolved_shard({"RANK": "1", "WORLD_SIZE": "2"}) == (2, 2)
    assert options.resolved_shard({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert replace(options, shard="2/5").resolved_shard({"RANK": "0", "WORLD_SIZE": "2"}) == (2, 5)


# -- runs ------------------------------------------------------------------------------------------------


def test_two_shards_in_one_folder_run_every_item_once_then_a_rerun_does_no_work(tmp_path, tiny_models, capsys):
    prompts = write(tmp_path / "p.txt", "a red apple\na blue mug\na green cup\n")
    out = tmp_path / "out"
    for shard in ("1/2", "2/2"):
        assert main(batch(prompts, out, "--shard", shard)) == 0, capsys.readouterr().out
    first = manifest_lines(out, "manifest.shard-1-of-2.jsonl")
    second = manifest_lines(out, "manifest.shard-2-of-2.jsonl")
    assert [entry["id"] for entry in first] == ["a-red-apple-dsds-s0", "a-green-cup-dsds-s0"]
    assert [entry["id"] for entry in second] == ["a-blue-mug-dsds-s0"]
    for entry in first + second:
        assert entry["status"] == "done" and entry["attempts"] == 1 and entry["error"] is None
        assert len(read_ply(out / entry["ply"])) > 0 and (out / entry["views"]).is_file()
        assert (out / entry["run"] / "report.html").is_file()  # what `splatgen train` writes, too
    assert sorted(path.name for path in out.iterdir() if (path / "config.yaml").is_file()) == sorted(
        entry["id"] for entry in first + second
    )
    html = (out / "index.html").read_text()
    assert html.count('<article class="card"') == 3 and 'http-equiv="refresh"' not in html

    capsys.readouterr()
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file() and "logs" not in path.parts}
    assert main(batch(prompts, out)) == 0  # the whole list, unsharded: both shards' items count as done
    printed = capsys.readouterr().out
    assert "nothing to do: all 3 items are done" in printed, printed
    changed = [path for path, mtime in before.items() if path.stat().st_mtime_ns != mtime]
    assert all(path.name in ("index.html", "manifest.jsonl") for path in changed), changed
    assert [entry["status"] for entry in manifest_lines(out)] == ["done"] * 3


def test_a_failing_item_is_recorded_and_the_batch_goes_on(tmp_path, tiny_models, capsys):
    prompts = write(
        tmp_path / "p.jsonl",
        '{"prompt": "a red apple", "init": {"type": "ply", "path": "missing.ply"}}\n{"prompt": "a blue mug"}\n',
    )
    out = tmp_path / "out"
    assert main(batch(prompts, out)) == 1  # some items failed
    printed = capsys.readouterr().out
    failed, done = manifest_lines(out)
    assert failed["status"] == "failed" and "missing.ply" in failed["error"] and "\n" not in failed["error"]
    assert done["status"] == "done" and (out / done["ply"]).is_file()
    assert "failed a-red-apple-dsds-s0" in printed and "1 failed" in printed
    assert "Traceback" in (out / failed["log"]).read_text() or "missing.ply" in (out / failed["log"]).read_text()
    html = (out / "index.html").read_text()
    assert 'data-status="failed"' in html and "missing.ply" in html


def test_a_second_batch_on_the_same_folder_is_refused_and_a_taken_run_folder_is_reported(tmp_path, tiny_models, capsys):
    prompts = write(tmp_path / "p.txt", "a red apple\na blue mug\n")
    out = tmp_path / "out"
    held = lock_batch(out, None)
    try:
        assert main(batch(prompts, out)) == 2
        printed = capsys.readouterr().out
        assert "another splatgen batch" in printed and f"pid {os.getpid()}" in printed and printed.count("\n") == 1
    finally:
        held.release()
    taken = RunFolder(out / "a-red-apple-dsds-s0").lock()  # another live process owns this item's folder
    try:
        assert main(batch(prompts, out)) == 0
        printed = capsys.readouterr().out
    finally:
        taken.release()
    apple, mug = manifest_lines(out)
    assert apple["status"] == "queued" and "in use by another splatgen run" in apple["error"]
    assert "skipped a-red-apple-dsds-s0" in printed and mug["status"] == "done"
    assert not (out / "a-red-apple-dsds-s0" / "config.yaml").exists()  # not raced: nothing written there
    assert main(batch(prompts, out)) == 0  # free again: the next run does it
    assert [entry["status"] for entry in manifest_lines(out)] == ["done", "done"]


@pytest.mark.slow
def test_ctrl_c_stops_a_batch_cleanly_and_the_next_run_resumes_from_the_checkpoint(tmp_path, tiny_models):
    prompts = write(tmp_path / "p.txt", "a red apple\na blue mug\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "splatgen", *batch(prompts, out)]
    command[command.index("--steps") + 1] = "100000"  # far more than it will get through
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    checkpoint = out / "a-red-apple-dsds-s0" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 900  # a hang guard: the loop ends when the first checkpoint is written
    while not checkpoint.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    printed, _ = process.communicate(timeout=900)
    assert process.returncode == 130, printed
    apple, mug = manifest_lines(out)
    assert apple["status"] == "queued" and apple["attempts"] == 1 and "resumes it" in apple["error"], apple
    assert mug["status"] == "queued" and mug["attempts"] == 0
    assert checkpoint.is_file() and "stopped at step" in (out / apple["log"]).read_text()

    assert main(batch(prompts, out, "--steps", "2")) == 0  # the same items (a resume may change --steps)
    log = (out / "logs" / "a-red-apple-dsds-s0.log").read_text()
    assert "resuming" in log and "from step" in log, log
    apple, mug = manifest_lines(out)
    assert apple["status"] == mug["status"] == "done" and apple["attempts"] == 2
    assert len(read_ply(out / apple["ply"])) > 0


# -- the model cache -------------------------------------------------------------------------------------


def test_the_model_cache_loads_once_and_a_lora_run_leaves_the_prior_as_it_was(tmp_path, tiny_models):
    models = ModelCache()
    config = train_config_from_flags(
        "smoke", ["--steps", "2", "--video-frames", "0", "--no-viewer", "--prompt", "a red apple"]
    )
    prior = models.prior(config, torch.device("cpu"), QUIET)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = prior.embed_prompts(["a red apple"])
    before = prior.predict_noise(latents, torch.tensor([500]), text)
    for index, objective in enumerate(("esd", "dsds", "vsd")):
        run = replace(
            train_config_from_flags(
                "smoke", [f"objective:{objective}", "--steps", "2", "--video-frames", "0", "--no-viewer"]
            ),
            prompt="a red apple",
            out=tmp_path / f"run{index}",
        )
        result = train(run, models=models, console=QUIET)
        assert result.steps_completed == 2
    assert models.loads == 2  # one prior, one LM, for three runs (two with a LoRA on the prior's UNet)
    again = models.prior(config, torch.device("cpu"), QUIET)
    assert again is prior and "splatgen_lora_score" not in (getattr(prior.unet, "peft_config", None) or {})
    torch.testing.assert_close(prior.predict_noise(latents, torch.tensor([500]), text), before, rtol=0, atol=0)
