"""Densification: gsplat's DefaultStrategy driven by the torch renderer, the Gaussian cap, the
opacity reset gsplat 1.5.3 never fires, and the coupling of thresholds to the truncation schedule."""

from __future__ import annotations

import math

import pytest
import torch

from splatgen.objectives import DSDS, SDS
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import OrbitSampler, sample_cameras
from splatgen.scene.densify import (
    AbsoluteGrowth,
    Densifier,
    DensifyConfig,
    DensifyThresholds,
    RelativeGrowth,
    densify_thresholds,
)
from splatgen.scene.gaussians import activate
from splatgen.scene.init import BallInit, random_ball
from splatgen.train.optim import OptimConfig, make_optimizers

REFINE_STEP = 100


def thresholds_at(densify: DensifyConfig, objective, progress: float) -> DensifyThresholds:
    """What the training step passes: the truncation c(progress) as a fraction of its maximum (None: none)."""
    truncation = objective.truncation(progress)
    return densify_thresholds(densify, None if truncation is None else truncation / objective.max_truncation)


def rendered_scene(seed: int = 0, count: int = 300):
    """Params, optimizers and the render `info` after one backward of a random image loss."""
    generator = torch.Generator().manual_seed(seed)
    splats = random_ball(BallInit(count=count, radius=0.6, opacity=0.5), 0, generator).to_parameters()
    optimizers = make_optimizers(splats, OptimConfig())
    cameras = sample_cameras(OrbitSampler(), 2, 32, 32, generator)
    output = rasterize(activate(splats), cameras, make_backgrounds("white", 2))
    output.info["means2d"].retain_grad()
    weights = torch.randn(output.images.shape, generator=generator)
    (output.images * weights).sum().backward()
    return splats, optimizers, output.info


def refine_once(config: DensifyConfig, thresholds: DensifyThresholds, seed: int = 0):
    splats, optimizers, info = rendered_scene(seed)
    densifier = Densifier(config, total_steps=2 * REFINE_STEP)
    report = densifier.step_post_backward(splats, optimizers, REFINE_STEP, info, thresholds)
    assert report is not None
    return report, splats


def test_growth_threshold_follows_the_truncation_ramp():
    densify = DensifyConfig(growth=AbsoluteGrowth(grad2d=4e-4))
    dsds = DSDS(truncation_start=2.0, truncation_end=8.0)
    assert thresholds_at(densify, dsds, 0.0).grow_grad2d == pytest.approx(1e-4)
    assert thresholds_at(densify, dsds, 0.5).grow_grad2d == pytest.approx(2.5e-4)
    assert thresholds_at(densify, dsds, 1.0).grow_grad2d == pytest.approx(4e-4)
    for progress in (0.0, 0.5, 1.0):  # no truncation: a constant threshold
        assert thresholds_at(densify, SDS(), progress).grow_grad2d == 4e-4
    untied = DensifyConfig(growth=AbsoluteGrowth(grad2d=4e-4), tie_to_truncation=False)
    assert thresholds_at(untied, dsds, 0.0).grow_grad2d == 4e-4


def test_a_different_truncation_schedule_changes_the_densification():
    """Same scene, same step: a lower truncation (early in D-SDS's ramp) densifies more Gaussians."""
    splats, _, info = rendered_scene()
    grads = info["means2d"].grad.norm(dim=-1).max(dim=0).values * 16  # pick a base threshold inside the spread
    densify = DensifyConfig(
        growth=AbsoluteGrowth(grad2d=float(grads.median())),
        refine_every=REFINE_STEP,
        start_fraction=0.0,
        stop_fraction=1.0,
    )
    gentle = thresholds_at(densify, DSDS(truncation_start=2.0, truncation_end=8.0), 0.25)
    flat = thresholds_at(densify, DSDS(truncation_start=8.0, truncation_end=8.0), 0.25)
    assert gentle.grow_grad2d < flat.grow_grad2d
    gentle_report, _ = refine_once(densify, gentle)
    flat_report, _ = refine_once(densify, flat)
    grown = lambda report: report.duplicated + report.split  # noqa: E731
    assert grown(gentle_report) > grown(flat_report) > 0


def test_the_cap_keeps_the_largest_gradients():
    config = DensifyConfig(
        refine_every=REFINE_STEP,
        start_fraction=0.0,
        stop_fraction=1.0,
        max_gaussians=320,
        prune_opacity=0.0,
        prune_scale3d=10.0,
    )
    report, splats = refine_once(config, DensifyThresholds(grow_grad2d=1e-12, prune_opacity=0.0))
    assert len(splats["means"]) == 320 and report.num_gaussians == 320
    assert report.duplicated + report.split == 20 and report.capped > 0


def test_opacity_reset_fires(monkeypatch):
    config = DensifyConfig(reset_opacity_every=50, refine_every=1000, start_fraction=0.0, stop_fraction=1.0)
    splats, optimizers, info = rendered_scene()
    densifier = Densifier(config, total_steps=1000)
    densifier.step_post_backward(splats, optimizers, 50, info, DensifyThresholds(grow_grad2d=1.0, prune_opacity=0.01))
    highest = float(torch.sigmoid(splats["opacities"].detach()).max())
    assert math.isclose(highest, 0.02, rel_tol=1e-4)


def test_refinement_window_follows_the_config():
    densifier = Densifier(DensifyConfig(start_fraction=0.1, stop_fraction=0.5, refine_every=100), total_steps=1000)
    assert [step for step in range(0, 1001, 100) if densifier.is_refine_step(step)] == [200, 300, 400, 500]


# ---------------------------------------------------------------- scale-free growth


def refinements_of_a_scaled_scene(growth, gradient_scale: float, steps: int = 24) -> list[tuple[int, int, int, int]]:
    """Refinements of a short fit of a random ball to a fixed random image target, with the loss (so every
    screen-space gradient) multiplied by `gradient_scale`: (duplicated, split, pruned, count) per refinement."""
    torch.manual_seed(0)  # gsplat's split() draws the new positions from the global generator
    generator = torch.Generator().manual_seed(3)
    splats = random_ball(BallInit(count=200, radius=0.6, opacity=0.5), 0, generator).to_parameters()
    optimizers = make_optimizers(splats, OptimConfig())
    config = DensifyConfig(growth=growth, refine_every=8, start_fraction=0.0, stop_fraction=1.0, prune_opacity=0.02)
    densifier = Densifier(config, total_steps=steps)
    target = torch.rand(2, 32, 32, 3, generator=generator)
    reports = []
    for step in range(steps):
        cameras = sample_cameras(OrbitSampler(), 2, 32, 32, generator)
        output = rasterize(activate(splats), cameras, make_backgrounds("white", 2))
        densifier.step_pre_backward(splats, optimizers, step, output.info)
        (gradient_scale * ((output.images - target) ** 2).sum()).backward()
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        report = densifier.step_post_backward(
            splats, optimizers, step, output.info, DensifyThresholds(growth.threshold, config.prune_opacity)
        )
        if report is not None:
            reports.append((report.duplicated, report.split, report.pruned, report.num_gaussians))
    return reports


def test_scaling_the_gradient_leaves_relative_growth_decisions_unchanged():
    """x10 and x0.1 on every gradient: Adam steps the same, and the relative rule grows the same Gaussians."""
    growth = RelativeGrowth(ratio=1.5)
    reference = refinements_of_a_scaled_scene(growth, 1.0)
    assert sum(duplicated + split for duplicated, split, _, _ in reference) > 0  # the fit really grows
    assert refinements_of_a_scaled_scene(growth, 10.0) == reference
    assert refinements_of_a_scaled_scene(growth, 0.1) == reference


def test_absolute_growth_depends_on_the_gradient_scale():
    """The contrast: gsplat's fixed threshold grows a different number of Gaussians once the gradient is x10."""
    growth = AbsoluteGrowth(grad2d=2e-3)
    assert refinements_of_a_scaled_scene(growth, 10.0) != refinements_of_a_scaled_scene(growth, 1.0)


def test_relative_growth_reference_is_frozen_and_checkpointed():
    """The reference is the first refinement's median and survives a state_dict round trip."""
    splats, optimizers, info = rendered_scene()
    config = DensifyConfig(refine_every=REFINE_STEP, start_fraction=0.0, stop_fraction=1.0)
    densifier = Densifier(config, total_steps=4 * REFINE_STEP)
    first = densifier.step_post_backward(splats, optimizers, REFINE_STEP, info, DensifyThresholds(5.0, 0.0))
    assert first.reference == pytest.approx(first.median_grad2d) and first.reference > 0
    assert first.effective_grow_grad2d == pytest.approx(5.0 * first.reference)
    restored = Densifier(config, total_steps=4 * REFINE_STEP)
    restored.load_state_dict(densifier.state_dict())
    splats, optimizers, info = rendered_scene(seed=1)  # other gradients: the reference must not move
    restored.state["grad2d"] = torch.zeros(len(splats["means"]))
    restored.state["count"] = torch.zeros(len(splats["means"]))
    second = restored.step_post_backward(splats, optimizers, 2 * REFINE_STEP, info, DensifyThresholds(5.0, 0.0))
    assert second.reference == first.reference
    assert second.median_grad2d != pytest.approx(first.median_grad2d)


def test_a_later_truncation_schedule_still_changes_relative_growth():
    """With the reference frozen, a truncation ramp that is low at this refinement grows more Gaussians."""
    splats, _, info = rendered_scene()
    densify = DensifyConfig(refine_every=REFINE_STEP, start_fraction=0.0, stop_fraction=1.0)
    gentle = thresholds_at(densify, DSDS(truncation_start=2.0, truncation_end=8.0), 0.0)
    flat = thresholds_at(densify, DSDS(truncation_start=8.0, truncation_end=8.0), 0.0)
    gentle_report, _ = refine_once(densify, gentle)
    flat_report, _ = refine_once(densify, flat)
    assert gentle_report.reference == flat_report.reference  # same scene, same calibration
    grown = lambda report: report.duplicated + report.split  # noqa: E731
    assert grown(gentle_report) > grown(flat_report)


@pytest.mark.slow
def test_scaling_the_objective_leaves_a_training_runs_refinements_unchanged(tmp_path, tiny_models, monkeypatch):
    """A real tiny D-SDS run, its gradient multiplied by 10 and by 0.1 after the objective: same refinements."""
    import os
    from dataclasses import replace
    from pathlib import Path

    from rich.console import Console

    import splatgen.objectives.dsds as dsds_module
    from splatgen.io.config_file import from_dict, load_yaml
    from splatgen.train.config import TrainConfig
    from splatgen.train.loop import train
    from splatgen.viewer import ViewerConfig

    smoke = from_dict(
        TrainConfig, load_yaml(Path(__file__).resolve().parents[1] / "splatgen" / "presets" / "smoke.yaml")
    )
    quiet = Console(file=open(os.devnull, "w"))
    unscaled = dsds_module.dsds_gradient

    def refinements(scale: float) -> list[tuple[int, int, int, int]]:
        monkeypatch.setattr(dsds_module, "dsds_gradient", lambda config, inputs: scale * unscaled(config, inputs))
        config = replace(
            smoke,
            prompt="a red apple",
            out=tmp_path / f"x{scale}",
            steps=24,
            video_frames=0,
            viewer=ViewerConfig(enabled=False),
            densify=replace(smoke.densify, start_fraction=0.0, refine_every=8),
        )
        config.prompts.debias = False
        result = train(config, console=quiet)
        return [(r.duplicated, r.split, r.pruned, r.num_gaussians) for r in result.refinements]

    reference = refinements(1.0)
    assert len(reference) >= 2 and sum(d + s for d, s, _, _ in reference) > 0
    assert refinements(10.0) == reference
    assert refinements(0.1) == reference
