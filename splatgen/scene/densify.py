"""Densify and prune: gsplat's DefaultStrategy with thresholds set per step and a Gaussian cap.

gsplat's strategy (Kerbl et al. 2023, section 5.2) accumulates the screen-space gradient norm of
each Gaussian's 2D mean; every `refine_every` steps it duplicates small Gaussians and splits large
ones whose mean gradient exceeds `grow_grad2d`, then prunes transparent and oversized ones.

What splatgen adds around it:
- a scale-free growth rule (`RelativeGrowth`, the default): the statistic is divided by its median over
  the Gaussians at the first refinement, a reference frozen for the rest of the run and kept in
  checkpoints. Multiplying the objective's gradient by any constant multiplies the statistic and the
  reference alike, so SDS at guidance 100, VSD at 7.5 and CSD at 1 grow the same share of Gaussians
  for the same relative gradients (Adam, which every parameter uses, is itself scale-invariant, so
  this was the one place the objective's scale leaked into the result). `AbsoluteGrowth` keeps
  gsplat's fixed threshold;
- the thresholds are arguments of each refinement (`DensifyThresholds`), derived per step from the
  score-truncation value (`densify_thresholds`): with the reference frozen, a truncation that rises
  later still lowers the growth early and raises it late;
- a hard cap on the number of Gaussians: when more candidates pass the threshold than the cap
  allows, only those with the largest gradients grow;
- the periodic opacity reset is called directly, since gsplat 1.5.3's own never fires
  (`step % reset_every == 0 & step > 0` parses as a chained comparison that is always False);
- each refinement returns a `RefineReport` that the trainer logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import tyro

from splatgen.lazy import no_grad

if TYPE_CHECKING:
    import torch
    from gsplat.strategy import DefaultStrategy


@dataclass
class RelativeGrowth:
    """Scale-free growth: grow when the mean screen-space gradient exceeds `ratio` x the reference, the
    median of that statistic over the Gaussians at the first refinement (frozen for the run)."""

    config_name = "relative"
    ratio: float = 0.60
    """Growth threshold at full truncation, in multiples of the reference median (the oracle reconstruction's tuned fixed threshold, 0.15, over its reference's mean on 16 seeds, 0.250)."""

    @property
    def threshold(self) -> float:
        return self.ratio

    def validate(self) -> None:
        if not self.ratio > 0.0:
            raise ValueError(f"densify.growth.ratio must be > 0, got {self.ratio}")


@dataclass
class AbsoluteGrowth:
    """gsplat/INRIA's fixed threshold on the mean screen-space gradient norm (its scale follows the objective's)."""

    config_name = "absolute"
    grad2d: float = 0.0002
    """Mean screen-space gradient norm above which a Gaussian grows, at full truncation (gsplat/INRIA default)."""

    @property
    def threshold(self) -> float:
        return self.grad2d

    def validate(self) -> None:
        if not self.grad2d > 0.0:
            raise ValueError(f"densify.growth.grad2d must be > 0, got {self.grad2d}")


Growth = (
    Annotated[RelativeGrowth, tyro.conf.subcommand("relative", description="Scale-free (default).")]
    | Annotated[AbsoluteGrowth, tyro.conf.subcommand("absolute", description="gsplat's fixed threshold.")]
)


@dataclass
class DensifyConfig:
    """When and how Gaussians are added and removed during training."""

    growth: Growth = field(default_factory=RelativeGrowth)
    """Which Gaussians grow: relative to the first refinement's median gradient (scale-free), or absolute."""
    grow_scale3d: float = 0.01
    """Gaussians smaller than this (times the scene scale) are duplicated, larger ones split."""
    prune_opacity: float = 0.005
    """Gaussians with opacity below this are removed."""
    prune_scale3d: float = 0.1
    """Gaussians larger than this (times the scene scale) are removed at each refinement."""
    start_fraction: float = 0.1
    """Fraction of the run after which refinement starts."""
    stop_fraction: float = 0.75
    """Fraction of the run after which refinement stops (the last quarter only polishes)."""
    refine_every: int = 100
    """Steps between refinements."""
    reset_opacity_every: int = 0
    """Steps between opacity resets (0 = never; most text-to-3D systems keep them off)."""
    max_gaussians: int = 500_000
    """Hard cap on the number of Gaussians."""
    tie_to_truncation: bool = True
    """Scale the growth threshold with the score-truncation value (D-SDS); constant otherwise."""
    scene_scale: float = 1.0
    """Scale of the scene, in world units, that the 3D size thresholds are relative to."""

    def validate(self) -> None:
        if not 0.0 <= self.start_fraction <= self.stop_fraction <= 1.0:
            raise ValueError(
                f"densify.start_fraction and densify.stop_fraction must satisfy 0 <= start <= stop <= 1, "
                f"got {self.start_fraction} and {self.stop_fraction}"
            )
        if self.refine_every < 1:
            raise ValueError(f"densify.refine_every must be >= 1, got {self.refine_every}")
        if self.max_gaussians < 1:
            raise ValueError(f"densify.max_gaussians must be >= 1, got {self.max_gaussians}")
        self.growth.validate()
        if not 0.0 <= self.prune_opacity < 1.0:
            raise ValueError(f"densify.prune_opacity must be in [0, 1), got {self.prune_opacity}")
        if self.reset_opacity_every < 0:
            raise ValueError(f"densify.reset_opacity_every must be >= 0, got {self.reset_opacity_every}")


@dataclass(frozen=True)
class DensifyThresholds:
    """The thresholds of one refinement (set per step by the schedule).

    `grow_grad2d` is in the growth rule's units: multiples of the reference median (relative) or a
    screen-space gradient norm (absolute)."""

    grow_grad2d: float
    prune_opacity: float


def densify_thresholds(densify: DensifyConfig, truncation_fraction: float | None) -> DensifyThresholds:
    """The densify/prune thresholds of a refinement, given the truncation's fraction of its maximum.

    `truncation_fraction` is c(progress) / c_max in (0, 1], or None for objectives without truncation.
    With score debiasing (D-SDS, Hong et al., arXiv 2303.15413) the gradient that reaches the
    Gaussians is bounded by c(progress), while gsplat grows a Gaussian when its accumulated
    screen-space gradient exceeds a fixed threshold. A fixed threshold therefore densifies too
    little while c is small and too much once it is large. The growth threshold scales with
    c(progress) / c_max, so a Gaussian whose gradient is the same fraction of what the truncation
    lets through grows at every stage of the ramp. Without truncation (and with
    `densify.tie_to_truncation = False`) the threshold is constant.
    """
    scale = 1.0
    if densify.tie_to_truncation and truncation_fraction is not None:
        scale = truncation_fraction
    return DensifyThresholds(grow_grad2d=densify.growth.threshold * scale, prune_opacity=densify.prune_opacity)


@dataclass(frozen=True)
class RefineReport:
    step: int
    thresholds: DensifyThresholds
    duplicated: int
    split: int
    pruned: int
    capped: int  # candidates that passed the threshold but were held back by the cap
    num_gaussians: int
    reference: float | None = None  # the relative rule's reference median (None: absolute growth)
    effective_grow_grad2d: float = 0.0  # the threshold compared with the mean screen-space gradient
    median_grad2d: float = 0.0  # this refinement's median mean screen-space gradient (visible Gaussians)


@dataclass
class Densifier:
    """Runs refinements on a gsplat-style ParameterDict with one optimizer per key."""

    config: DensifyConfig
    total_steps: int
    strategy: DefaultStrategy = field(init=False)
    state: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        # Only gsplat's gradient statistics are used (retain_grad, _update_state); the thresholds,
        # the refinement and the reset are ours (`_refine`, `_prune`), so its own fields stay default.
        from gsplat.strategy import DefaultStrategy

        self.strategy = DefaultStrategy()
        self.state = self.strategy.initialize_state(scene_scale=self.config.scene_scale)

    @property
    def start_step(self) -> int:
        return int(round(self.config.start_fraction * self.total_steps))

    @property
    def stop_step(self) -> int:
        return int(round(self.config.stop_fraction * self.total_steps))

    def is_refine_step(self, step: int) -> bool:
        return self.start_step < step <= self.stop_step and step % self.config.refine_every == 0

    def step_pre_backward(self, params: torch.nn.ParameterDict, optimizers: dict, step: int, info: dict) -> None:
        """Keep the gradient of the 2D means (call before backward)."""
        if step <= self.stop_step:
            self.strategy.step_pre_backward(params, optimizers, self.state, step, info)

    def step_post_backward(
        self, params: torch.nn.ParameterDict, optimizers: dict, step: int, info: dict, thresholds: DensifyThresholds
    ) -> RefineReport | None:
        """Accumulate gradient statistics; refine when due. Returns a report on refinement steps."""
        from gsplat.strategy.ops import reset_opa

        report = None
        if step <= self.stop_step:
            self.strategy._update_state(params, self.state, info, packed=False)
            if self.is_refine_step(step):
                report = self._refine(params, optimizers, step, thresholds)
        every = self.config.reset_opacity_every
        if every and step > 0 and step % every == 0 and step <= self.stop_step:
            reset_opa(params=params, optimizers=optimizers, state=self.state, value=2.0 * thresholds.prune_opacity)
        return report

    @no_grad
    def _refine(
        self, params: torch.nn.ParameterDict, optimizers: dict, step: int, thresholds: DensifyThresholds
    ) -> RefineReport:
        import torch
        from gsplat.strategy.ops import duplicate, split

        grads = self.state["grad2d"] / self.state["count"].clamp_min(1)  # [N] mean screen-space gradient
        seen = self.state["count"] > 0  # [N] Gaussians visible since the last refinement
        median = float(grads[seen].median()) if bool(seen.any()) else 0.0
        reference = None
        effective = thresholds.grow_grad2d
        if isinstance(self.config.growth, RelativeGrowth):
            if "reference_grad2d" not in self.state:  # calibrate once, at the first refinement
                self.state["reference_grad2d"] = median
            reference = self.state["reference_grad2d"]
            effective = thresholds.grow_grad2d * reference if reference > 0.0 else float("inf")
        candidates = grads > effective
        budget = max(self.config.max_gaussians - len(params["means"]), 0)
        capped = 0
        if int(candidates.sum()) > budget:
            capped = int(candidates.sum()) - budget
            keep = torch.zeros_like(candidates)
            if budget > 0:
                keep[torch.topk(torch.where(candidates, grads, -1.0), budget).indices] = True
            candidates = keep
        is_small = (
            torch.exp(params["scales"]).max(dim=-1).values <= self.config.grow_scale3d * self.state["scene_scale"]
        )
        to_duplicate = candidates & is_small
        to_split = candidates & ~is_small
        num_duplicated, num_split = int(to_duplicate.sum()), int(to_split.sum())
        if num_duplicated:
            duplicate(params=params, optimizers=optimizers, state=self.state, mask=to_duplicate)
            to_split = torch.cat([to_split, torch.zeros(num_duplicated, dtype=torch.bool, device=to_split.device)])
        if num_split:
            split(params=params, optimizers=optimizers, state=self.state, mask=to_split)
        num_pruned = self._prune(params, optimizers, thresholds)
        self.state["grad2d"].zero_()
        self.state["count"].zero_()
        return RefineReport(
            step,
            thresholds,
            num_duplicated,
            num_split,
            num_pruned,
            capped,
            len(params["means"]),
            reference=reference,
            effective_grow_grad2d=effective,
            median_grad2d=median,
        )

    def _prune(self, params: torch.nn.ParameterDict, optimizers: dict, thresholds: DensifyThresholds) -> int:
        """Remove nearly transparent and oversized Gaussians (never all of them)."""
        import torch
        from gsplat.strategy.ops import remove

        too_transparent = torch.sigmoid(params["opacities"]) < thresholds.prune_opacity
        too_big = torch.exp(params["scales"]).max(dim=-1).values > self.config.prune_scale3d * self.state["scene_scale"]
        to_prune = too_transparent | too_big
        if bool(to_prune.all()):
            to_prune[torch.argmax(params["opacities"])] = False
        num_pruned = int(to_prune.sum())
        if num_pruned:
            remove(params=params, optimizers=optimizers, state=self.state, mask=to_prune)
        return num_pruned

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {key: (value.clone() if isinstance(value, torch.Tensor) else value) for key, value in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
