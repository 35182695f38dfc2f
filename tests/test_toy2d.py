"""The 2D toy: exact mixture scores, and the paper claims that reproduce on it (docs/toy2d.md).

Short runs (500 steps, lr 0.02) of the same settings the docs use. SSD's own claim (converging to a
conditional mode) holds when the singular mode sits at the conditional modes' centroid and T_M reaches
the timestep at which the noisy conditional modes merge; off-centre it fails for every T_M tried:
both are asserted, see docs/toy2d.md.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SSD_MIXTURE = ROOT / "assets" / "toy" / "ssd_two_modes.json"
CENTRED_MIXTURE = ROOT / "assets" / "toy" / "ssd_two_modes_centred.json"
ESD_MIXTURE = ROOT / "assets" / "toy" / "esd_three_modes.json"


def load_toy():
    spec = importlib.util.spec_from_file_location("toy2d", ROOT / "scripts" / "toy2d.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy2d"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


toy2d = load_toy()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def short_run(name: str, mixture: Path, **kwargs) -> dict:
    settings = {"steps": 500, "lr": 0.02, "seed": 0, **kwargs}
    return toy2d.run_toy(toy2d.toy_objectives()[name], toy2d.load_prior(mixture), **settings)


def test_closed_form_noise_prediction_is_minus_scaled_score():
    prior = toy2d.load_prior(SSD_MIXTURE)
    alphas_cumprod = toy2d.stable_diffusion_alphas_cumprod()
    generator = torch.Generator().manual_seed(0)
    for t in (0, 150, 600, 999):
        abar = alphas_cumprod[t]
        noisy = torch.randn(32, 2, generator=generator, dtype=torch.float64).requires_grad_(True)
        diffused = toy2d.GaussianMixture(
            prior.unconditional.means * abar.sqrt(),
            (abar * prior.unconditional.stds**2 + 1 - abar).sqrt(),
            prior.unconditional.weights,
        )
        (score,) = torch.autograd.grad(toy2d.mixture_log_density(diffused, noisy).sum(), noisy)
        expected = -(1 - abar).sqrt() * score
        predicted = toy2d.mixture_noise_prediction(prior.unconditional, noisy.detach(), abar.expand(32))
        torch.testing.assert_close(predicted, expected)


def test_conditional_is_the_renormalised_subset():
    prior = toy2d.load_prior(SSD_MIXTURE)
    assert prior.conditional_indices == [0, 1]
    torch.testing.assert_close(prior.conditional.means, prior.unconditional.means[:2])
    assert prior.conditional.weights.sum().item() == pytest.approx(1.0)


def test_single_camera_kernel_without_bandwidth_predicts_the_noise():
    """One render per camera: q(x|c) is a point mass and its eps is the noise itself (ESD's argument)."""
    alphas_cumprod = toy2d.stable_diffusion_alphas_cumprod()
    generator = torch.Generator().manual_seed(1)
    particles = torch.randn(8, 2, generator=generator, dtype=torch.float64)
    noise = torch.randn(8, 2, generator=generator, dtype=torch.float64)
    abar = alphas_cumprod[torch.randint(0, 1000, (8,), generator=generator)]
    noisy = abar.sqrt()[:, None] * particles + (1 - abar).sqrt()[:, None] * noise
    torch.testing.assert_close(toy2d.particle_kernel_noise_prediction(particles, noisy, abar, 0.0), noise)


def test_mode_seeking_is_trapped_between_the_conditional_modes():
    run = short_run("mode-seeking", SSD_MIXTURE, particles=8)
    final = torch.tensor(run["final"])
    assert final.norm(dim=1).max() < 0.4  # at the midpoint of the modes (-1, 0) and (1, 0)
    assert run["mean_distance_to_conditional_mode"] > 0.6
    assert run["fraction_at_a_conditional_mode"] == 0.0


def test_mode_disengaging_escapes_the_trap_into_low_density():
    run = short_run("mode-disengaging", SSD_MIXTURE, particles=8)
    final = torch.tensor(run["final"])
    assert final.norm(dim=1).min() > 1.5  # left the trap at the origin
    assert run["mean_distance_to_conditional_mode"] > 1.5  # ... and overshot every conditional mode
    assert run["mean_conditional_log_density"] < -20.0


def test_ssd_escapes_the_trap():
    run = short_run("ssd", SSD_MIXTURE, particles=8)
    assert torch.tensor(run["final"]).norm(dim=1).min() > 1.5


def ssd_run(mixture: Path, threshold_timestep: int) -> dict:
    ssd = dataclasses.replace(toy2d.toy_objectives()["ssd"], threshold_timestep=threshold_timestep)
    return toy2d.run_toy(ssd, toy2d.load_prior(mixture), steps=500, lr=0.02, seed=0, particles=8)


def test_centred_mixture_merges_its_noisy_conditional_modes_near_t_350():
    prior = toy2d.load_prior(CENTRED_MIXTURE)
    assert prior.unconditional.means[2].tolist() == [0.0, 0.0]  # the singular mode sits at the trap
    merge = toy2d.merge_timestep(prior.conditional, toy2d.stable_diffusion_alphas_cumprod())
    assert 340 <= merge <= 360  # modes at +-1, std 0.2, on SD's schedule: abar_t <= 1 / 1.96


def test_centred_mixture_traps_mode_seeking_and_sends_mode_disengaging_to_low_density():
    seeking = short_run("mode-seeking", CENTRED_MIXTURE, particles=8)
    assert torch.tensor(seeking["final"]).norm(dim=1).max() < 0.4 and seeking["fraction_at_a_conditional_mode"] == 0.0
    disengaging = short_run("mode-disengaging", CENTRED_MIXTURE, particles=8)
    assert disengaging["fraction_at_a_conditional_mode"] == 0.0
    assert disengaging["mean_conditional_log_density"] < -20.0


def test_ssd_reaches_a_conditional_mode_when_the_singular_mode_is_centred_and_t_m_reaches_the_merge():
    run = ssd_run(CENTRED_MIXTURE, threshold_timestep=400)
    assert run["fraction_at_a_conditional_mode"] == 1.0
    assert run["mean_distance_to_conditional_mode"] < 0.2
    assert run["conditional_modes_covered"] == 2
    assert ssd_run(CENTRED_MIXTURE, threshold_timestep=200)["fraction_at_a_conditional_mode"] == 0.0  # T_M too low


def test_ssd_reaches_no_conditional_mode_when_the_singular_mode_is_off_centre():
    for threshold_timestep in (200, 400, 600):
        assert ssd_run(SSD_MIXTURE, threshold_timestep)["fraction_at_a_conditional_mode"] == 0.0


def test_esd_keeps_particles_spread_where_sds_collapses():
    sds = short_run("sds", ESD_MIXTURE, particles=16, init_spread=0.1)
    esd = short_run("esd", ESD_MIXTURE, particles=16, init_spread=0.1)
    assert esd["spread"] > 4.0 * sds["spread"]
    assert esd["conditional_modes_covered"] >= 2
    assert sds["conditional_modes_covered"] == 0


def test_cli_prints_json_with_final_positions_last():
    environment = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, str(ROOT / "scripts" / "toy2d.py"), "--objective", "dsds", "--mixture", str(SSD_MIXTURE)]
    command += [
        "--init",
        "0.5,-0.5",
        "--steps",
        "20",
        "--seed",
        "3",
        "--particles",
        "4",
        "--override",
        "truncation_end=4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["final"]) == 4 and all(
        len(point) == 2 and all(math.isfinite(v) for v in point) for point in report["final"]
    )
    assert report["objective"] == "dsds" and report["overrides"] == ["truncation_end=4"]
    assert len(report["distance_to_conditional_mode"]) == 4
