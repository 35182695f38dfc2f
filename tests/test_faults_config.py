"""Fault suite, part 1: every bad config value is refused with one line before anything loads.

The sweep walks the `TrainConfig` type tree (every union member: each objective, each init) and
tries, on every numeric field, NaN, +-Inf and values just outside its declared range; the YAML
sweep puts a string and a fraction into every numeric field of a preset. New fields are covered
without editing this file (and fail here until their range is declared in `train/limits.py`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import replace
from typing import Any

import pytest

from splatgen.cli import main, parse_train_args
from splatgen.io.config_file import ConfigError, config_name, from_dict
from splatgen.train.config import TrainConfig
from splatgen.train.limits import LIMITS, limit_for, numeric_fields, union_steps


def with_value(config: Any, path: tuple, name: str, value: Any) -> Any:
    """`config` with `name` at `path` set to `value`, switching union fields to the member on the path."""
    if not path:
        return replace(config, **{name: value})
    (field_name, member), rest = path[0], path[1:]
    inner = getattr(config, field_name)
    if type(inner) is not member:
        inner = member()
    return replace(config, **{field_name: with_value(inner, rest, name, value)})


def base_config() -> TrainConfig:
    return TrainConfig(prompt="a red apple")


FIELDS = numeric_fields(TrainConfig)
FIELD_IDS = [".".join([step for step, _ in path] + [name]) + f"@{owner.__name__}" for path, owner, name, _ in FIELDS]


def bad_values(owner: type, name: str, kind: Any) -> list[Any]:
    allowed = limit_for(owner, name)
    values: list[Any] = []
    if allowed is not None:
        step = 1 if kind is int else max(abs(allowed.high - allowed.low) * 1e-3, 1e-9)
        values += [allowed.low - step if not allowed.low_open else allowed.low]
        values += [allowed.high + step if not allowed.high_open else allowed.high]
    if kind is not int:
        values += [math.nan, math.inf, -math.inf]
    if kind is int:
        values += [10**30]  # `--seed 99999999999999999999999`
    return [int(v) if kind is int else v for v in values]


def test_the_walk_finds_every_numeric_field():
    assert len(FIELDS) >= 60  # today's tree; grows with new fields
    names = {f"{owner.__name__}.{name}" for _, owner, name, _ in FIELDS}
    assert {"TrainConfig.seed", "BallInit.radius", "StableDiffusionConfig.image_size", "VSD.lora_lr"} <= names


@pytest.mark.parametrize("path, owner, name, kind", FIELDS, ids=FIELD_IDS)
def test_every_numeric_field_has_a_range_and_refuses_bad_values(path, owner, name, kind):
    assert limit_for(owner, name) is not None, f"declare {owner.__name__}.{name} in splatgen/train/limits.py LIMITS"
    config = base_config()
    for value in bad_values(owner, name, kind if kind is not tuple else float):
        if kind is tuple:
            holder = config
            for step, member in path:
                holder = getattr(holder, step) if type(getattr(holder, step)) is member else member()
            current = getattr(holder, name)
            value = (value, *current[1:])
        bad = with_value(config, path, name, value)
        with pytest.raises(ValueError) as caught:
            bad.validate()
        message = str(caught.value)
        assert "\n" not in message and len(message) < 200, message
        flag = "--" + ".".join([step for step, _ in path] + [name]).replace("_", "-")
        assert flag in message or name in message, message


def test_defaults_of_every_union_member_pass():
    members = {path[0] for path, *_ in FIELDS if path}  # (field, class) for every section and union member
    for step, member in members:
        replace(base_config(), **{step: member()}).validate()


def test_init_count_above_the_cap_is_refused_before_allocating():
    config = base_config()
    config = replace(config, init=replace(config.init, count=2000), densify=replace(config.densify, max_gaussians=1000))
    with pytest.raises(ValueError, match="--init.count 2,000 is more than --densify.max-gaussians 1,000"):
        config.validate()


def test_limits_table_names_only_existing_fields():
    owners = {owner.__name__: owner for _, owner, _, _ in FIELDS}
    bases = {base.__name__: base for owner in owners.values() for base in owner.__mro__}
    for key in LIMITS:
        class_name, field_name = key.split(".")
        assert class_name in bases, key
        assert field_name in {f.name for f in dataclasses.fields(bases[class_name])}, key


# -- YAML: presets and config.yaml are type-checked ----------------------------------------------


@pytest.mark.parametrize("path, owner, name, kind", FIELDS, ids=FIELD_IDS)
def test_a_string_or_a_fraction_in_any_numeric_yaml_field_is_one_line(path, owner, name, kind):
    keys = [step for step, _ in path] + [name]
    for value in ("abc", 1.5) if kind is int else ("abc", True):
        data: dict[str, Any] = {}
        section = data
        for (step, member), is_union in zip(path, union_steps(TrainConfig, path)):
            section = section.setdefault(step, {"type": config_name(member)} if is_union else {})
        section[keys[-1]] = value if kind is not tuple else [value, value]
        with pytest.raises(ConfigError) as caught:
            from_dict(TrainConfig, data)
        assert "\n" not in str(caught.value) and ".".join(keys) in str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('steps: "abc"', "steps must be a whole number, got 'abc'"),
        ("batch_size: 1.5", "batch_size must be a whole number, got 1.5"),
        ("seed: true", "seed must be a whole number, got True"),
        ("background: purple", "background must be one of black, white, random"),
        ("cameras: {fovy_range: [40]}", "cameras.fovy_range must be a list of 2 values"),
        ("prompts: {protected_words: 3}", "prompts.protected_words must be a list"),
        ("1: 2", "unknown config field(s) 1"),
        ("init: {type: ball, radius: .nan}", None),  # parses; refused by validate (see below)
    ],
)
def test_bad_yaml_values_are_refused_by_name(tmp_path, text, message):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    if message is None:
        config = parse_train_args(["--preset", str(preset), "--prompt", "x"])
        with pytest.raises(ValueError, match="--init.radius must be a finite number, got nan"):
            config.validate()
        return
    with pytest.raises(ConfigError, match=re.escape(f"{preset}: {message}")):
        parse_train_args(["--preset", str(preset)])


def test_a_binary_preset_is_one_line(tmp_path, capsys):
    preset = tmp_path / "noise.yaml"
    preset.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "--preset", str(preset), "--prompt", "x", "--out", str(tmp_path / "run")]) == 2
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "is not a text file" in printed and not (tmp_path / "run").exists()


# -- the command line: bad values exit 2 with one line, nothing created -------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--seed", "99999999999999999999999"], "--seed must be in [0, 9,223,372,036,854,775,807]"),
        (["--seed", "-1"], "--seed must be in [0, "),
        (["--video-frames", "100000"], "--video-frames must be in [0, 3,600]"),
        (["--init.radius", "nan"], "--init.radius must be a finite number, got nan"),
        (["--init.scale", "inf"], "--init.scale must be a finite number, got inf"),
        (["--optim.means-lr", "inf"], "--optim.means-lr must be a finite number, got inf"),
        (["--densify.scene-scale", "-1"], "--densify.scene-scale must be in (0, "),
        (["densify.growth:absolute", "--densify.growth.grad2d", "nan"], "--densify.growth.grad2d must be a finite"),
        (["--densify.growth.ratio", "-1"], "--densify.growth.ratio must be in (0, "),
        (["--cameras.jitter", "inf"], "--cameras.jitter must be a finite number"),
        (["--prior.image-size", "65536"], "--prior.image-size must be in [8, 1,024], got 65536"),
        (["--init.count", "100000000"], "--init.count must be in [1, 50,000,000]"),
        (["--viewer.port", "70000"], "--viewer.port must be in [0, 65,535]"),
    ],
)
def test_bad_numbers_on_the_command_line_exit_2_and_create_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "run"
    status = main(
        ["train", "--preset", "smoke", "--prompt", "a red apple", "--out", str(out), "--no-viewer", *arguments]
    )
    printed = capsys.readouterr().out
    assert status == 2, printed
    assert printed.count("\n") == 1 and message in printed and "Traceback" not in printed, printed
    assert not out.exists()
