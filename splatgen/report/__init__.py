"""Run reports: static HTML pages built from what a run folder holds.

Contract:
- `write_run_report(run_dir) -> Path` writes `RUN/report.html`; `run_report_html(run_dir) -> str`
  returns it (the batch gallery and other pages can embed or link it). Reads config.yaml,
  prompts.json, metrics.jsonl, refinements.jsonl, eval.json, turntable.mp4/.gif and views.png;
  every one is optional, a missing one leaves its section with a note.
- `write_compare(run_dirs, out_path) -> Path` writes a side-by-side page; `compare_rows(runs)`
  is its table (the CLI prints it with rich).
- The pages open from the file system: media are linked relatively, plots are inline SVG, no
  script and no network. Plots need matplotlib (the `eval` extra).

Imports flow one way: report -> {eval.summary, train.metrics, io}; train does not import report.
"""

from splatgen.report.compare import compare_rows, write_compare
from splatgen.report.page import REPORT_FILE, RunSummary, read_run, run_report_html, write_run_report

__all__ = [
    "REPORT_FILE",
    "RunSummary",
    "compare_rows",
    "read_run",
    "run_report_html",
    "write_compare",
    "write_run_report",
]
