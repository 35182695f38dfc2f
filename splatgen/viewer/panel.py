"""The training GUI: one server-global panel, so every browser tab sees and drives the same state."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import viser

if TYPE_CHECKING:
    from splatgen.viewer.snapshot import TrainingSnapshot

LIVE = "Live splats"
CHECKPOINT = "Last checkpoint"
NO_VIEW_PROMPTS = "_No view prompts yet._"


def format_number(value: float | None, digits: int = 4) -> str:
    """A compact number for a read-only field; None and non-finite values are spelled out."""
    if value is None:
        return "off"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def escape_markdown(text: str) -> str:
    """Keep prompt text literal in the GUI's markdown."""
    for character in "\\`*_[]<>#|":
        text = text.replace(character, "\\" + character)
    return text


def format_interval(values: Any) -> str:
    """[lo, hi] -> "lo..hi"; a list of intervals -> "lo..hi, lo..hi"."""
    if isinstance(values, (list, tuple)) and values and all(isinstance(item, (list, tuple)) for item in values):
        return ", ".join(format_interval(item) for item in values)
    if isinstance(values, (list, tuple)) and len(values) == 2:
        return (
            f"{values[0]:g}..{values[1]:g}" if all(isinstance(v, (int, float)) for v in values) else json.dumps(values)
        )
    return json.dumps(values)


def describe_view(entry: Any) -> str:
    """One view of prompts.json: its prompt, then its ranges and removed words."""
    if not isinstance(entry, dict):
        return escape_markdown(entry if isinstance(entry, str) else json.dumps(entry))
    parts = [escape_markdown(str(entry["prompt"]))] if "prompt" in entry else []
    details = []
    for key, value in entry.items():
        if key == "prompt" or value in ([], (), None, ""):
            continue
        if key in ("azimuth", "elevation"):
            details.append(f"{key} {format_interval(value)}")
        elif key == "removed":
            details.append("removed: " + ", ".join(escape_markdown(str(word)) for word in value))
        else:
            details.append(f"{key}: {escape_markdown(json.dumps(value))}")
    if details:
        parts.append(f"({'; '.join(details)})")
    return " ".join(parts)


def format_view_prompts(view_prompts: dict[str, Any] | None) -> str:
    """prompts.json contents as markdown: the prompt, then one line per view with its ranges.

    Takes the trainer's layout `{"prompt", "views": {view: {"prompt", "removed", "azimuth",
    "elevation"}}, ...}` or a flat `{view: prompt or {...}}`.
    """
    if not view_prompts:
        return NO_VIEW_PROMPTS
    views = view_prompts.get("views")
    lines = []
    if isinstance(views, dict):
        if isinstance(view_prompts.get("prompt"), str):
            lines.append(f"**{escape_markdown(view_prompts['prompt'])}**")
    else:
        views = view_prompts
    lines.extend(f"- **{escape_markdown(str(view))}**: {describe_view(entry)}" for view, entry in views.items())
    return "\n".join(lines)


class TrainingPanel:
    """Handles for the run's numbers, pause/resume, what is shown, and PLY export."""

    def __init__(self, gui: viser.GuiApi) -> None:
        gui.set_panel_label("splatgen")
        with gui.add_folder("Training"):
            self.progress = gui.add_progress_bar(0.0, animated=False)
            self.step = gui.add_text("Step", "waiting for the first step", disabled=True)
            self.loss = gui.add_text("Loss", "-", disabled=True)
            self.gaussians = gui.add_text("Gaussians", "-", disabled=True)
            self.truncation = gui.add_text("Truncation", "-", disabled=True)
            self.timesteps = gui.add_text("Timesteps", "-", disabled=True)
            self.pause_button = gui.add_button("Pause training", icon=viser.Icon.PLAYER_PAUSE)
        with gui.add_folder("View prompts"):
            self.view_prompts = gui.add_markdown(NO_VIEW_PROMPTS)
        with gui.add_folder("Display"):
            self.source = gui.add_dropdown("Show", (LIVE, CHECKPOINT), initial_value=LIVE)
            self.show_cameras = gui.add_checkbox("Training cameras", True, hint="Frustums of the last sampled batch")
            self.display_note = gui.add_markdown("")
        with gui.add_folder("Export"):
            self.export_button = gui.add_button(
                "Export PLY now", icon=viser.Icon.DOWNLOAD, hint="Writes the live splats next to the run"
            )
            self.export_note = gui.add_markdown("")
        self._shown_view_prompts: dict[str, Any] | None = None

    @property
    def showing_checkpoint(self) -> bool:
        return self.source.value == CHECKPOINT

    def show_snapshot(self, snapshot: TrainingSnapshot) -> None:
        """Copy a snapshot's numbers into the fields (viser sends only values that changed)."""
        total = max(snapshot.total_steps, 1)
        self.progress.value = 100.0 * min(snapshot.step, total) / total
        self.step.value = f"{snapshot.step} / {snapshot.total_steps}"
        self.loss.value = format_number(snapshot.loss)
        self.gaussians.value = f"{snapshot.num_gaussians:,}"
        self.truncation.value = format_number(snapshot.truncation)
        low, high = snapshot.timestep_range
        self.timesteps.value = f"{low} .. {high}"
        if snapshot.view_prompts != self._shown_view_prompts:
            self.view_prompts.content = format_view_prompts(snapshot.view_prompts)
            self._shown_view_prompts = snapshot.view_prompts

    def show_paused(self, paused: bool) -> None:
        self.pause_button.label = "Resume training" if paused else "Pause training"
        self.pause_button.icon = viser.Icon.PLAYER_PLAY if paused else viser.Icon.PLAYER_PAUSE
        self.pause_button.color = "green" if paused else None
