"""`DIR/index.html`: a static gallery of the batch, one card per item, opening from the file system.

Each card: the turntable video (turntable.mp4, or the GIF fallback; the views grid as its poster),
the views grid, the prompt, objective, seed, time and status, and links to what the run folder
holds: the PLY, the mesh (.glb from `--export-mesh`), report.html, metrics.jsonl, eval.json (from
`splatgen eval`), config.yaml and the item's log. A failed card shows its one-line error. Links are
relative to DIR, so the page works copied elsewhere with the folder. While the batch runs the page
reloads itself every 30 s; it is rewritten (atomically) each time an item changes state.

A gallery of hundreds of items must not decode hundreds of videos: each video is `preload="none"` with
the views grid as its poster, and a small script plays the videos whose card is on screen and pauses
the others as the page scrolls; GIFs and view grids load lazily.
"""

from __future__ import annotations

import time
from pathlib import Path

from splatgen.batch.manifest import ManifestEntry
from splatgen.io.atomic import write_text_atomic
from splatgen.report.page import esc

GALLERY_FILE = "index.html"
RELOAD_SECONDS = 30
LINKS = (  # (label, file name in the run folder or a suffix of one)
    ("PLY", ".ply"),
    ("mesh", ".glb"),
    ("report", "report.html"),
    ("metrics", "metrics.jsonl"),
    ("eval", "eval.json"),
    ("config", "config.yaml"),
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2733; background: #f5f7fa; }
header { padding: 20px 28px 8px; }
h1 { font-size: 1.4rem; margin: 0 0 4px; }
.summary { color: #5b6b7b; margin: 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 16px; padding: 16px 28px 40px; }
.card { background: #fff; border: 1px solid #d8dee6; border-radius: 8px; overflow: hidden; display: flex; flex-direction: column; }
.card .media { background: #fff; aspect-ratio: 1 / 1; display: flex; align-items: center; justify-content: center; border-bottom: 1px solid #eef2f6; }
.card .media video, .card .media img { width: 100%; height: 100%; object-fit: contain; display: block; }
.card .placeholder { color: #8a97a5; font-size: 0.95rem; }
.card img.views { width: 100%; display: block; border-bottom: 1px solid #eef2f6; }
.card .body { padding: 10px 12px 12px; display: flex; flex-direction: column; gap: 6px; }
.card .prompt { font-weight: 600; line-height: 1.3; }
.card .facts { color: #5b6b7b; font-size: 0.85rem; }
.card .links a { font-size: 0.85rem; margin-right: 10px; color: #1f5fbf; }
.card .error { color: #a3261b; font-size: 0.85rem; overflow-wrap: anywhere; }
.status { display: inline-block; font-size: 0.75rem; font-weight: 600; padding: 1px 8px; border-radius: 10px; text-transform: uppercase; }
.status.done { background: #dff3e4; color: #1c6b34; }
.status.failed { background: #fbe3e0; color: #a3261b; }
.status.running { background: #e2ecfb; color: #1f4f99; }
.status.queued { background: #eef2f6; color: #5b6b7b; }
"""

PLAY_IN_VIEW = """
// Play the turntables whose card is on screen, pause the rest (a video loads nothing until played).
const videos = document.querySelectorAll(".card .media video");
const inView = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (entry.isIntersecting) entry.target.play().catch(() => {});
    else entry.target.pause();
  }
}, { rootMargin: "200px 0px" });
videos.forEach((video) => inView.observe(video));
"""


def _existing(out_dir: Path, relative: str | None) -> str | None:
    return relative if relative and (out_dir / relative).is_file() else None


def _run_file(out_dir: Path, entry: ManifestEntry, name: str) -> str | None:
    """The run folder's file `name` (or its first file ending in `name`), relative to DIR, if it exists."""
    run = out_dir / entry.run
    if name.startswith("."):
        found = sorted(path for path in run.glob(f"*{name}") if not path.name.startswith(("export_step_", ".")))
        return found[0].relative_to(out_dir).as_posix() if found else None
    return (Path(entry.run) / name).as_posix() if (run / name).is_file() else None


def card_html(out_dir: Path, entry: ManifestEntry) -> str:
    views = _run_file(out_dir, entry, "views.png")
    video = _run_file(out_dir, entry, "turntable.mp4") or _run_file(out_dir, entry, "turntable.gif")
    if video is not None and video.endswith(".mp4"):
        poster = f' poster="{esc(views)}"' if views else ""
        media = f'<video src="{esc(video)}"{poster} preload="none" loop muted playsinline></video>'
    elif video is not None:
        media = f'<img src="{esc(video)}" loading="lazy" alt="turntable of {esc(entry.prompt)}">'
    else:
        media = f'<span class="placeholder">{esc(entry.status)}</span>'
    links = [
        f'<a href="{esc(path)}">{esc(label)}</a>'
        for label, name in LINKS
        if (path := _run_file(out_dir, entry, name)) is not None
    ]
    log = _existing(out_dir, entry.log)
    if log is not None:
        links.append(f'<a href="{esc(log)}">log</a>')
    seconds = f" · {entry.seconds:.0f} s" if entry.seconds else ""
    attempts = f" · {entry.attempts} attempts" if entry.attempts > 1 else ""
    error = f'<div class="error">{esc(entry.error)}</div>' if entry.error and entry.status != "done" else ""
    views_html = (
        f'<img class="views" src="{esc(views)}" loading="lazy" alt="views of {esc(entry.prompt)}">' if views else ""
    )
    return (
        f'<article class="card" id="{esc(entry.id)}" data-status="{esc(entry.status)}">'
        f'<div class="media">{media}</div>{views_html}<div class="body">'
        f'<div><span class="status {esc(entry.status)}">{esc(entry.status)}</span></div>'
        f'<div class="prompt">{esc(entry.prompt)}</div>'
        f'<div class="facts">{esc(entry.objective)} · seed {esc(entry.seed)}{esc(seconds)}{esc(attempts)}</div>'
        f"{error}"
        f'<div class="links">{"".join(links)}</div></div></article>'
    )


def gallery_html(out_dir: Path, entries: list[ManifestEntry], running: bool) -> str:
    counts = {status: sum(entry.status == status for entry in entries) for status in ("done", "failed", "running")}
    summary = (
        f"{len(entries)} items: {counts['done']} done, {counts['failed']} failed, {counts['running']} running"
        f" · updated {time.strftime('%Y-%m-%d %H:%M:%S')}" + (" · reloads while the batch runs" if running else "")
    )
    reload = f'<meta http-equiv="refresh" content="{RELOAD_SECONDS}">\n' if running else ""
    cards = "\n".join(card_html(out_dir, entry) for entry in entries)
    title = f"splatgen batch: {out_dir.name}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n{reload}'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<header><h1>{esc(title)}</h1><p class="summary">{esc(summary)}</p></header>\n'
        f'<main class="grid">\n{cards}\n</main>\n<script>{PLAY_IN_VIEW}</script>\n</body>\n</html>\n'
    )


def write_gallery(out_dir: Path, entries: list[ManifestEntry], running: bool = False) -> Path:
    path = Path(out_dir) / GALLERY_FILE
    write_text_atomic(path, gallery_html(Path(out_dir), entries, running))
    return path
