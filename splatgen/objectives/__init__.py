"""Distillation objectives: one dataclass (hyperparameters, `--help` text) + one pure gradient rule each.

Every rule maps `ScoreInputs` (noise predictions, noise, t, alphas_cumprod, LoRA predictions
where needed) to the gradient g on the clean latent [B, c, h, w]; `reparameterised_loss` applies
it. `Objective` (in `base.py`) is the contract the training step reads.

`OBJECTIVES` is the one registry: name -> class. The command line's union (`ObjectiveChoice`, so a
config field `objective: ObjectiveChoice = DSDS()` reads as `objective:dsds --objective.truncation-end 8`),
the YAML `type:` key (each class's `config_name`), `scripts/bench.py`, `scripts/toy2d.py` and the
tests all read it. Adding an objective: a module here, one entry in `OBJECTIVES`.
"""

from __future__ import annotations

from typing import Annotated, Union

import tyro

from splatgen.objectives.base import (
    Objective,
    ObjectiveDefaults,
    ScoreInputs,
    Weighting,
    reparameterised_loss,
    timestep_weights,
)
from splatgen.objectives.csd import CSD, csd_gradient
from splatgen.objectives.dsds import DSDS, dsds_gradient
from splatgen.objectives.esd import ESD, esd_gradient
from splatgen.objectives.sds import SDS, classifier_free_guidance, sds_gradient
from splatgen.objectives.ssd import SSD, ssd_gradient
from splatgen.objectives.vsd import VSD, vsd_gradient

OBJECTIVES: dict[str, type[Objective]] = {cls.config_name: cls for cls in (SDS, DSDS, VSD, ESD, SSD, CSD)}
"""Every objective by its name on the command line and in YAML (`objective:dsds`, `type: dsds`)."""

ObjectiveChoice = Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, cls in OBJECTIVES.items())]  # type: ignore[valid-type]
"""One of `OBJECTIVES`, chosen by type: tyro subcommands objective:sds | dsds | vsd | esd | ssd | csd."""

__all__ = [
    "CSD",
    "DSDS",
    "ESD",
    "OBJECTIVES",
    "SDS",
    "SSD",
    "VSD",
    "Objective",
    "ObjectiveChoice",
    "ObjectiveDefaults",
    "ScoreInputs",
    "Weighting",
    "classifier_free_guidance",
    "csd_gradient",
    "dsds_gradient",
    "esd_gradient",
    "reparameterised_loss",
    "sds_gradient",
    "ssd_gradient",
    "timestep_weights",
    "vsd_gradient",
]
