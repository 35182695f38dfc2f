"""`splatgen eval`: measure one or more assets and write `eval.json` into each run folder.

    evaluate(targets, settings, ...) -> [result per target]   (one JSON-ready dict each)

Each target is a run folder (its PLY, prompt and view ranges are read from it) or a PLY with a
prompt. Every asset is rendered once on the evaluation turntable (`orbit.py`); the metrics read
those frames:

    clip_similarity     x100, mean over `clip_views` evenly spaced frames (clip.py)
    a_lpips             mean LPIPS of consecutive frames (lpips.py)
    view_consistency    depth-warp colour error of neighbouring frames (consistency.py)
    views               per-view CLIP scores against front/side/back view prompts
    r_precision         with two or more distinct prompts: the fraction of assets whose own
                        prompt retrieves them (clip.py), the pool being the targets' prompts
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from splatgen.eval.clip import VIEW_LABELS, Clip, clip_preprocess, r_precision, view_prompt_texts
from splatgen.eval.consistency import view_consistency
from splatgen.eval.lpips import LPIPS, consecutive_lpips
from splatgen.eval.orbit import OrbitFrames, render_orbit
from splatgen.eval.settings import EvalSettings
from splatgen.eval.summary import summary_rows
from splatgen.eval.targets import EvalTarget
from splatgen.io.atomic import write_text_atomic
from splatgen.io.jsonl import strict_json
from splatgen.prompts.views import VIEW_NAMES, assign_views

EVAL_FILE = "eval.json"
CUDA_RESOLUTION, CPU_RESOLUTION = 512, 128
CLIP_LPIPS_SIZE = 224  # the D-SDS script's CLIP ViT-B/32 preprocessing


def clip_view_indices(num_frames: int, num_views: int) -> list[int]:
    """`num_views` frame indices evenly spaced over the turntable, starting at the front."""
    return sorted({math.floor(k * num_frames / num_views) for k in range(num_views)})


def lpips_inputs(frames: torch.Tensor, mode: str) -> torch.Tensor:  # [F, H, W, 3] in [0, 1] -> [F, 3, h, w]
    if mode == "clip":
        return clip_preprocess(frames, CLIP_LPIPS_SIZE)
    return frames.permute(0, 3, 1, 2) * 2.0 - 1.0


def per_view_labels(
    clip: Clip,
    view_embeddings: torch.Tensor,  # [V, D] unit CLIP image embeddings
    azimuths: torch.Tensor,  # [V]
    elevations: torch.Tensor,  # [V]
    target: EvalTarget,
) -> dict[str, Any]:
    """CLIP scores of each view against the front/side/back view prompts; flags back views that read as front."""
    scores = 100.0 * view_embeddings @ clip.embed_texts(view_prompt_texts(target.prompt)).T  # [V, 3]
    expected = [VIEW_NAMES[index] for index in assign_views(azimuths, elevations, target.ranges).tolist()]
    predicted = [VIEW_LABELS[index] for index in scores.argmax(dim=1).tolist()]
    back = [index for index, view in enumerate(expected) if view == "back"]
    back_as_front = [index for index in back if scores[index, 0] > scores[index, 2]]
    return {
        "agreement": sum(e == p for e, p in zip(expected, predicted)) / len(expected),
        "back_looks_front": len(back_as_front) / len(back) if back else None,
        "per_view": [
            {
                "azimuth": round(float(azimuth), 2),
                "expected": view,
                "predicted": guess,
                "scores": {label: round(float(score), 3) for label, score in zip(VIEW_LABELS, row)},
            }
            for azimuth, view, guess, row in zip(azimuths.tolist(), expected, predicted, scores)
        ],
    }


def measure(
    target: EvalTarget,
    frames: OrbitFrames,
    settings: EvalSettings,
    clip: Clip,
    lpips: LPIPS,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Every single-asset metric of one rendered turntable; also returns the CLIP view embeddings [V, D]."""
    images = frames.over(1.0)  # [F, H, W, 3] on white, what a viewer sees
    picks = clip_view_indices(images.shape[0], settings.clip_views)
    view_embeddings = clip.embed_images(images[picks])  # [V, D]
    similarity = float((view_embeddings @ clip.embed_texts([target.prompt])[0]).mean()) * 100.0
    steps = consecutive_lpips(lpips.to(images.device), lpips_inputs(images, settings.lpips_input))
    consistency = view_consistency(
        frames.colors, frames.alphas, frames.depths, frames.cameras, tolerance=settings.depth_tolerance
    )
    cameras = frames.cameras.select(torch.tensor(picks))
    views = per_view_labels(clip, view_embeddings, cameras.azimuth_deg, cameras.elevation_deg, target)
    result = {
        "clip_similarity": similarity,
        "a_lpips": float(steps.mean()),
        "view_consistency": {"error": consistency.error, "coverage": consistency.coverage},
        "views": views,
    }
    return result, view_embeddings


def evaluate(
    targets: list[EvalTarget],
    settings: EvalSettings,
    device: torch.device,
    console: Console | None = None,
    clip: Clip | None = None,
    lpips: LPIPS | None = None,
) -> list[dict[str, Any]]:
    """Measure every target; adds R-precision when the targets have two or more distinct prompts."""
    from splatgen.io.ply import read_ply
    from splatgen.render.turntable import activate_on

    settings.validate()
    resolution = settings.resolution or (CUDA_RESOLUTION if device.type == "cuda" else CPU_RESOLUTION)
    clip = clip if clip is not None else Clip.load(settings.clip_model, device)
    lpips = lpips if lpips is not None else LPIPS(settings.lpips_net, backbone_path=settings.lpips_backbone)
    results, embeddings = [], []
    for target in targets:
        started = time.perf_counter()
        if console is not None:
            console.print(f"eval {target.label}: {settings.frames} frames at {resolution} px", highlight=False)
        gaussians = activate_on(read_ply(target.ply), device)
        frames = render_orbit(gaussians, settings.frames, resolution, settings.backend)
        metrics, view_embeddings = measure(target, frames, settings, clip, lpips)
        embeddings.append(view_embeddings)
        results.append(
            {
                "input": str(target.run_dir or target.ply),
                "asset": str(target.ply),
                "prompt": target.prompt,
                **metrics,
                "settings": {
                    **{
                        key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()
                    },
                    "resolution": resolution,
                    "clip_views": len(clip_view_indices(settings.frames, settings.clip_views)),
                },
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    add_r_precision(results, embeddings, clip)
    return results


def add_r_precision(results: list[dict[str, Any]], embeddings: list[torch.Tensor], clip: Clip) -> None:
    """R-precision over the distinct prompts of `results` (nothing with fewer than two)."""
    pool = list(dict.fromkeys(result["prompt"] for result in results))
    if len(pool) < 2:
        return
    prompt_embeddings = clip.embed_texts(pool)  # [P, D]
    scores = torch.stack([(views @ prompt_embeddings.T).mean(dim=0) for views in embeddings])  # [O, P]
    own = torch.tensor([pool.index(result["prompt"]) for result in results], device=scores.device)
    value = r_precision(scores, own)
    for result, row in zip(results, scores):
        result["r_precision"] = {"value": value, "pool": pool, "retrieved": pool[int(row.argmax())]}


def write_eval_json(result: dict[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / EVAL_FILE
    write_text_atomic(path, json.dumps(strict_json(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return path


def print_eval_table(results: list[dict[str, Any]], console: Console) -> None:
    """One row per metric, one column per asset (stays readable in 80 columns)."""
    table = Table(title="splatgen eval", title_justify="left")
    table.add_column("metric")
    for result in results:
        table.add_column(Path(result["input"]).name, justify="right", overflow="fold")
    rows = [summary_rows(result) for result in results]
    for metric in rows[0]:
        table.add_row(metric, *(row[metric] for row in rows))
    console.print(table)
    settings = results[0]["settings"]
    console.print(
        f"CLIP {settings['clip_model']}, {settings['frames']} frames at {settings['resolution']} px, "
        f"LPIPS {settings['lpips_net']} ({settings['lpips_input']} input)",
        highlight=False,
        soft_wrap=True,
    )
