"""Perp-Neg: threestudio's per-camera rule and weights, the perpendicular guidance, its place in training."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from splatgen.cli import main
from splatgen.objectives import CSD, DSDS, SDS, SSD, VSD
from splatgen.prompts import PerpNegWeights, ViewRanges, perp_neg_conditional, perp_neg_plan, plain_view_prompts
from splatgen.prompts.perp_neg import perpendicular_component, shifted_exponential_decay
from splatgen.prompts.views import BACK, FRONT, OVERHEAD, SIDE
from splatgen.scene.cameras import make_cameras
from splatgen.train.config import TrainConfig
from splatgen.train.distill import PromptEmbeddings, distillation_step
from splatgen.train.step import TextConditions


def threestudio_rule(azimuth: float, elevation: float, overhead_min_elevation: float = 60.0):
    """threestudio's get_text_embeddings_perp_neg for one camera, written as its loop: (mix, negatives, weights)."""
    f = lambda decay, r: decay[0] * math.exp(-decay[1] * r) + decay[2]  # noqa: E731
    defaults = dict(f_sb=(1, 0.5, -0.606), f_fsb=(1, 0.5, 0.967), f_fs=(4, 0.5, -2.426), f_sf=(4, 0.5, -2.426))
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    if elevation > overhead_min_elevation:
        return {OVERHEAD: 1.0}, None, [0.0, 0.0]
    if abs(azimuth) < 90:
        r = 1 - abs(azimuth) / 90
        return {FRONT: r, SIDE: 1 - r}, [FRONT, SIDE], [-f(defaults["f_fs"], r), -f(defaults["f_sf"], 1 - r)]
    r = 2.0 - abs(azimuth) / 90
    return {SIDE: r, BACK: 1 - r}, [SIDE, FRONT], [-f(defaults["f_sb"], r), -f(defaults["f_fsb"], r)]


def test_weight_functions_match_threestudios_defaults_at_known_points() -> None:
    weights = PerpNegWeights()
    ones, zeros = torch.ones(1), torch.zeros(1)
    assert abs(shifted_exponential_decay(weights.f_fs, ones).item()) < 1e-3  # threestudio: "f_fs(1) = 0"
    assert shifted_exponential_decay(weights.f_sf, zeros).item() == pytest.approx(4 - 2.426)
    assert shifted_exponential_decay(weights.f_sb, zeros).item() == pytest.approx(1 - 0.606)
    assert shifted_exponential_decay(weights.f_fsb, ones).item() == pytest.approx(math.exp(-0.5) + 0.967)
    plan = perp_neg_plan(torch.tensor([0.0, 90.0, 180.0]), torch.zeros(3), ViewRanges(), weights)
    torch.testing.assert_close(plan.positive_mix[:, :3], torch.eye(3))  # front, side, back anchors
    torch.testing.assert_close(
        plan.negative_weights,
        torch.tensor(
            [
                [-(4 * math.exp(-0.5) - 2.426), -1.574],
                [-(math.exp(-0.5) - 0.606), -(math.exp(-0.5) + 0.967)],
                [-0.394, -1.967],
            ]
        ),
    )


def test_plan_matches_threestudios_loop_over_the_sphere() -> None:
    azimuths = torch.linspace(-180.0, 179.0, 73)
    elevations = torch.tensor([-10.0, 20.0, 75.0]).repeat_interleave(73)
    azimuths = azimuths.repeat(3)
    plan = perp_neg_plan(azimuths, elevations, ViewRanges(), PerpNegWeights())
    for index, (azimuth, elevation) in enumerate(zip(azimuths.tolist(), elevations.tolist())):
        mix, negatives, weights = threestudio_rule(azimuth, elevation)
        expected_mix = torch.zeros(4)
        for view, weight in mix.items():
            expected_mix[view] = weight
        torch.testing.assert_close(plan.positive_mix[index], expected_mix, atol=1e-6, rtol=0)
        torch.testing.assert_close(plan.negative_weights[index], torch.tensor(weights), atol=1e-5, rtol=0)
        if negatives is not None:
            assert plan.negative_views[index].tolist() == negatives


def test_projected_negatives_are_orthogonal_to_the_positive_residual_per_sample() -> None:
    generator = torch.Generator().manual_seed(0)
    positive, negative = (torch.randn(5, 4, 8, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    projected = perpendicular_component(negative, positive)
    dots = (projected * positive).flatten(1).sum(1) / positive.flatten(1).norm(dim=1) / projected.flatten(1).norm(dim=1)
    assert dots.abs().max() < 1e-12
    torch.testing.assert_close(perpendicular_component(3.0 * positive, positive), torch.zeros_like(positive))


class AnalyticPrior:
    """A text- and time-dependent eps that treats every sample alone (batching cannot change its bits)."""

    views_per_group = 1

    def __init__(self) -> None:
        self.alphas_cumprod = torch.linspace(0.999, 0.02, 1000)
        self.image_size = 8
        self.calls: list[int] = []

    def predict_noise(self, noisy_latents, timesteps, text_embeddings, cameras=None):
        self.calls.append(noisy_latents.shape[0])
        scale = text_embeddings.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return torch.tanh(noisy_latents * scale + timesteps.view(-1, 1, 1, 1) / 1000.0)


def perp_text(batch: int, weights: torch.Tensor | None) -> PromptEmbeddings:
    generator = torch.Generator().manual_seed(1)
    view, negative, empty, plain = (torch.randn(batch, 77, 8, generator=generator) for _ in range(4))
    negatives = None if weights is None else torch.randn(batch, 2, 77, 8, generator=generator)
    return PromptEmbeddings(view, negative, empty, plain, negatives, weights)


@pytest.mark.parametrize("objective", [SDS(), DSDS(), CSD(negative_weight=0.5), SSD()], ids=lambda o: type(o).__name__)
def test_zero_negative_weights_give_plain_cfg_bit_for_bit(objective) -> None:
    cameras = make_cameras(*(torch.full((4,), value) for value in (30.0, 10.0, 2.5, 50.0)), 32, 32)
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    results, priors = [], []
    for weights in (None, torch.zeros(4, 2), torch.full((4, 2), -1.5)):
        prior = AnalyticPrior()
        text = perp_text(4, weights)
        result = distillation_step(
            prior, objective, latents.clone(), cameras, text, 0.4, torch.Generator().manual_seed(3)
        )
        results.append(result.gradient)
        priors.append(prior)
    assert torch.equal(results[0], results[1])
    assert not torch.allclose(results[0], results[2])
    copies = 3 if objective == CSD(negative_weight=0.5) else 2
    assert priors[0].calls == [copies * 4] and priors[1].calls == [(copies + 2) * 4]  # one UNet call: 4B for SDS


def test_guidance_is_threestudios_formula() -> None:
    generator = torch.Generator().manual_seed(4)
    eps_pos, eps_uncond, eps_neg1, eps_neg2 = (torch.randn(3, 4, 8, 8, generator=generator) for _ in range(4))
    weights = torch.tensor([[-0.5, -1.0], [0.0, -2.0], [-1.5, 0.0]])
    scale = 7.5
    e_pos = eps_pos - eps_uncond
    accumulated = sum(
        weights[:, i].view(-1, 1, 1, 1) * perpendicular_component(e - eps_uncond, e_pos)
        for i, e in enumerate((eps_neg1, eps_neg2))
    )
    expected = eps_uncond + scale * (e_pos + accumulated)  # stable_diffusion_guidance.py, Perp-Neg branch
    conditional = perp_neg_conditional(eps_pos, eps_uncond, [eps_neg1, eps_neg2], weights)
    torch.testing.assert_close(eps_uncond + scale * (conditional - eps_uncond), expected)


def test_text_conditions_use_the_view_prompts_for_positives_and_negatives() -> None:
    view_prompts = plain_view_prompts("a corgi")
    view_embeddings = torch.randn(4, 77, 8)
    conditions = TextConditions(view_prompts, view_embeddings, torch.randn(3, 77, 8), False, perp_neg=PerpNegWeights())
    cameras = make_cameras(
        torch.tensor([45.0, 135.0]), torch.zeros(2), torch.full((2,), 2.5), torch.full((2,), 50.0), 32, 32
    )
    text = conditions.for_cameras(cameras)
    torch.testing.assert_close(text.view[0], 0.5 * view_embeddings[FRONT] + 0.5 * view_embeddings[SIDE])
    torch.testing.assert_close(text.view[1], 0.5 * view_embeddings[SIDE] + 0.5 * view_embeddings[BACK])
    assert torch.equal(text.perp_negatives[0, 0], view_embeddings[FRONT]) and torch.equal(
        text.perp_negatives[1, 1], view_embeddings[FRONT]
    )


def test_perp_neg_is_refused_with_lora_objectives() -> None:
    config = TrainConfig(prompt="a corgi")
    config = replace(config, prompts=replace(config.prompts, perp_neg=True), objective=VSD())
    with pytest.raises(ValueError, match="--prompts.perp-neg works with sds, dsds, csd and ssd"):
        config.validate()


def test_smoke_run_with_perp_neg(tmp_path: Path, tiny_models, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--prompts.perp-neg", "--prompt", "a corgi", "--out", str(out)]
    status = main([*args, "--no-viewer", "--steps", "6", "--video-frames", "0"])
    assert status == 0, capsys.readouterr().out
    assert (out / "a-corgi.ply").stat().st_size > 0
    assert "perp_neg: true" in (out / "config.yaml").read_text()
