"""report.html and compare.html: built from run-folder files, escaped, and really shown by a browser."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import HeadlessChromium, browser_test

from splatgen.cli import main
from splatgen.io.jsonl import JsonLinesLog
from splatgen.prompts.views import plain_view_prompts
from splatgen.report import read_run, run_report_html, write_compare
from splatgen.report.compare import compare_rows
from splatgen.train.metrics import METRICS_FILE, REFINEMENTS_FILE

EVAL_RESULT = {
    "input": "run",
    "prompt": "a corgi",
    "clip_similarity": 27.5,
    "a_lpips": 0.0312,
    "view_consistency": {"error": 0.021, "coverage": 0.8},
    "views": {
        "agreement": 0.5,
        "back_looks_front": 1.0,
        "per_view": [
            {
                "azimuth": 0.0,
                "expected": "front",
                "predicted": "front",
                "scores": {"front": 30, "side": 20, "back": 10},
            },
            {
                "azimuth": 180.0,
                "expected": "back",
                "predicted": "front",
                "scores": {"front": 30, "side": 20, "back": 10},
            },
        ],
    },
    "settings": {"clip_model": "openai/clip-vit-base-patch32", "frames": 100, "resolution": 512, "lpips_net": "vgg"},
}


class _Collector(HTMLParser):
    """Tags and text of a page (a real HTML parser, not substring checks)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def fake_run(folder: Path, prompt: str, objective: str = "dsds", with_eval: bool = True) -> Path:
    """A run folder as train leaves it (config, prompts, metrics, refinements), without training."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"prompt: {json.dumps(prompt)}\nsteps: 30\nobjective:\n  type: {objective}\n")
    (folder / "prompts.json").write_text(json.dumps(plain_view_prompts(prompt).to_json()))
    metrics = JsonLinesLog(folder / METRICS_FILE)
    for step in (10, 20, 30):
        metrics.append(
            {
                "step": step,
                "loss": 1.0 / step,
                "grad_norm": 0.1 * step,
                "num_gaussians": 100 * step,
                "truncation": 2.0 + step / 10,
                "grow_threshold": 1e-4 * step,
                "skipped_steps": 0,
                "seconds": 1.5 * step,
            }
        )
    JsonLinesLog(folder / REFINEMENTS_FILE).append(
        {
            "step": 11,
            "truncation": 3.1,
            "grow_threshold": 1.1e-3,
            "duplicated": 5,
            "split": 2,
            "pruned": 7,
            "capped": 0,
            "num_gaussians": 1200,
        }
    )
    if with_eval:
        (folder / "eval.json").write_text(json.dumps({**EVAL_RESULT, "prompt": prompt}))
    return folder


def test_the_report_shows_every_section_and_escapes_text(tmp_path):
    run = fake_run(tmp_path / "run", "a <b>corgi</b> & a cat")
    page = run_report_html(run)
    parsed = parse(page)
    text = " ".join(parsed.text)
    figures = [attrs["id"] for tag, attrs in parsed.tags if tag == "figure" and "id" in attrs]
    assert figures == ["plot-loss", "plot-grad-norm", "plot-gaussians", "plot-coupling"]
    assert page.count("<svg") == 4
    assert "<b>corgi</b>" not in page and "a <b>corgi</b> & a cat" in text  # escaped, shown as typed
    assert "27.50" in text and "0.0312" in text and "Janus" in text  # eval table and the back-view flag
    assert "front view" in text and "[-45, 45]" in text  # view prompts and azimuth ranges
    assert "1,200" in text  # the refinement log
    assert "dsds" in [piece.strip() for piece in parsed.text]  # the objective, in the facts line
    assert "No turntable yet" in text  # no media in this folder


def test_a_report_of_a_folder_with_nothing_in_it_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    text = " ".join(parse(run_report_html(tmp_path / "empty")).text)
    assert "No metrics.jsonl" in text and "No prompts.json" in text and "No config.yaml" in text


def test_compare_lines_runs_up_and_links_their_media_relatively(tmp_path):
    first = fake_run(tmp_path / "runs" / "sds", "a corgi", objective="sds")
    second = fake_run(tmp_path / "runs" / "dsds", "a corgi", with_eval=False)
    (first / "views.png").write_bytes(b"")
    headers, rows = compare_rows([read_run(first), read_run(second)])
    assert headers == ["", "sds", "dsds"]
    by_name = {row[0]: row[1:] for row in rows}
    assert by_name["objective"] == ["sds", "dsds"]
    assert by_name["train time"] == ["45.0 s", "45.0 s"]
    assert by_name["CLIP sim x100"] == ["27.50", "-"]
    out = write_compare([first, second], tmp_path / "pages" / "compare.html")
    images = [attrs["src"] for tag, attrs in parse(out.read_text()).tags if tag == "img"]
    assert images == ["../runs/sds/views.png"]
    assert (out.parent / images[0]).resolve() == (first / "views.png").resolve()


def test_report_and_compare_refuse_what_is_not_a_run_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a splatgen run folder" in capsys.readouterr().out
    run = fake_run(tmp_path / "run", "a corgi")
    assert main(["compare", str(run), str(tmp_path / "missing")]) == 2
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()


@browser_test
@pytest.mark.slow
def test_a_trained_runs_report_shows_its_plots_video_and_views_in_chromium(tmp_path, tiny_models, capsys):
    out = tmp_path / "apple"
    arguments = ["--preset", "smoke", "--prompt", "a red apple", "--out", str(out), "--no-viewer", "--steps", "12"]
    assert main(["train", *arguments, "--log-every", "4"]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    assert (out / METRICS_FILE).is_file() and (out / "report.html").is_file()
    with HeadlessChromium((out / "report.html").as_uri(), window_size=(1200, 900)) as browser:
        state = browser.evaluate_until(
            "({plots: document.querySelectorAll('figure.plot svg').length,"
            " video: (v => v ? v.readyState >= 2 && v.videoWidth > 0 : false)(document.querySelector('video')),"
            " views: (i => i ? i.complete && i.naturalWidth > 0 : false)(document.querySelector('img.views'))})",
            ready=lambda state: state["plots"] == 4 and state["video"] and state["views"],
        )
        assert state == {"plots": 4, "video": True, "views": True}, state
