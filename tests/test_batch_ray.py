"""`splatgen batch --engine ray` on a real local Ray cluster (2 CPUs, started once for this module):
4 items on 2 workers with one worker SIGKILLed mid-item, a re-run that does no work, and the
gallery page opened in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser import HeadlessChromium, browser_test
from rich.console import Console

from splatgen.batch import BatchOptions, run_batch
from splatgen.cli import train_config_from_flags
from splatgen.io.ply import read_ply

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

PROMPTS = ("a red apple", "a blue ceramic mug", "a green teapot", "a wooden chair")
TRAIN_FLAGS = ["--preset", "smoke", "--steps", "14", "--checkpoint-every", "2", "--video-frames", "4", "--no-debias"]
BATCH_LIMIT_S = 1800  # a hang guard only: four smoke items take minutes even on a loaded machine
QUIET = Console(file=open(os.devnull, "w"), width=120)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the module, small enough for a 2-core machine."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def kill_a_worker_mid_item(out: Path, finished: threading.Event) -> dict:
    """SIGKILL the worker of the first running item that has a checkpoint (and no asset yet); returns its entry.

    Waits for that condition as long as the batch runs (a loaded machine only makes it later)."""
    while not finished.is_set():
        try:
            entries = manifest(out)
        except (FileNotFoundError, json.JSONDecodeError):
            entries = []
        for entry in entries:
            run = out / entry["run"]
            if entry["status"] == "running" and (run / "checkpoints" / "last.pt").is_file():
                if not any(run.glob("*.ply")):
                    os.kill(int(entry["worker"].split()[1]), signal.SIGKILL)  # "pid 4242 on host"
                    return entry
        time.sleep(0.05)
    raise AssertionError("the batch ended before any item was running with a checkpoint to kill its worker")


@pytest.fixture(scope="module")
def killed_batch(ray_cluster, tiny_models, tmp_path_factory):
    """4 items on 2 Ray workers; one worker is killed mid-item. -> (batch folder, summary, killed entry)."""
    root = tmp_path_factory.mktemp("batch")
    prompts = root / "props.txt"
    prompts.write_text("# four props\n" + "\n".join(PROMPTS) + "\n")
    out = root / "out"
    options = BatchOptions(prompts=prompts, out=out, engine="ray", workers=2, retries=2)
    result: dict = {}
    finished = threading.Event()

    def drive() -> None:
        try:
            result["summary"] = run_batch(options, TRAIN_FLAGS, train_config_from_flags, QUIET)
        except BaseException as error:
            result["error"] = error
        finally:
            finished.set()

    driver = threading.Thread(target=drive, name="batch-driver")
    driver.start()
    try:
        killed = kill_a_worker_mid_item(out, finished)
    finally:
        driver.join(timeout=BATCH_LIMIT_S)
    assert not driver.is_alive(), f"the batch did not finish in {BATCH_LIMIT_S} s"
    assert "error" not in result, repr(result.get("error"))
    return out, result["summary"], killed, options


def test_four_items_on_two_workers_survive_a_killed_worker(killed_batch):
    out, summary, killed, _ = killed_batch
    assert (summary.done, summary.failed, summary.total, summary.interrupted) == (4, 0, 4, False)
    entries = manifest(out)
    assert [entry["prompt"] for entry in entries] == list(PROMPTS)
    assert all(entry["status"] == "done" and entry["error"] is None for entry in entries)
    retried = next(entry for entry in entries if entry["id"] == killed["id"])
    assert retried["attempts"] == 2 and all(e["attempts"] == 1 for e in entries if e["id"] != killed["id"])
    log = (out / retried["log"]).read_text()
    assert "resuming" in log and "from step" in log  # the retry continued from the killed run's checkpoint
    assert len({entry["worker"] for entry in entries}) >= 2  # both workers took items
    folders = sorted(path.name for path in out.iterdir() if path.is_dir())
    assert folders == sorted([entry["id"] for entry in entries] + ["logs"])  # no duplicate run folder
    for entry in entries:
        run = out / entry["run"]
        asset = read_ply(out / entry["ply"])
        assert len(asset) > 0 and bool(asset.finite_mask().all())
        for name in ("config.yaml", "prompts.json", "checkpoints/last.pt", "turntable.mp4", "views.png", "report.html"):
            assert (run / name).is_file(), (entry["id"], name)
        assert not [path for path in run.rglob(".*") if path.name != ".lock"], "temporary files left behind"


def test_rerunning_the_batch_does_no_work(killed_batch, capsys):
    out, _, _, options = killed_batch
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file() and path.name != ".batch.lock"}
    summary = run_batch(options, TRAIN_FLAGS, train_config_from_flags, Console(width=120))
    assert (summary.done, summary.skipped, summary.failed) == (4, 4, 0)
    assert "nothing to do: all 4 items are done" in capsys.readouterr().out
    changed = sorted(path.name for path, mtime in before.items() if path.stat().st_mtime_ns != mtime)
    assert changed == ["index.html", "manifest.jsonl"]


@browser_test
def test_the_gallery_shows_one_card_per_item_with_its_turntable(killed_batch, tmp_path):
    out, _, _, _ = killed_batch
    with HeadlessChromium((out / "index.html").as_uri(), window_size=(1280, 2000)) as browser:
        ready = browser.evaluate_until(  # every card's video has a frame (or its image has loaded)
            "[...document.querySelectorAll('.card .media')].map(m => { const v = m.querySelector('video');"
            " const i = m.querySelector('img'); return v ? v.readyState >= 2 : Boolean(i && i.complete && i.naturalWidth); })",
            ready=lambda value: bool(value) and all(value),
        )
        boxes = browser.evaluate(
            "[...document.querySelectorAll('.card .media')].map(m => { const r = m.getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })"
        )
        texts = browser.evaluate("[...document.querySelectorAll('.card .prompt')].map(p => p.textContent)")
        image = browser.capture()
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "gallery.png")
    assert ready and all(ready), f"media not loaded: {ready}"
    assert texts == list(PROMPTS) and len(boxes) == 4
    for prompt, (left, top, width, height) in zip(PROMPTS, boxes):
        card = image[int(top) : int(top + height), int(left) : int(left + width)]
        assert card.size, f"the card of {prompt!r} is outside the window"
        drawn = float((np.abs(card.astype(np.int16) - 255).max(axis=-1) > 24).mean())
        assert drawn > 0.02, f"the card of {prompt!r} shows almost nothing ({drawn:.1%} non-white; see {tmp_path})"
