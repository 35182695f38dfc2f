"""`splatgen compare RUN [RUN ...]`: several runs side by side (say, one prompt under each objective).

    compare_rows(runs) -> (headers, rows)     the table (also printed with rich)
    compare_html(run_dirs, out_path) -> str   the page: the table, then each run's views and video
    write_compare(run_dirs, out_path) -> Path

Media are linked relative to the page's folder, so the page opens from the file system as long
as the runs stay where they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from splatgen.eval.summary import summary_rows
from splatgen.io.atomic import write_text_atomic
from splatgen.report.page import REPORT_FILE, RunSummary, esc, html_page, html_table, media_html, read_run


def compare_rows(runs: list[RunSummary]) -> tuple[list[str], list[list[Any]]]:
    """One row per metric, one column per run: the training facts, then the eval numbers when present."""
    headers = ["", *(run.path.name for run in runs)]
    facts = [run.facts() for run in runs]
    rows: list[list[Any]] = [["prompt", *(run.prompt for run in runs)]]
    rows += [[key, *(fact[key] for fact in facts)] for key in facts[0]]
    evaluated = [summary_rows(run.eval) if run.eval is not None else None for run in runs]
    if any(evaluated):
        metrics = next(summary for summary in evaluated if summary)
        rows += [[metric, *((summary or {}).get(metric, "-") for summary in evaluated)] for metric in metrics]
    return headers, rows


def compare_html(run_dirs: list[Path], out_path: Path) -> str:
    runs = [read_run(path) for path in run_dirs]
    headers, rows = compare_rows(runs)
    base = Path(out_path).resolve().parent
    cards = []
    for run in runs:
        prefix = os.path.relpath(run.path.resolve(), base).replace(os.sep, "/") + "/"
        report = f'<a href="{esc(prefix + REPORT_FILE)}">report</a>' if (run.path / REPORT_FILE).is_file() else ""
        title = f"{esc(run.path.name)}: {esc(run.objective)}, {esc(run.prompt)}"
        cards.append(f"<section><h2>{title} {report}</h2>{media_html(run, prefix)}</section>")
    body = (
        f"<h1>splatgen compare: {len(runs)} runs</h1>"
        + '<p class="subtitle">Eval rows appear for runs measured with splatgen eval.</p>'
        + html_table(headers, rows)
        + f'<div class="runs">{"".join(cards)}</div>'
    )
    return html_page("splatgen compare", body)


def write_compare(run_dirs: list[Path], out_path: Path) -> Path:
    out_path = Path(out_path)
    write_text_atomic(out_path, compare_html(run_dirs, out_path))
    return out_path
