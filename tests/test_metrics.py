"""metrics.jsonl: strict JSON lines, torn lines skipped, resume drops the replayed steps."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from test_train import QUIET, tiny_config

from splatgen.cli import parse_train_args
from splatgen.train.loop import train
from splatgen.train.metrics import METRICS_FILE, REFINEMENTS_FILE, MetricsLog, read_records


def test_records_are_strict_json_lines_and_any_field_can_be_added(tmp_path):
    log = MetricsLog(tmp_path / METRICS_FILE)
    log.append({"step": 1, "loss": 0.5, "grad_norm": math.nan})
    log.append({"step": 2, "loss": math.inf, "densify": {"split": 3}})
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "loss": 0.5, "grad_norm": None},
        {"step": 2, "loss": None, "densify": {"split": 3}},
    ]
    with pytest.raises(ValueError, match="integer 'step'"):
        log.append({"loss": 1.0})


def test_a_torn_last_line_is_skipped_and_duplicate_steps_keep_the_last(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 2.0}\n{"step": 1, "loss": 9.0}\n{"step": 3, "lo')
    assert read_records(path) == [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 2.0}]
    kept = MetricsLog(path).resume(1)
    assert kept == [{"step": 1, "loss": 9.0}]
    assert path.read_text() == '{"step": 1, "loss": 9.0}\n'
    assert read_records(tmp_path / "missing.jsonl") == []


def _without_seconds(records):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in records]


@pytest.mark.slow
def test_a_crashed_run_resumed_from_its_checkpoint_logs_each_step_once(tmp_path, tiny_models):
    """Log every 2 steps, checkpoint every 4, crash after step 6: the resume replays 5..6 and logs them once."""
    settings = dict(steps=12, log_every=2, checkpoint_every=4)
    whole = train(tiny_config(tmp_path / "whole", **settings), console=QUIET)
    expected = read_records(whole.run_dir / METRICS_FILE)
    assert [record["step"] for record in expected] == [2, 4, 6, 8, 10, 12]
    assert set(expected[0]) >= {"loss", "grad_norm", "num_gaussians", "truncation", "grow_threshold", "t_min"}
    assert expected[-1]["refinements"] == 1 and expected[-1]["seconds"] > 0  # the smoke schedule refines at step 10
    assert [record["step"] for record in read_records(whole.run_dir / REFINEMENTS_FILE)] == [11]

    def crash(step: int) -> None:
        if step == 6:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config(tmp_path / "crashed", **settings), console=QUIET, on_step=crash)
    assert [record["step"] for record in read_records(tmp_path / "crashed" / METRICS_FILE)] == [2, 4, 6]

    resumed = train(replace(parse_train_args(["--resume", str(tmp_path / "crashed")]), video_frames=0), console=QUIET)
    lines = (resumed.run_dir / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 6, 8, 10, 12]  # the file itself, not just the reader
    assert _without_seconds(read_records(resumed.run_dir / METRICS_FILE)) == _without_seconds(expected)
    assert read_records(resumed.run_dir / REFINEMENTS_FILE) == read_records(whole.run_dir / REFINEMENTS_FILE)


def test_the_refinement_log_line_is_formatted_from_its_record():
    from splatgen.scene.densify import DensifyThresholds, RefineReport
    from splatgen.train.loop import _describe_refinement, _refinement_record

    report = RefineReport(
        step=10,
        thresholds=DensifyThresholds(grow_grad2d=0.57, prune_opacity=0.005),
        duplicated=3,
        split=2,
        pruned=1,
        capped=4,
        num_gaussians=1234,
        reference=0.2,
        effective_grow_grad2d=0.114,
        median_grad2d=0.15,
    )
    record = _refinement_record(report, truncation=0.5)
    assert record["step"] == 11 and json.loads(json.dumps(record)) == record
    assert _describe_refinement(record) == (
        "refine @ step 10: truncation 0.50, grow threshold 0.114 (0.57 x reference 0.2), median gradient 0.15, "
        "+3 duplicated +2 split -1 pruned (4 held back by the cap) -> 1,234 Gaussians"
    )
    absolute = _refinement_record(replace(report, reference=None, capped=0), truncation=None)
    assert _describe_refinement(absolute).startswith("refine @ step 10: truncation -, grow threshold 0.114, median")
