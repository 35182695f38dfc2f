"""`RUN/report.html`: one static page per run, built from the files the run folder already holds.

    read_run(run_dir) -> RunSummary          what the page (and `compare`) shows of a run
    run_report_html(run_dir) -> str          the page
    write_run_report(run_dir) -> Path        RUN/report.html, written atomically

Sections, each shown when its file exists: the turntable video (turntable.mp4, or the GIF
fallback) and the views grid (views.png), linked relatively so the page opens from the file
system; the eval table (eval.json, with the per-view CLIP labels); plots of loss, gradient norm,
Gaussian count and the truncation / densify-threshold coupling (metrics.jsonl and
refinements.jsonl, inline SVG); the refinement log; the view prompts with their azimuth and
elevation ranges (prompts.json); the config (config.yaml). All text is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splatgen.eval.summary import format_number, summary_rows
from splatgen.io.atomic import write_text_atomic
from splatgen.io.jsonl import read_records
from splatgen.report.plots import plots_available, run_plots
from splatgen.train.metrics import METRICS_FILE, REFINEMENTS_FILE

REPORT_FILE = "report.html"
VIDEO_FILES = ("turntable.mp4", "turntable.gif")
VIEWS_FILE = "views.png"
PLOT_TITLES = {
    "loss": "Loss",
    "grad-norm": "Gradient norm",
    "gaussians": "Gaussian count",
    "coupling": "Truncation / densify threshold",
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2733; background: #f5f7fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.1rem; margin: 28px 0 10px; border-bottom: 1px solid #d8dee6; padding-bottom: 4px; }
.subtitle { color: #5b6b7b; margin: 0 0 8px; }
.facts { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; padding: 0; list-style: none; }
.facts li { background: #fff; border: 1px solid #d8dee6; border-radius: 6px; padding: 6px 10px; font-size: 0.9rem; }
.facts b { color: #5b6b7b; font-weight: 500; margin-right: 4px; }
.media { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.media figure { margin: 0; background: #fff; border: 1px solid #d8dee6; border-radius: 6px; padding: 8px; }
.media video, .media img.turntable { width: 320px; height: 320px; object-fit: contain; display: block; }
.media img.views { max-width: 780px; width: 100%; display: block; }
figcaption { font-size: 0.8rem; color: #5b6b7b; margin-top: 4px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
.plots figure { margin: 0; background: #fff; border: 1px solid #d8dee6; border-radius: 6px; padding: 8px; }
.plots svg { width: 100%; height: auto; }
table { border-collapse: collapse; background: #fff; font-size: 0.88rem; }
th, td { border: 1px solid #d8dee6; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #fff; border: 1px solid #d8dee6; border-radius: 6px; padding: 10px; overflow: auto; max-height: 420px; font-size: 0.8rem; }
.note { color: #5b6b7b; font-size: 0.88rem; }
.flag { color: #b03a2e; font-weight: 600; }
.scroll { overflow-x: auto; }
.runs { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; margin-top: 20px; }
.runs section { background: #fff; border: 1px solid #d8dee6; border-radius: 6px; padding: 10px 12px; }
.runs h2 { margin-top: 0; font-size: 1rem; }
.runs .media { flex-direction: column; }
.runs .media figure { border: none; padding: 0; width: 100%; }
.runs .media video, .runs .media img.turntable { width: 100%; height: auto; max-height: 360px; }
.runs .media img.views { max-width: none; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    """A table; cells from column `numeric_from` on are right-aligned. Cells are escaped."""
    head = "".join(f"<th>{esc(header)}</th>" for header in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(cell)}</td>' if index >= numeric_from else f"<td>{esc(cell)}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def html_page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class RunSummary:
    """What a report shows of one run, read from its folder (missing files give empty fields)."""

    path: Path
    config_text: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    refinements: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, Any] | None = None
    video: Path | None = None
    views: Path | None = None

    @property
    def prompt(self) -> str:
        return str((self.prompts or {}).get("prompt") or self.config.get("prompt") or self.path.name)

    @property
    def objective(self) -> str:
        objective = self.config.get("objective")
        return str(objective.get("type", "?")) if isinstance(objective, dict) else "?"

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def facts(self) -> dict[str, str]:
        """Headline facts: objective, steps, time, final loss and Gaussian count."""
        last = self.last
        steps = self.config.get("steps")
        seconds = last.get("seconds")
        return {
            "objective": self.objective,
            "steps": f"{last.get('step', 0)}/{steps}" if steps else str(last.get("step", "-")),
            "train time": "-" if seconds is None else f"{seconds:.1f} s",
            "final loss": format_number(last.get("loss"), 4),
            "Gaussians": "-" if last.get("num_gaussians") is None else f"{last['num_gaussians']:,}",
            "refinements": str(len(self.refinements)),
            "skipped steps": str(last.get("skipped_steps", 0)),
        }


def read_run(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    eval_data = _read_json(run_dir / "eval.json")
    return RunSummary(
        path=run_dir,
        config_text=config_path.read_text(encoding="utf-8") if config_path.is_file() else "",
        config=_read_yaml(config_path) if config_path.is_file() else {},
        prompts=_read_json(run_dir / "prompts.json"),
        records=read_records(run_dir / METRICS_FILE),
        refinements=read_records(run_dir / REFINEMENTS_FILE),
        eval=eval_data if isinstance(eval_data, dict) else None,
        video=next((run_dir / name for name in VIDEO_FILES if (run_dir / name).is_file()), None),
        views=run_dir / VIEWS_FILE if (run_dir / VIEWS_FILE).is_file() else None,
    )


def media_html(run: RunSummary, link_prefix: str = "") -> str:
    """The turntable and the views grid, linked as `link_prefix + file name`."""
    parts = []
    if run.video is not None and run.video.suffix == ".mp4":
        parts.append(
            f'<figure><video class="turntable" src="{esc(link_prefix + run.video.name)}" controls loop autoplay muted '
            "playsinline></video><figcaption>turntable (front first)</figcaption></figure>"
        )
    elif run.video is not None:
        parts.append(
            f'<figure><img class="turntable" src="{esc(link_prefix + run.video.name)}" alt="turntable">'
            "<figcaption>turntable (GIF: no ffmpeg when it was made)</figcaption></figure>"
        )
    if run.views is not None:
        parts.append(
            f'<figure><img class="views" src="{esc(link_prefix + run.views.name)}" alt="views grid">'
            "<figcaption>views, azimuth 0 = front</figcaption></figure>"
        )
    if not parts:
        return '<p class="note">No turntable yet (the run was stopped early or trained with --video-frames 0).</p>'
    return f'<div class="media">{"".join(parts)}</div>'


def eval_html(result: dict[str, Any]) -> str:
    rows = [[metric, value] for metric, value in summary_rows(result).items()]
    settings = result.get("settings", {})
    note = (
        f"CLIP {settings.get('clip_model', '?')}, {settings.get('frames', '?')} frames at "
        f"{settings.get('resolution', '?')} px, LPIPS {settings.get('lpips_net', '?')} "
        f"({settings.get('lpips_input', '?')} input). Tiny random models give meaningless numbers."
    )
    per_view = result.get("views", {}).get("per_view", [])
    view_rows = [
        [
            f"{view['azimuth']:.0f}",
            view["expected"],
            view["predicted"],
            *(f"{view['scores'][label]:.2f}" for label in ("front", "side", "back")),
        ]
        for view in per_view
    ]
    flagged = result.get("views", {}).get("back_looks_front")
    warning = (
        '<p class="flag">Most back views read as "front" to CLIP: a face on the back (Janus) is likely.</p>'
        if isinstance(flagged, (int, float)) and flagged > 0.5
        else ""
    )
    return (
        html_table(["metric", "value"], rows)
        + f'<p class="note">{esc(note)}</p>{warning}'
        + "<h3>Per-view CLIP labels</h3>"
        + html_table(
            ["azimuth", "expected", "CLIP says", "front x100", "side x100", "back x100"], view_rows, numeric_from=3
        )
    )


def plots_html(run: RunSummary) -> str:
    if not run.records:
        return '<p class="note">No metrics.jsonl in this run folder.</p>'
    if not plots_available():
        return '<p class="note">Plots need matplotlib: pip install "splatgen[eval]".</p>'
    figures = run_plots(run.records, run.refinements)
    return (
        '<div class="plots">'
        + "".join(
            f'<figure class="plot" id="plot-{esc(name)}" aria-label="{esc(PLOT_TITLES[name])}">{svg}</figure>'
            for name, svg in figures.items()
        )
        + "</div>"
    )


def refinements_html(run: RunSummary) -> str:
    if not run.refinements:
        return '<p class="note">No refinements.</p>'
    rows = [
        [
            record["step"],
            format_number(record.get("truncation"), 2),
            format_number(record.get("grow_threshold"), 3),
            f"{record['effective_grow_grad2d']:.3g}" if record.get("effective_grow_grad2d") else "-",
            f"{record['median_grad2d']:.3g}" if record.get("median_grad2d") else "-",
            record.get("duplicated", 0),
            record.get("split", 0),
            record.get("pruned", 0),
            record.get("capped", 0),
            f"{record.get('num_gaussians', 0):,}",
        ]
        for record in run.refinements
    ]
    headers = ["step", "truncation", "threshold (rule)", "threshold (grad)", "median grad"]
    headers += ["duplicated", "split", "pruned", "held back", "Gaussians"]
    return html_table(headers, rows, numeric_from=0)


def _arcs(intervals: list[list[float]]) -> str:
    return ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in intervals)


def prompts_html(prompts: dict[str, Any] | None) -> str:
    if not prompts or "views" not in prompts:
        return '<p class="note">No prompts.json.</p>'
    rows = [
        [
            view,
            data.get("prompt", ""),
            ", ".join(data.get("removed", [])) or "-",
            _arcs(data.get("azimuth", [])),
            _arcs([data.get("elevation", [])]) if data.get("elevation") else "",
        ]
        for view, data in prompts["views"].items()
    ]
    return html_table(["view", "prompt", "removed words", "azimuth (deg)", "elevation (deg)"], rows, numeric_from=9)


def run_report_html(run_dir: Path) -> str:
    """The whole report page of one run folder."""
    run = read_run(run_dir)
    facts = "".join(f"<li><b>{esc(key)}</b>{esc(value)}</li>" for key, value in run.facts().items())
    sections = [
        f"<h1>{esc(run.prompt)}</h1>",
        f'<p class="subtitle">splatgen run {esc(run.path.name)}</p>',
        f'<ul class="facts">{facts}</ul>',
        "<h2>Turntable and views</h2>",
        media_html(run),
    ]
    if run.eval is not None:
        sections += ['<h2 id="eval">Evaluation</h2>', eval_html(run.eval)]
    sections += [
        "<h2>Training</h2>",
        plots_html(run),
        "<h2>Refinements</h2>",
        refinements_html(run),
        "<h2>View prompts</h2>",
        prompts_html(run.prompts),
        "<h2>Config</h2>",
        f"<pre>{esc(run.config_text)}</pre>" if run.config_text else '<p class="note">No config.yaml.</p>',
    ]
    return html_page(f"splatgen: {run.prompt}", "\n".join(sections))


def write_run_report(run_dir: Path) -> Path:
    """Write RUN/report.html (atomically) and return its path."""
    path = Path(run_dir) / REPORT_FILE
    write_text_atomic(path, run_report_html(run_dir))
    return path
