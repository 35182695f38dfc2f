"""The `splatgen` command: train | batch | export | render | view | debias | eval | report | compare.

    splatgen train --prompt "a ceramic mug shaped like an owl"
    splatgen train --preset smoke --prompt "a red apple" --out runs/apple
    splatgen train --resume runs/apple
    splatgen train --preset mvdream-sds --prompt "a corgi"          # the multi-view prior (MVDream)
    splatgen train --prompts.perp-neg --prompt "a corgi"                     # Perp-Neg on the SD prior
    splatgen export runs/apple/a-red-apple.ply --out apple.splat
    splatgen export runs/apple/a-red-apple.ply --out apple.glb
    splatgen render runs/apple/a-red-apple.ply --out renders/
    splatgen view runs/apple/a-red-apple.ply
    splatgen debias --prompt "a smiling dog" --json
    splatgen eval runs/apple runs/corgi
    splatgen report runs/apple
    splatgen compare runs/apple-sds runs/apple-dsds --out compare/
    splatgen batch prompts.txt --out runs/props --preset smoke --objectives dsds,sds

User errors (bad files, bad values, missing models) print one line and exit with status 2;
Ctrl-C exits with 130 after saving what there is.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro
from rich.console import Console
from rich.markup import escape

from splatgen.batch.options import BatchOptions
from splatgen.errors import SplatgenError, UnsupportedFormat
from splatgen.eval.settings import EvalSettings
from splatgen.export import MESH_FORMATS, MeshOptions
from splatgen.io.config_file import ConfigError, load_config
from splatgen.io.run_folder import RunFolder
from splatgen.prompts import DebiasConfig
from splatgen.render import BackgroundKind
from splatgen.scene.frames import DEFAULT_FRAME, WORLD_FRAME, Frame
from splatgen.tiny_models import RESERVED_MODEL_IDS
from splatgen.train.config import TrainConfig
from splatgen.viewer import ViewCommand

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
COMMANDS = ("train", "batch", "export", "render", "view", "debias", "eval", "report", "compare")


class UnknownCommand(SplatgenError):
    """The first argument is not one of `COMMANDS`."""


def train_description() -> str:
    """The top of `splatgen train --help`: the options handled before tyro, and the short aliases."""
    presets = ", ".join(sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))) or "none"
    return (
        f"{TrainConfig.__doc__}\n\n"
        f"--preset NAME: start from a preset ({presets}) or a .yaml file; flags given after it override it.\n"
        "--resume DIR: continue the run in DIR from its last checkpoint, with its saved config.\n"
        "Short forms: --no-debias = --prompts.no-debias; --no-viewer = --viewer.no-enabled; --lm = --prompts.lm; "
        "--init ball|ply|shap-e = init:ball|ply|shap-e."
    )


@dataclass
class ExportCommand:
    """Convert an asset to a PLY of another SH degree or frame, the 32-byte .splat format, or a textured mesh (.glb, .obj)."""

    input: tyro.conf.Positional[Path]
    """The file to read: .ply (INRIA 3DGS layout, any SH degree), .compressed.ply (SuperSplat) or .splat."""
    out: Path
    """Where to write: .ply, .splat, .glb (binary glTF) or .obj (+ .mtl + .png), chosen by the suffix."""
    sh_degree: int | None = None
    """SH degree of the written PLY (0..3; drops bands or pads zeros); default = as read."""
    mesh: tyro.conf.OmitArgPrefixes[MeshOptions] = field(default_factory=MeshOptions)
    """Mesh options (.glb and .obj only; see docs/mesh.md)."""
    frame: Annotated[
        Frame | None, tyro.conf.arg(metavar="{inria,opengl,blender}", help_behavior_hint="(default: inria)")
    ] = None
    """Which way is up in a written .ply or .splat: inria = -y up (SuperSplat, PlayCanvas, splat-transform), opengl = +y up (three.js viewers with their default camera), blender = +z up. Meshes are always +y up, glTF's frame. See docs/formats.md."""

    def run(self, console: Console) -> None:
        from splatgen.io import EXPORT_FORMATS, check_asset_path, export_asset

        suffix = self.out.suffix.lower()
        if suffix in MESH_FORMATS:
            check_mesh_frame(self.frame, suffix)
            check_asset_path(self.input)
            from splatgen.export import export_mesh

            with console.status("meshing") as status:
                summary = export_mesh(
                    self.input, self.out, self.mesh, log=lambda line: status.update(f"meshing: {line}")
                )
            console.print(summary, highlight=False, soft_wrap=True)
            return
        if suffix not in EXPORT_FORMATS:
            formats = ", ".join(EXPORT_FORMATS + MESH_FORMATS)
            raise UnsupportedFormat(f"{self.out}: unknown output format {suffix or '(no suffix)'!r}; use {formats}")
        check_asset_path(self.input)
        frame = DEFAULT_FRAME if self.frame is None else self.frame
        summary = export_asset(self.input, self.out, sh_degree=self.sh_degree, frame=frame)
        console.print(summary, highlight=False, soft_wrap=True)


def check_mesh_frame(frame: str | None, suffix: str) -> None:
    """Meshes have one frame: glTF 2.0 is +Y up by definition (spec section 3.4), and OBJ importers
    (Blender's, three.js') read it that way too; an asset frame other than that is refused."""
    if frame not in (None, WORLD_FRAME):
        raise UnsupportedFormat(
            f"--frame {frame} applies to .ply and .splat; a {suffix} mesh is always +y up (glTF's frame), and "
            "importers such as Blender's turn it to their own up axis"
        )


@dataclass
class RenderCommand:
    """Render an asset to a turntable video (turntable.mp4) and a grid of views (views.png)."""

    input: tyro.conf.Positional[Path]
    """The file to render: .ply, .compressed.ply or .splat."""
    out: Path
    """Folder for turntable.mp4 and views.png."""
    frames: int | None = None
    """Video frames; default 120 on GPU, 64 on CPU."""
    resolution: int | None = None
    """Square frame size in pixels; default 512 on GPU, 256 on CPU."""
    background: BackgroundKind = "white"
    """Background colour."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to render."""

    def run(self, console: Console) -> None:
        from splatgen.io import check_asset_path, read_asset

        check_asset_path(self.input)  # a mistyped path is one line before torch loads
        from splatgen.render.turntable import render_turntable
        from splatgen.train.assemble import resolve_device

        result = render_turntable(
            read_asset(self.input, finite=True),
            self.out,
            num_frames=self.frames,
            resolution=self.resolution,
            background=self.background,
            device=resolve_device(self.device),
        )
        console.print(result.summary(), highlight=False, soft_wrap=True)


@dataclass
class DebiasCommand(DebiasConfig):
    """Show how the LM prompt-debiasing stage edits the view prompts and their azimuth ranges (D-SDS)."""

    prompt: str = ""
    """The prompt to debias."""
    json: bool = False
    """Print one JSON object instead of tables."""

    def run(self, console: Console) -> None:
        import json

        from splatgen.prompts import print_debias_table, run_debias
        from splatgen.tiny_models import resolve_lm
        from splatgen.train.assemble import quiet_library_progress_bars

        quiet_library_progress_bars()
        config = replace(DebiasConfig(), **{name: getattr(self, name) for name in DebiasConfig.__dataclass_fields__})
        config.lm = resolve_lm(config.lm)
        result = run_debias(self.prompt, config)
        if self.json:
            print(json.dumps(result.to_json(), ensure_ascii=False))
        else:
            print_debias_table(result, console)


@dataclass(kw_only=True)
class EvalCommand(EvalSettings):
    """Measure assets: CLIP similarity, R-precision (2+ prompts), A-LPIPS, view consistency; writes RUN/eval.json."""

    inputs: tyro.conf.Positional[list[Path]]
    """Run folders, or .ply files with --prompt."""
    prompt: str | None = None
    """What the assets should show (needed for a bare .ply; overrides a run's prompt)."""
    json: bool = False
    """Print one JSON object instead of the table."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to render and run the models."""

    def run(self, console: Console) -> None:
        import json

        from splatgen.eval.targets import resolve_target

        if not self.inputs:
            raise SplatgenError("splatgen eval needs at least one run folder or .ply (see splatgen eval --help)")
        targets = [resolve_target(path, self.prompt) for path in self.inputs]  # checked before torch loads
        from splatgen.tiny_models import resolve_clip
        from splatgen.train.availability import NeededModel, check_available

        settings = replace(EvalSettings(), **{name: getattr(self, name) for name in EvalSettings.__dataclass_fields__})
        settings.clip_model = resolve_clip(settings.clip_model, console)
        check_available([NeededModel("--clip-model", settings.clip_model, ("config.json",))], "splatgen eval")
        from splatgen.eval.lpips import backbone_file
        from splatgen.eval.run import evaluate, print_eval_table, write_eval_json
        from splatgen.train.assemble import quiet_library_progress_bars, resolve_device

        backbone_file(settings.lpips_net, settings.lpips_backbone)  # a missing file is reported before CLIP loads

        quiet_library_progress_bars()
        progress = None if self.json else console
        results = evaluate(targets, settings, resolve_device(self.device), progress)
        for target, result in zip(targets, results):
            if target.run_dir is not None:
                write_eval_json(result, target.run_dir)
        if self.json:
            print(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False))
        else:
            print_eval_table(results, console)


def _check_run_folders(paths: list[Path]) -> None:
    for path in paths:
        if not (path / "config.yaml").is_file():
            raise SplatgenError(f"{path} is not a splatgen run folder (it has no config.yaml)")


@dataclass
class ReportCommand:
    """Write RUN/report.html: turntable, views, eval table, training plots, refinements, view prompts, config."""

    run_dir: tyro.conf.Positional[Path]
    """The run folder."""

    def run(self, console: Console) -> None:
        from splatgen.report import write_run_report

        _check_run_folders([self.run_dir])
        console.print(f"wrote {write_run_report(self.run_dir)}", highlight=False)


@dataclass
class CompareCommand:
    """Compare runs side by side (e.g. one prompt under each objective): a table here and an HTML page."""

    runs: tyro.conf.Positional[list[Path]]
    """Run folders."""
    out: Path = Path("compare.html")
    """Where to write the page."""

    def run(self, console: Console) -> None:
        from rich.table import Table

        from splatgen.report import compare_rows, read_run, write_compare

        _check_run_folders(self.runs)
        headers, rows = compare_rows([read_run(path) for path in self.runs])
        table = Table(*headers, title="splatgen compare", title_justify="left")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        console.print(table)
        console.print(f"wrote {write_compare(self.runs, self.out)}", highlight=False)


Command = Union[
    Annotated[
        TrainConfig,
        tyro.conf.subcommand(
            "train", description="Turn a text prompt into a 3DGS asset (see `splatgen train --help`)."
        ),
    ],
    Annotated[BatchOptions, tyro.conf.subcommand("batch")],
    Annotated[ExportCommand, tyro.conf.subcommand("export")],
    Annotated[RenderCommand, tyro.conf.subcommand("render")],
    Annotated[ViewCommand, tyro.conf.subcommand("view")],
    Annotated[DebiasCommand, tyro.conf.subcommand("debias")],
    Annotated[EvalCommand, tyro.conf.subcommand("eval")],
    Annotated[ReportCommand, tyro.conf.subcommand("report")],
    Annotated[CompareCommand, tyro.conf.subcommand("compare")],
]


def preset_path(name: str) -> Path:
    """A preset name (splatgen/presets/NAME.yaml) or a path to a YAML file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))) or "none"
        raise ConfigError(f"unknown preset {name!r}; available presets: {available} (or a path to a .yaml file)")
    return path


def _pop_option(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """Remove `--name VALUE` / `--name=VALUE` from args; returns (VALUE or None, the rest)."""
    rest, value, index = [], None, 0
    while index < len(args):
        arg = args[index]
        if arg == name:
            if index + 1 >= len(args):
                raise ConfigError(f"{name} needs a value")
            value, index = args[index + 1], index + 2
            continue
        if arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        index += 1
    return value, rest


TRAIN_FLAG_ALIASES = {"--no-debias": "--prompts.no-debias", "--debias": "--prompts.debias", "--lm": "--prompts.lm"}
"""Short spellings of nested flags. `--no-viewer` is declared on its field (`tyro.conf.arg(aliases=...)`);
these cannot be: `PromptConfig` is also a command line of its own, where `--lm` and `--debias` are
already the fields' names and tyro refuses an alias equal to a name."""


def _expand_aliases(args: list[str]) -> list[str]:
    """`TRAIN_FLAG_ALIASES`, and `--init shap-e` -> the subcommand `init:shap-e` (tyro has no alias for
    choosing a subcommand)."""
    expanded: list[str] = []
    index = 0
    while index < len(args):
        if args[index] == "--init" and index + 1 < len(args):
            expanded.append(f"init:{args[index + 1]}")
            index += 2
        else:
            expanded.append(TRAIN_FLAG_ALIASES.get(args[index], args[index]))
            index += 1
    return expanded


def parse_train_args(args: list[str]) -> TrainConfig:
    """Preset (or a resumed run's config.yaml) as defaults, then flags on top."""
    preset, args = _pop_option(list(args), "--preset")
    resume, args = _pop_option(args, "--resume")
    if resume is not None and preset is not None:
        raise ConfigError("--resume continues a run with its saved config; it cannot be combined with --preset")
    if resume is not None:
        config_file = RunFolder(Path(resume)).config_path
        if not config_file.is_file():
            raise ConfigError(f"cannot resume {resume}: it has no config.yaml (is it a splatgen run folder?)")
        default = load_config(TrainConfig, config_file)
    elif preset is not None:
        default = load_config(TrainConfig, preset_path(preset))
    else:
        default = TrainConfig()
    config = tyro.cli(
        TrainConfig,
        args=_expand_aliases(args),
        default=default,
        prog="splatgen train",
        description=train_description(),
        config=(tyro.conf.CascadeSubcommandArgs,),
    )
    if resume is not None:
        config = replace(config, resume=Path(resume), out=Path(resume))
    return config


class OutOfMemory(SplatgenError):
    """The GPU ran out of memory; the message says which settings to lower."""


def out_of_memory_advice(config: TrainConfig) -> str:
    """Settings that need less memory than `config`, in the order that costs the least quality."""
    lower = []
    if config.batch_size > 1:
        lower.append(f"--batch-size {max(1, config.batch_size // 2)}")
    if config.render_size > 256:
        lower.append(f"--render-size {config.render_size // 2}")
    lower.append(f"--densify.max-gaussians {max(10_000, config.densify.max_gaussians // 2)}")
    if config.prior.dtype in ("auto", "fp32"):
        lower.append("--prior.dtype fp16")
    return (
        f"the GPU ran out of memory (batch {config.batch_size}, render {config.render_size} px, prior image "
        f"{config.prior.image_size} px, at most {config.densify.max_gaussians:,} Gaussians); try "
        + ", ".join(lower)
        + ". The last checkpoint is kept: add the flags to `splatgen train --resume <run>`."
    )


def run_train(config: TrainConfig, console: Console) -> None:
    try:
        config.validate()  # a bad value is one line before torch is even imported
    except ValueError as error:
        raise ConfigError(str(error)) from error
    import torch

    from splatgen.train.loop import train

    try:
        result = train(config, console=console)
    except torch.OutOfMemoryError as error:
        raise OutOfMemory(out_of_memory_advice(config)) from error
    if not result.interrupted:
        console.print(
            f"[green]done[/]: {result.steps_completed} steps in {result.seconds:.1f} s "
            f"({result.steps_per_second:.2f} it/s) -> {result.ply_path}"
            + (f"; {result.skipped_steps} steps skipped for NaN/Inf" if result.skipped_steps else "")
            + (" (noise: made with random-weight test models)" if config.prior.model in RESERVED_MODEL_IDS else ""),
            highlight=False,
        )
    from splatgen.report import write_run_report

    console.print(f"report: {write_run_report(result.run_dir)}", highlight=False, soft_wrap=True)
    if result.interrupted:
        raise KeyboardInterrupt


def check_command(args: list[str]) -> None:
    """Refuse a mistyped command with the nearest one, before tyro lists every flag it knows."""
    if not args or args[0].startswith("-") or args[0] in COMMANDS:
        return
    close = difflib.get_close_matches(args[0], COMMANDS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownCommand(f"unknown command {args[0]!r}; {hint}the commands are {', '.join(COMMANDS)}")


def train_config_from_flags(preset: str | None, flags: list[str]) -> TrainConfig:
    """A preset plus train flags -> TrainConfig, as `splatgen train` reads them (each item of a batch)."""
    return parse_train_args((["--preset", preset] if preset is not None else []) + list(flags))


def run_batch_command(args: list[str], console: Console) -> int:
    """`splatgen batch PROMPTS --out DIR [batch options] [train flags]`: 0 all done, 1 some failed, 130 stopped."""
    options, train_args = tyro.cli(BatchOptions, args=args, prog="splatgen batch", return_unknown_args=True)
    from splatgen.batch import run_batch

    summary = run_batch(options, train_args, train_config_from_flags, console)
    if summary.interrupted:
        raise KeyboardInterrupt
    return 1 if summary.failed else 0


def one_line_warnings(console: Console) -> None:
    """Python warnings print as `warning: <message>` on one line (no file, line number or source)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        text = escape(" ".join(str(message).split()))  # a path with [brackets] is not read as markup
        console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console(soft_wrap=True)  # piped output is not hard-wrapped at 80 columns: paths stay whole
    one_line_warnings(console)
    try:
        check_command(args)
        if args and args[0] == "train":
            run_train(parse_train_args(args[1:]), console)
            return 0
        if args and args[0] == "batch":
            return run_batch_command(args[1:], console)
        command = tyro.cli(Command, args=args, prog="splatgen", config=(tyro.conf.CascadeSubcommandArgs,))
        if isinstance(command, TrainConfig):
            run_train(command, console)
        else:
            command.run(console)
        return 0
    except SplatgenError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
