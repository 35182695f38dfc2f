"""Densification: gsplat's DefaultStrategy driven by the torch renderer, the Gaussian cap, the
opacity reset gsplat 1.5.3 never fires, and the coupling of thresholds to the truncation schedule."""

from __future__ import annotations

import math

import pytest
import torch

from splatgen.objectives import DSDS, SDS
from splatgen.objectives.schedules import densify_thresholds
from splatgen.render import make_backgrounds, rasterize
from splatgen.scene.cameras import OrbitSampler, sample_cameras
from splatgen.scene.densify import Densifier, DensifyConfig, DensifyThresholds
from splatgen.scene.gaussians import activate
from splatgen.scene.init import BallInit, random_ball
from splatgen.train.optim import OptimConfig, make_optimizers

REFINE_STEP = 100


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
    densify = DensifyConfig(grow_grad2d=4e-4)
    dsds = DSDS(truncation_start=2.0, truncation_end=8.0)
    assert densify_thresholds(densify, dsds, 0.0).grow_grad2d == pytest.approx(1e-4)
    assert densify_thresholds(densify, dsds, 0.5).grow_grad2d == pytest.approx(2.5e-4)
    assert densify_thresholds(densify, dsds, 1.0).grow_grad2d == pytest.approx(4e-4)
    for progress in (0.0, 0.5, 1.0):  # no truncation: a constant threshold
        assert densify_thresholds(densify, SDS(), progress).grow_grad2d == 4e-4
    untied = DensifyConfig(grow_grad2d=4e-4, tie_to_truncation=False)
    assert densify_thresholds(untied, dsds, 0.0).grow_grad2d == 4e-4


def test_a_different_truncation_schedule_changes_the_densification():
    """Same scene, same step: a lower truncation (early in D-SDS's ramp) densifies more Gaussians."""
    splats, _, info = rendered_scene()
    grads = info["means2d"].grad.norm(dim=-1).max(dim=0).values * 16  # pick a base threshold inside the spread
    densify = DensifyConfig(
        grow_grad2d=float(grads.median()), refine_every=REFINE_STEP, start_fraction=0.0, stop_fraction=1.0
    )
    gentle = densify_thresholds(densify, DSDS(truncation_start=2.0, truncation_end=8.0), 0.25)
    flat = densify_thresholds(densify, DSDS(truncation_start=8.0, truncation_end=8.0), 0.25)
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
