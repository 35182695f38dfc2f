"""The allowed range of every numeric field of the training config, checked before anything loads.

One table, `LIMITS`, keyed `"Class.field"` (looked up along the class's MRO, so a field declared on
a base class is declared once). Every int/float field of the `TrainConfig` tree (and every element
of a tuple of numbers) must be finite and inside its range; upper bounds protect memory and time
(`prior.image_size 65536` would need ~51 GB before the first step). A numeric field without an
entry is refused too: adding a field means declaring its range here (a test walks the whole tree,
every union member included, and tries out-of-range, NaN and infinite values on each).

Cross-field rules (lo <= hi, multiples of 8, count <= cap) stay in each config's `validate()`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from splatgen.io.config_file import ConfigError

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit value without wrapping
BIG = 10**9  # "no practical limit" for step counts and intervals, still a finite number


class ConfigRangeError(ConfigError, ValueError):
    """A numeric config value is NaN, infinite, or outside its declared range."""


@dataclass(frozen=True)
class Range:
    """low <= value <= high (or strict, with `low_open` / `high_open`)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        return f"{'(' if self.low_open else '['}{_show(self.low)}, {_show(self.high)}{')' if self.high_open else ']'}"


def _show(value: float) -> str:
    """10000000 -> '10,000,000', 0.5 -> '0.5' (bounds and values as a user types them)."""
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e18:
        return f"{int(value):,}"
    return f"{value:g}"


FRACTION = Range(0.0, 1.0)
GUIDANCE = Range(0.0, 1000.0)
LEARNING_RATE = Range(0.0, 10.0)
LENGTH = Range(0.0, 1e4, low_open=True)  # world units (the object sits in a unit ball)
OPACITY = Range(0.0, 1.0, low_open=True, high_open=True)
COUNT = Range(1, 50_000_000)  # Gaussians: 50 M x 59 floats is ~12 GB of parameters
THRESHOLD = Range(0.0, 1e4, low_open=True)
AZIMUTH = Range(0.0, 180.0)

LIMITS: dict[str, Range] = {
    # TrainConfig
    "TrainConfig.steps": Range(1, 10_000_000),
    "TrainConfig.seed": Range(0, MAX_SEED),
    "TrainConfig.batch_size": Range(1, 64),
    "TrainConfig.render_size": Range(16, 2048),
    "TrainConfig.sh_degree": Range(0, 3),
    "TrainConfig.export_sh_degree": Range(0, 3),
    "TrainConfig.checkpoint_every": Range(1, BIG),
    "TrainConfig.log_every": Range(1, BIG),
    "TrainConfig.max_bad_steps": Range(1, BIG),
    "TrainConfig.video_frames": Range(0, 3600),
    # objectives and their schedules
    "SDS.guidance_scale": GUIDANCE,
    "DSDS.guidance_scale": GUIDANCE,
    "DSDS.truncation_start": THRESHOLD,
    "DSDS.truncation_end": THRESHOLD,
    "VariationalScoreFields.guidance_scale": GUIDANCE,
    "VariationalScoreFields.lora_rank": Range(1, 256),
    "VariationalScoreFields.lora_lr": Range(0.0, 1.0, low_open=True),
    "VariationalScoreFields.camera_dropout": Range(0.0, 1.0, high_open=True),
    "VariationalScoreFields.lora_updates_per_step": Range(1, 16),
    "ESD.entropy_weight": FRACTION,
    "SSD.guidance_scale": GUIDANCE,
    "SSD.threshold_timestep": Range(0, 1000),
    "CSD.guidance_scale": GUIDANCE,
    "CSD.negative_weight": FRACTION,
    "TimestepSchedule.min_fraction": FRACTION,
    "TimestepSchedule.max_fraction": FRACTION,
    "TimestepSchedule.annealed_max_fraction": FRACTION,
    "TimestepSchedule.anneal_progress": FRACTION,
    # prior
    "StableDiffusionConfig.image_size": Range(8, 1024),  # SD 2.1-base: 512; 1024 px latents need ~4x the memory
    # prompts
    "DebiasConfig.threshold": Range(-100.0, 100.0),  # a PMI difference in nats
    "RangeRule.strength": FRACTION,
    "RangeRule.tolerance": FRACTION,
    "RangeRule.min_half_width": AZIMUTH,
    "RangeRule.max_half_width": AZIMUTH,
    "ViewRanges.front_max_azimuth": AZIMUTH,
    "ViewRanges.back_min_azimuth": AZIMUTH,
    "ViewRanges.overhead_min_elevation": Range(0.0, 90.0),
    # initialisation
    "BallInit.count": COUNT,
    "BallInit.radius": LENGTH,
    "BallInit.color": FRACTION,
    "BallInit.color_jitter": FRACTION,
    "BallInit.opacity": OPACITY,
    "BallInit.scale": LENGTH,
    "ShapEInit.count": COUNT,
    "ShapEInit.guidance_scale": Range(0.0, 100.0),
    "ShapEInit.inference_steps": Range(1, 1000),
    "ShapEInit.radius": LENGTH,
    "ShapEInit.opacity": OPACITY,
    # cameras
    "OrbitSampler.azimuth_range": Range(-360.0, 360.0),
    "OrbitSampler.elevation_range": Range(-90.0, 90.0),
    "OrbitSampler.distance_range": Range(1e-3, 1e6),
    "OrbitSampler.fovy_range": Range(1.0, 170.0),
    "OrbitSampler.jitter": Range(0.0, 10.0),  # world units of look-at / position noise
    # densification
    "RelativeGrowth.ratio": THRESHOLD,
    "AbsoluteGrowth.grad2d": THRESHOLD,
    "DensifyConfig.grow_scale3d": THRESHOLD,
    "DensifyConfig.prune_opacity": Range(0.0, 1.0, high_open=True),
    "DensifyConfig.prune_scale3d": THRESHOLD,
    "DensifyConfig.start_fraction": FRACTION,
    "DensifyConfig.stop_fraction": FRACTION,
    "DensifyConfig.refine_every": Range(1, BIG),
    "DensifyConfig.reset_opacity_every": Range(0, BIG),
    "DensifyConfig.max_gaussians": COUNT,
    "DensifyConfig.scene_scale": LENGTH,
    # optimiser
    "OptimConfig.means_lr": LEARNING_RATE,
    "OptimConfig.means_lr_final": LEARNING_RATE,
    "OptimConfig.scales_lr": LEARNING_RATE,
    "OptimConfig.quats_lr": LEARNING_RATE,
    "OptimConfig.opacities_lr": LEARNING_RATE,
    "OptimConfig.sh0_lr": LEARNING_RATE,
    "OptimConfig.shN_lr": LEARNING_RATE,
    # Perp-Neg and the x0-reconstruction form
    "SDS.reconstruction_rescale": FRACTION,
    "PerpNegWeights.f_sb": Range(-100.0, 100.0),  # (a, b, c) of f(r) = a exp(-b r) + c (threestudio)
    "PerpNegWeights.f_fsb": Range(-100.0, 100.0),
    "PerpNegWeights.f_fs": Range(-100.0, 100.0),
    "PerpNegWeights.f_sf": Range(-100.0, 100.0),
    # mesh export (`MeshOptions.validate` holds the same bounds for `splatgen export`)
    "MeshOptions.resolution": Range(16, 2048),
    "MeshOptions.iso": Range(0.0, 1e4, low_open=True),
    "MeshOptions.min_opacity": Range(0.0, 1.0, high_open=True),
    "MeshOptions.min_component": Range(0.0, 1.0, high_open=True),
    "MeshOptions.smooth": Range(0, 1000),
    "MeshOptions.faces": Range(100, 50_000_000),
    "MeshOptions.texture_size": Range(64, 8192),
    "MeshOptions.bake_views": Range(2, 200),
    "MeshOptions.bake_size": Range(32, 4096),
    # viewer
    "ViewerConfig.port": Range(0, 65535),
    "ViewerConfig.update_hz": Range(0.0, 60.0, low_open=True),
}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def limit_for(cls: type, name: str) -> Range | None:
    """The declared range of `cls.name`, looked up along the MRO (a base class declares it once)."""
    for base in cls.__mro__:
        found = LIMITS.get(f"{base.__name__}.{name}")
        if found is not None:
            return found
    return None


def numeric_values(config: Any, path: str = "") -> Iterator[tuple[str, type, str, Any]]:
    """(dotted path, owning class, field name, value) of every number in a dataclass tree.

    Tuples of numbers yield one entry per element (`cameras.fovy_range[1]`); None is skipped.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        where = f"{path}.{field.name}" if path else field.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from numeric_values(value, where)
        elif is_number(value):
            yield where, type(config), field.name, value
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                if is_number(item):
                    yield f"{where}[{index}]", type(config), field.name, item


def numeric_fields(cls: type, path: tuple = ()) -> list[tuple[tuple, type, str, Any]]:
    """Every numeric field of a config class tree, each union member included (all objectives, all inits):
    (path of (field, member class) steps, owning class, field name, int / float / tuple)."""
    from typing import get_args, get_origin, get_type_hints

    from splatgen.io.config_file import _strip_annotated, _union_members

    found = []
    hints = get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        kind = _strip_annotated(hints[field.name])
        for member in _union_members(kind) or [kind]:
            if dataclasses.is_dataclass(member):
                found += numeric_fields(member, (*path, (field.name, member)))
            elif member in (int, float):
                found.append((path, cls, field.name, member))
            elif get_origin(member) is tuple and get_args(member) and get_args(member)[0] in (int, float):
                found.append((path, cls, field.name, tuple))
    return found


def union_steps(root: type, path: tuple) -> list[bool]:
    """For each (field, member) step of a `numeric_fields` path: is that field a union of configs
    (chosen by a `type` key in YAML, a subcommand such as `objective:vsd` on the command line)?"""
    from typing import get_type_hints

    from splatgen.io.config_file import _strip_annotated, _union_members

    flags, cls = [], root
    for step, member in path:
        kind = _strip_annotated(get_type_hints(cls, include_extras=True)[step])
        flags.append(len([m for m in _union_members(kind) or [] if dataclasses.is_dataclass(m)]) > 1)
        cls = member
    return flags


def flag(path: str) -> str:
    """'densify.grow_grad2d[0]' -> '--densify.grow-grad2d' (the CLI spelling)."""
    return "--" + path.split("[")[0].replace("_", "-")


def check_numbers(config: Any) -> None:
    """Raise `ConfigRangeError` (one line, naming the flag) for the first bad number in the tree."""
    for path, owner, name, value in numeric_values(config):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigRangeError(f"{flag(path)} must be a finite number, got {value}")
        allowed = limit_for(owner, name)
        if allowed is None:
            raise ConfigRangeError(
                f"{flag(path)} has no declared range ({owner.__name__}.{name} in splatgen/train/limits.py)"
            )
        if not allowed.contains(value):
            raise ConfigRangeError(
                f"{flag(path)} must be in {allowed.describe()}, got {value if isinstance(value, int) else format(value, 'g')}"
            )
