"""Each objective against its published formula, written out again here, on random tensors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import tyro

from splatgen.io.config_file import from_dict, to_dict
from splatgen.objectives import (
    CSD,
    DSDS,
    ESD,
    OBJECTIVES,
    SDS,
    SSD,
    VSD,
    Objective,
    ObjectiveChoice,
    ScoreInputs,
    reparameterised_loss,
    timestep_weights,
)
from splatgen.objectives.schedules import TimestepSchedule

BATCH, CHANNELS, HEIGHT, WIDTH = 4, 4, 8, 8


def stable_diffusion_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def random_inputs(seed: int = 0, timesteps: list[int] | None = None, progress: float = 0.3) -> ScoreInputs:
    generator = torch.Generator().manual_seed(seed)

    def randn() -> torch.Tensor:
        return torch.randn(BATCH, CHANNELS, HEIGHT, WIDTH, generator=generator)

    t = torch.tensor(timesteps) if timesteps is not None else torch.randint(20, 981, (BATCH,), generator=generator)
    return ScoreInputs(
        latents=randn(),
        noise=randn(),
        timesteps=t,
        alphas_cumprod=stable_diffusion_alphas_cumprod(),
        eps_cond=randn(),
        eps_uncond=randn(),
        progress=progress,
        eps_lora_camera=randn(),
        eps_lora_no_camera=randn(),
        eps_negative=randn(),
    )


def sds_weight(inputs: ScoreInputs) -> torch.Tensor:
    """DreamFusion's w(t) = 1 - abar_t, per sample: [B, 1, 1, 1]."""
    return (1.0 - inputs.alphas_cumprod[inputs.timesteps]).view(-1, 1, 1, 1)


ALL_OBJECTIVES = [cls() for cls in OBJECTIVES.values()]  # the one registry


# -- SDS ---------------------------------------------------------------------------------------


def test_sds_matches_dreamfusion():
    inputs = random_inputs()
    s = 100.0
    eps_hat = inputs.eps_uncond + s * (inputs.eps_cond - inputs.eps_uncond)
    expected = sds_weight(inputs) * (eps_hat - inputs.noise)
    torch.testing.assert_close(SDS(guidance_scale=s).gradient(inputs), expected)


@pytest.mark.parametrize("s", [0.0, 1.0, 7.5, 100.0])
def test_sds_decomposes_into_disengaging_seeking_and_variance_reduction(s):
    """eps_hat - eps = (s - 1)(eps_y - eps_0) + eps_y - eps (SSD paper, Eq. 4)."""
    inputs = random_inputs(seed=1)
    weights = sds_weight(inputs)
    decomposed = (s - 1.0) * (inputs.eps_cond - inputs.eps_uncond) + inputs.eps_cond - inputs.noise
    torch.testing.assert_close(SDS(guidance_scale=s).gradient(inputs), weights * decomposed, rtol=1e-5, atol=1e-4)


def test_sds_at_scale_one_is_pure_mode_seeking():
    inputs = random_inputs(seed=2)
    torch.testing.assert_close(
        SDS(guidance_scale=1.0).gradient(inputs), sds_weight(inputs) * (inputs.eps_cond - inputs.noise)
    )


# -- D-SDS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [0.0, 0.25, 1.0])
def test_dsds_clamps_the_weighted_sds_gradient(progress):
    inputs = random_inputs(seed=3, progress=progress)
    s = 100.0
    truncation = 2.0 + 6.0 * progress
    eps_hat = inputs.eps_uncond + s * (inputs.eps_cond - inputs.eps_uncond)
    expected = (sds_weight(inputs) * (eps_hat - inputs.noise)).clamp(-truncation, truncation)
    gradient = DSDS().gradient(inputs)
    torch.testing.assert_close(gradient, expected)
    assert gradient.abs().max() <= truncation + 1e-6
    assert gradient.abs().max() == pytest.approx(truncation)  # s = 100 saturates the clamp


def test_dsds_threshold_follows_the_linear_schedule():
    """The largest |g| tracks c(progress) = 2 + 6 progress when the clamp is saturated."""
    for progress in (0.0, 0.1, 0.5, 0.9, 1.0):
        inputs = random_inputs(seed=4, timesteps=[900, 900, 900, 900], progress=progress)
        assert DSDS().gradient(inputs).abs().max().item() == pytest.approx(2.0 + 6.0 * progress)


def test_dsds_residual_placement_is_the_sjc_variant():
    inputs = random_inputs(seed=5, progress=0.5)
    truncation = 5.0
    eps_hat = inputs.eps_uncond + 100.0 * (inputs.eps_cond - inputs.eps_uncond)
    config = DSDS(truncation_placement="residual", weighting="uniform")
    torch.testing.assert_close(config.gradient(inputs), (eps_hat - inputs.noise).clamp(-truncation, truncation))
    weighted = DSDS(truncation_placement="residual").gradient(inputs)
    assert (weighted.abs() <= sds_weight(inputs) * truncation + 1e-6).all()


def test_dsds_without_saturation_is_sds():
    inputs = random_inputs(seed=6)
    config = DSDS(guidance_scale=1.0, truncation_start=1e6, truncation_end=1e6)
    torch.testing.assert_close(config.gradient(inputs), SDS(guidance_scale=1.0).gradient(inputs))


# -- VSD / ESD ---------------------------------------------------------------------------------


def test_vsd_matches_prolificdreamer():
    inputs = random_inputs(seed=7)
    eps_pretrained = inputs.eps_uncond + 7.5 * (inputs.eps_cond - inputs.eps_uncond)
    expected = sds_weight(inputs) * (eps_pretrained - inputs.eps_lora_camera)
    torch.testing.assert_close(VSD().gradient(inputs), expected)


@pytest.mark.parametrize("entropy_weight", [0.25, 0.5, 1.0])
def test_esd_mixes_camera_free_and_camera_scores(entropy_weight):
    inputs = random_inputs(seed=8)
    eps_pretrained = inputs.eps_uncond + 7.5 * (inputs.eps_cond - inputs.eps_uncond)
    eps_lora = entropy_weight * inputs.eps_lora_no_camera + (1 - entropy_weight) * inputs.eps_lora_camera
    expected = sds_weight(inputs) * (eps_pretrained - eps_lora)
    torch.testing.assert_close(ESD(entropy_weight=entropy_weight).gradient(inputs), expected)


def test_esd_with_zero_entropy_is_vsd_exactly():
    inputs = random_inputs(seed=9)
    assert torch.equal(ESD(entropy_weight=0.0).gradient(inputs), VSD().gradient(inputs))
    without_camera_free = dataclasses.replace(inputs, eps_lora_no_camera=None)
    assert torch.equal(ESD(entropy_weight=0.0).gradient(without_camera_free), VSD().gradient(inputs))


def test_lora_objectives_need_lora_predictions():
    inputs = random_inputs(seed=10)
    with pytest.raises(ValueError, match="eps_lora_camera"):
        VSD().gradient(dataclasses.replace(inputs, eps_lora_camera=None))
    with pytest.raises(ValueError, match="eps_lora_no_camera"):
        ESD().gradient(dataclasses.replace(inputs, eps_lora_no_camera=None))
    assert VSD.uses_lora and ESD.uses_lora
    assert not any(objective.uses_lora for objective in (SDS(), DSDS(), SSD(), CSD()))


# -- SSD / CSD ---------------------------------------------------------------------------------


def ssd_reference(inputs: ScoreInputs, guidance_scale: float, threshold_timestep: int) -> torch.Tensor:
    """SSD written per sample: mode-disengaging above T_M, scale-matched Eq. 9 below."""
    rows = []
    for b in range(inputs.noise.shape[0]):
        eps_y, eps_0, eps = inputs.eps_cond[b], inputs.eps_uncond[b], inputs.noise[b]
        mode_disengaging = eps_y - eps_0
        if int(inputs.timesteps[b]) < threshold_timestep:
            h = torch.dot(eps_y.flatten(), eps.flatten()) / torch.dot(eps.flatten(), eps.flatten())
            mode_seeking = eps_y - h * eps
            estimator = (
                mode_seeking * torch.linalg.vector_norm(mode_disengaging) / torch.linalg.vector_norm(mode_seeking)
            )
        else:
            estimator = mode_disengaging
        w = 1.0 - inputs.alphas_cumprod[inputs.timesteps[b]]
        rows.append(w * guidance_scale * estimator)
    return torch.stack(rows)


def test_ssd_matches_the_paper_on_a_mixed_batch():
    inputs = random_inputs(seed=11, timesteps=[50, 199, 200, 700])
    torch.testing.assert_close(SSD().gradient(inputs), ssd_reference(inputs, 7.5, 200))


def test_ssd_mode_seeking_term_is_orthogonal_to_the_noise_and_scale_matched():
    inputs = random_inputs(seed=12, timesteps=[30, 60, 120, 180])
    estimator = SSD(guidance_scale=1.0, weighting="uniform").gradient(inputs)  # [B, c, h, w]
    per_sample_dot = (estimator * inputs.noise).flatten(1).sum(1)
    torch.testing.assert_close(per_sample_dot, torch.zeros(BATCH), atol=1e-4, rtol=0)
    mode_disengaging = inputs.eps_cond - inputs.eps_uncond
    torch.testing.assert_close(estimator.flatten(1).norm(dim=1), mode_disengaging.flatten(1).norm(dim=1))


def test_ssd_with_zero_threshold_is_csd_exactly():
    for seed in range(3):
        inputs = random_inputs(seed=seed, timesteps=[0, 20, 500, 980])
        for scale in (1.0, 7.5):
            assert torch.equal(
                SSD(guidance_scale=scale, threshold_timestep=0).gradient(inputs),
                CSD(guidance_scale=scale).gradient(inputs),
            )


def test_csd_matches_classifier_score_distillation():
    inputs = random_inputs(seed=13)
    torch.testing.assert_close(CSD().gradient(inputs), sds_weight(inputs) * (inputs.eps_cond - inputs.eps_uncond))


def test_csd_negative_prompt_term():
    inputs = random_inputs(seed=14)
    beta = 0.5
    # The CSD code's a eps_y + b eps_neg + c eps_null with a = 1, b = -beta, c = beta - 1.
    expected = sds_weight(inputs) * (inputs.eps_cond - beta * inputs.eps_negative + (beta - 1.0) * inputs.eps_uncond)
    torch.testing.assert_close(CSD(negative_weight=beta).gradient(inputs), expected)
    with pytest.raises(ValueError, match="eps_negative"):
        CSD(negative_weight=beta).gradient(dataclasses.replace(inputs, eps_negative=None))


# -- shared machinery --------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ALL_OBJECTIVES, ids=lambda o: type(o).__name__)
def test_reparameterised_loss_backpropagates_exactly_g_over_batch(objective):
    inputs = random_inputs(seed=15)
    gradient = objective.gradient(inputs)
    latents = inputs.latents.clone().requires_grad_(True)
    reparameterised_loss(latents, gradient).backward()
    torch.testing.assert_close(latents.grad, gradient / BATCH, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("objective", [SDS(), VSD(), ESD(), SSD(), CSD()], ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("weighting", ["sds", "fantasia3d"])
def test_weighting_multiplies_the_uniform_gradient(objective, weighting):
    inputs = random_inputs(seed=16)
    abar = inputs.alphas_cumprod[inputs.timesteps].view(-1, 1, 1, 1)
    expected_weight = 1.0 - abar if weighting == "sds" else abar.sqrt() * (1.0 - abar)
    uniform = dataclasses.replace(objective, weighting="uniform").gradient(inputs)
    weighted = dataclasses.replace(objective, weighting=weighting).gradient(inputs)
    torch.testing.assert_close(weighted, expected_weight * uniform)
    torch.testing.assert_close(timestep_weights(weighting, inputs.timesteps, inputs.alphas_cumprod), expected_weight)


def test_defaults_follow_the_design():
    assert SDS().guidance_scale == 100.0 and SDS().weighting == "sds"
    assert DSDS().guidance_scale == 100.0 and (DSDS().truncation_start, DSDS().truncation_end) == (2.0, 8.0)
    assert VSD().guidance_scale == 7.5 and (VSD().lora_rank, VSD().lora_lr, VSD().camera_dropout) == (4, 1e-4, 0.1)
    assert VSD().timesteps == TimestepSchedule(annealing="step", annealed_max_fraction=0.5, anneal_progress=0.2)
    assert ESD().entropy_weight == 0.5 and ESD().timesteps == VSD().timesteps
    assert SSD().threshold_timestep == 200 and SSD().timesteps == TimestepSchedule()
    assert CSD().guidance_scale == 1.0
    for objective in ALL_OBJECTIVES:
        objective.validate()


@pytest.mark.parametrize(
    "objective, field",
    [
        (SDS(guidance_scale=-1.0), "guidance_scale"),
        (SDS(weighting="linear"), "weighting"),  # type: ignore[arg-type]
        (SDS(timesteps=TimestepSchedule(min_fraction=0.9, max_fraction=0.5)), "min_fraction"),
        (DSDS(truncation_start=0.0), "truncation_start"),
        (DSDS(truncation_start=4.0, truncation_end=2.0), "truncation_end"),
        (DSDS(truncation_placement="norm"), "truncation_placement"),  # type: ignore[arg-type]
        (VSD(lora_rank=0), "lora_rank"),
        (VSD(lora_lr=0.0), "lora_lr"),
        (VSD(camera_dropout=1.0), "camera_dropout"),
        (ESD(entropy_weight=1.5), "entropy_weight"),
        (ESD(entropy_weight=-0.1), "entropy_weight"),
        (ESD(camera_dropout=0.0), "camera_dropout"),
        (SSD(threshold_timestep=-1), "threshold_timestep"),
        (SSD(threshold_timestep=1001), "threshold_timestep"),
        (SSD(guidance_scale=-0.5), "guidance_scale"),
        (CSD(negative_weight=2.0), "negative_weight"),
    ],
)
def test_validation_names_the_field(objective, field):
    with pytest.raises(ValueError, match=field):
        objective.validate()


@dataclasses.dataclass
class _Config:
    objective: ObjectiveChoice = dataclasses.field(default_factory=SDS)


def test_tyro_selects_objectives_by_subcommand():
    parsed = tyro.cli(_Config, args=["objective:dsds", "--objective.truncation-end", "8"])
    assert parsed.objective == DSDS(truncation_end=8.0)
    parsed = tyro.cli(
        _Config,
        args=["objective:esd", "--objective.entropy-weight", "0.25", "--objective.timesteps.annealing", "linear"],
    )
    assert isinstance(parsed.objective, ESD) and parsed.objective.entropy_weight == 0.25
    assert parsed.objective.timesteps.annealing == "linear"
    for name, kind in [("sds", SDS), ("vsd", VSD), ("ssd", SSD), ("csd", CSD)]:
        assert type(tyro.cli(_Config, args=[f"objective:{name}"]).objective) is kind
    assert tyro.cli(_Config, args=[]).objective == SDS()


def test_the_registry_names_every_objective_once_and_each_meets_the_contract():
    assert list(OBJECTIVES) == ["sds", "dsds", "vsd", "esd", "ssd", "csd"]
    for name, cls in OBJECTIVES.items():
        objective = cls()
        assert cls.config_name == name and isinstance(objective, Objective), name
        assert type(tyro.cli(_Config, args=[f"objective:{name}"]).objective) is cls
        assert to_dict(_Config(objective))["objective"]["type"] == name
        assert from_dict(_Config, to_dict(_Config(objective))).objective == objective
        assert (objective.truncation(0.5) is None) == (objective.max_truncation is None), name
    assert [name for name, cls in OBJECTIVES.items() if cls.uses_lora] == ["vsd", "esd"]
    assert DSDS().truncation(0.5) == 5.0 and DSDS().max_truncation == 8.0
    assert ESD().entropy_weight > 0.0 and VSD.entropy_weight == 0.0 and CSD(negative_weight=0.5).negative_weight == 0.5
