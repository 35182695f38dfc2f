"""Try a few hundred bad inputs against splatgen and count how each one ended.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python scripts/fault_campaign.py [--work /tmp/campaign]

Cases (built from the code, so new config fields are included):
- every numeric field of the training config (every objective and init), on the command line,
  with NaN, +-Inf, just below / above its range, and 10^23 for integers;
- every numeric field of a preset file with a string and a fraction / boolean, and a binary preset;
- damaged inputs to `render`, `export` and `view`: truncated, random, header-mangled, empty and
  all-NaN PLY files, truncated `.splat` files;
- `--resume` of a finished tiny run whose checkpoint is corrupted, truncated, torn, NaN, foreign,
  malicious or incomplete, or whose config or prompt was changed;
- viewer handshakes: foreign Origins, a DNS-rebound Host, missing / wrong tokens, bad ports.

Each case ends `clean` (exit 2 or refusal, one `error:` line, no traceback, nothing it must not
touch changed), `accepted` (the bad input went through: a hole), or `lost` (a file the user had
was changed or removed). The last line printed is a JSON summary. Faults that need a real process
(SIGTERM / SIGKILL mid-write, concurrent runs, full disk) are exercised by tests/test_faults_run.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import yaml
from rich.console import Console

from splatgen.cli import main
from splatgen.io.config_file import config_name
from splatgen.io.ply import write_ply
from splatgen.scene.gaussians import Gaussians
from splatgen.train.config import TrainConfig
from splatgen.train.limits import limit_for, numeric_fields, union_steps


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (what a refused case must leave as it was)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def run_cli(arguments: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            status = main(arguments)
        except SystemExit as exit_:  # tyro's own parse errors
            status = int(exit_.code or 0)
        except Exception as error:  # a traceback a user would have seen
            status, buffer = 1, io.StringIO(f"Traceback (uncaught): {type(error).__name__}: {error}")
    return status, buffer.getvalue()


def judge(status: int, output: str, before: dict, after: dict, created: bool) -> str:
    if status == 0:
        return "accepted"  # the bad input went through (what it overwrote was asked for)
    if any(after.get(name) != value for name, value in before.items()):
        return "lost"
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    if status == 2 and len(errors) == 1 and "Traceback" not in output and not created:
        return "clean"
    return "accepted"


def subcommand_tokens(path: tuple) -> list[str]:
    """The tyro subcommands that select each union member on `path` (`objective:vsd`, `densify.growth:absolute`)."""
    steps = [step for step, _ in path]
    return [
        f"{'.'.join(steps[: index + 1])}:{config_name(member)}"
        for index, ((_, member), is_union) in enumerate(zip(path, union_steps(TrainConfig, path)))
        if is_union
    ]


def numeric_cases() -> list[tuple[str, list[str]]]:
    cases = []
    for path, owner, name, kind in numeric_fields(TrainConfig):
        allowed = limit_for(owner, name)
        values: list[float] = [math.nan, math.inf, -math.inf] if kind is not int else [10**23]
        if allowed is not None:
            step = 1 if kind is int else max((allowed.high - allowed.low) * 1e-3, 1e-9)
            values += [
                allowed.low - (0 if allowed.low_open else step),
                allowed.high + (0 if allowed.high_open else step),
            ]
        prefix = subcommand_tokens(path)
        flag = "--" + ".".join([step for step, _ in path] + [name]).replace("_", "-")
        for value in values:
            shown = str(int(value)) if kind is int else repr(value)
            text = " ".join([shown] * len(getattr(owner(), name))) if kind is tuple else shown
            cases.append((f"{flag} {text}", [*prefix, flag, *text.split()]))
    return cases


def preset_cases(work: Path) -> list[tuple[str, Path]]:
    cases = []
    for path, _owner, name, kind in numeric_fields(TrainConfig):
        for value in ("abc", 1.5 if kind is int else True):
            data: dict = {}
            section = data
            for (step, member), is_union in zip(path, union_steps(TrainConfig, path)):
                section = section.setdefault(step, {"type": config_name(member)} if is_union else {})
            section[name] = [value, value] if kind is tuple else value
            preset = work / f"preset-{len(cases)}.yaml"
            preset.write_text(yaml.safe_dump(data))
            cases.append((f"preset {'.'.join([s for s, _ in path] + [name])}: {value!r}", preset))
    binary = work / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    cases.append(("binary preset", binary))
    return cases


def asset_cases(work: Path) -> list[tuple[str, Path]]:
    rng = random.Random(0)
    count = 200
    quats = torch.zeros(count, 4)
    quats[:, 0] = 1
    good = Gaussians(
        0.3 * torch.randn(count, 3),
        torch.full((count, 3), -3.0),
        quats,
        torch.zeros(count),
        torch.zeros(count, 1, 3),
        torch.zeros(count, 0, 3),
    )
    write_ply(work / "good.ply", good)
    data = (work / "good.ply").read_bytes()
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    cases = []
    for cut in sorted({1, 10, 50, header_end - 5, header_end, header_end + 7, len(data) // 2, len(data) - 1}):
        cases.append((f"PLY truncated at {cut} B", data[:cut]))
    for index in range(8):
        cases.append(
            (f"random bytes #{index}", bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 400, 5000]))))
        )
    for old, new in [
        (b"x", b"q"),
        (b"vertex 200", b"vertex 999"),
        (b"vertex 200", b"vertex -1"),
        (b"binary_little_endian", b"ascii"),
        (b"opacity", b"opacitz"),
    ]:
        cases.append((f"header {old!r} -> {new!r}", data[:header_end].replace(old, new, 1) + data[header_end:]))
    nan_body = bytearray(data[header_end:])
    nan_body[:] = b"\x00\x00\xc0\x7f" * (len(nan_body) // 4)
    cases.append(("all-NaN PLY", data[:header_end] + bytes(nan_body)))
    cases.append(("zero Gaussians", data[:header_end].replace(b"vertex 200", b"vertex 0")))
    written = []
    for label, content in cases:
        path = work / f"asset-{len(written)}.ply"
        path.write_bytes(content)
        written.append((label, path))
    for cut in (0, 31, 33, 100):
        path = work / f"asset-{len(written)}.splat"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(cut)))
        written.append((f".splat of {cut} B", path))
    return written


def viewer_cases() -> list[tuple[str, bool]]:
    """(label, refused) for handshakes against a real viewer."""
    from websockets.datastructures import Headers
    from websockets.http11 import Request

    from splatgen.viewer.guard import HandshakeGuard
    from splatgen.viewer.server import ViewerUnavailable, check_listen

    def ask(guard, host, origin, path="/"):
        headers = Headers({"Host": host, "Upgrade": "websocket"})
        if origin:
            headers["Origin"] = origin
        return guard.refusal(Request(path, headers)) is not None

    plain, secret = HandshakeGuard(), HandshakeGuard("s3cret")
    results = [
        ("foreign Origin", ask(plain, "127.0.0.1:8080", "http://evil.example")),
        ("foreign Origin, same port", ask(plain, "127.0.0.1:8080", "http://evil.example:8080")),
        ("other local page", ask(plain, "127.0.0.1:8080", "http://127.0.0.1:3000")),
        ("DNS-rebound Host", ask(plain, "evil.example:8080", "http://evil.example:8080")),
        ("token missing", ask(secret, "10.0.0.2:8080", "http://10.0.0.2:8080")),
        ("token wrong", ask(secret, "10.0.0.2:8080", "http://10.0.0.2:8080", "/?token=guess")),
        ("token missing, no Origin", ask(secret, "10.0.0.2:8080", None)),
    ]
    for port in (70000, -1, 10**6):
        try:
            check_listen("127.0.0.1", port)
            results.append((f"--port {port}", False))
        except ViewerUnavailable:
            results.append((f"--port {port}", True))
    return results


def checkpoint_cases(run: Path) -> list[tuple[str, object]]:
    from splatgen.train.checkpoint import state_digest

    def flip(path: Path, count: int) -> None:
        data = bytearray(path.read_bytes())
        for index in range(count):
            data[len(data) // 2 + 97 * index] ^= 0xFF
        path.write_bytes(bytes(data))

    def forge(change):
        def apply(path: Path) -> None:
            state = torch.load(path, weights_only=True)
            integrity = state.pop("integrity")
            change(state)
            state["integrity"] = {**integrity, "sha256": state_digest(state)}
            torch.save(state, path)

        return apply

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    import pickle

    return [
        ("2 flipped bytes", lambda p: flip(p, 2)),
        ("40 flipped bytes", lambda p: flip(p, 40)),
        ("truncated to half", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])),
        ("empty", lambda p: p.write_bytes(b"")),
        ("torn (scales cut)", forge(lambda s: s["splats"].update(scales=s["splats"]["scales"][:10]))),
        ("torn Adam moments", forge(lambda s: s["optimizers"]["means"]["state"][0].update(exp_avg=torch.zeros(3, 3)))),
        ("NaN means", forge(lambda s: s["splats"]["means"].view(-1)[0].fill_(math.nan))),
        ("no optimisers", forge(lambda s: s.pop("optimizers"))),
        (
            "no integrity record",
            lambda p: torch.save({k: v for k, v in torch.load(p, weights_only=True).items() if k != "integrity"}, p),
        ),
        ("malicious pickle", lambda p: p.write_bytes(pickle.dumps({"step": Payload()}))),
        ("other seed in config.yaml", "seed"),
        ("--prompt other", "--prompt"),
    ]


def main_campaign() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    work = parser.parse_args().work or Path(tempfile.mkdtemp(prefix="splatgen-campaign-"))
    work.mkdir(parents=True, exist_ok=True)
    tally: Counter[str] = Counter()
    holes: list[str] = []
    started = time.perf_counter()

    def record(kind: str, label: str, outcome: str) -> None:
        tally[f"{kind}:{outcome}"] += 1
        if outcome != "clean":
            holes.append(f"{kind} {label}: {outcome}")

    base = ["train", "--preset", "smoke", "--prompt", "a red apple", "--no-viewer"]
    for index, (label, flags) in enumerate(numeric_cases()):
        out = work / f"numeric-{index}"
        status, output = run_cli([*base, "--out", str(out), *flags])
        record("config", label, judge(status, output, {}, {}, out.exists()))
    for index, (label, preset) in enumerate(preset_cases(work)):
        out = work / f"preset-run-{index}"
        status, output = run_cli(["train", "--preset", str(preset), "--prompt", "x", "--no-viewer", "--out", str(out)])
        record("preset", label, judge(status, output, {}, {}, out.exists()))

    renders = work / "renders"
    renders.mkdir(exist_ok=True)
    (renders / "views.png").write_bytes(b"an earlier render")
    (work / "exported.splat").write_bytes(b"an earlier export")
    for label, path in asset_cases(work):
        (renders / "views.png").write_bytes(b"an earlier render")
        (work / "exported.splat").write_bytes(b"an earlier export")
        keep = {"views.png": hashlib.sha256(b"an earlier render").hexdigest()}
        status, output = run_cli(
            ["render", str(path), "--out", str(renders), "--device", "cpu", "--frames", "2", "--resolution", "32"]
        )
        record("render", label, judge(status, output, keep, digest(renders), False))
        before = {"": hashlib.sha256(b"an earlier export").hexdigest()}
        status, output = run_cli(["export", str(path), "--out", str(work / "exported.splat")])
        after = {"": hashlib.sha256((work / "exported.splat").read_bytes()).hexdigest()}
        record("export", label, judge(status, output, before, after, False))
        if path.suffix == ".ply":
            from splatgen.viewer import serve_ply

            try:
                viewer = serve_ply(path, port=0, console=Console(file=io.StringIO()), block=False)
                viewer.close()
                record("view", label, "accepted")
            except Exception as error:  # noqa: BLE001 - judged by its type below
                from splatgen.errors import SplatgenError

                record("view", label, "clean" if isinstance(error, SplatgenError) else "accepted")

    for label, refused in viewer_cases():
        record("viewer", label, "clean" if refused else "accepted")

    from splatgen.cli import parse_train_args
    from splatgen.train.loop import train

    run = work / "finished"
    quiet = Console(file=io.StringIO())
    config = parse_train_args(
        [*base[1:], "--out", str(run), "--steps", "4", "--checkpoint-every", "2", "--video-frames", "0"]
    )
    train(config, console=quiet)
    pristine = {name: (run / name).read_bytes() for name in ("config.yaml", "prompts.json", "checkpoints/last.pt")}
    for label, damage in checkpoint_cases(run):
        for name, content in pristine.items():
            (run / name).write_bytes(content)
        extra: list[str] = []
        if damage == "seed":
            saved = yaml.safe_load((run / "config.yaml").read_text())
            (run / "config.yaml").write_text(yaml.safe_dump({**saved, "seed": 5}))
        elif damage == "--prompt":
            extra = ["--prompt", "a green pear"]
        else:
            damage(run / "checkpoints" / "last.pt")
        before = digest(run)
        status, output = run_cli(["train", "--resume", str(run), "--steps", "6", "--no-viewer", *extra])
        record("resume", label, judge(status, output, before, digest(run), False))
    for name, content in pristine.items():
        (run / name).write_bytes(content)

    tried = sum(tally.values())
    clean = sum(count for key, count in tally.items() if key.endswith(":clean"))
    lost = sum(count for key, count in tally.items() if key.endswith(":lost"))
    for hole in holes:
        print("hole:", hole)
    print(
        json.dumps(
            {
                "tried": tried,
                "clean": clean,
                "accepted": tried - clean - lost,
                "lost": lost,
                "by_kind": dict(sorted(tally.items())),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0 if clean == tried else 1


if __name__ == "__main__":
    sys.exit(main_campaign())
