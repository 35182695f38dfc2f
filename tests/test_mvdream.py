"""The MVDream multi-view prior: cross-view attention, LDM key mapping, camera recipe, loading, groups, training."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from splatgen.cli import main
from splatgen.io.config_file import ConfigError, from_dict, load_yaml
from splatgen.objectives import DSDS, SDS, ScoreInputs, sds_gradient
from splatgen.prior.loading import ModelUnavailable, read_sd21_base_config
from splatgen.prior.multiview import (
    CrossViewAttnProcessor,
    UnmappedWeights,
    diffusers_to_ldm_unet,
    install_cross_view_attention,
    ldm_to_diffusers_unet,
    mvdream_camera_conditions,
)
from splatgen.prior.mvdream import MVDreamConfig, MVDreamPrior, mvdream_weights_file
from splatgen.prior.tiny import TINY_MVDREAM_WEIGHTS, tiny_unet
from splatgen.scene.cameras import OrbitSampler, make_cameras, sample_cameras
from splatgen.train.config import TrainConfig
from splatgen.train.distill import PromptEmbeddings, distillation_step
from splatgen.train.loop import train

PRESETS = Path(__file__).resolve().parent.parent / "splatgen" / "presets"
CAMERA_EMBEDDING = dict(class_embed_type="projection", projection_class_embeddings_input_dim=16)


def group_cameras(azimuths, elevation=15.0, distance=2.7, fovy=50.0, size=64):
    azimuth = torch.tensor(azimuths, dtype=torch.float32)
    full = lambda value: torch.full_like(azimuth, value)  # noqa: E731
    return make_cameras(azimuth, full(elevation), full(distance), full(fovy), size, size)


@pytest.fixture(scope="module")
def multiview_unet() -> UNet2DConditionModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        unet = tiny_unet(**CAMERA_EMBEDDING).eval()
    install_cross_view_attention(unet)
    return unet


@pytest.fixture(scope="module")
def mvdream_prior(tiny_models) -> MVDreamPrior:
    config = MVDreamConfig(model=str(tiny_models["sd"]), unet=str(tiny_models["mvdream"]), image_size=64)
    return MVDreamPrior.from_config(config, "cpu")


def unet_inputs(batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, 8, 8, generator=generator)
    timesteps = torch.full((batch,), 400)
    text = torch.randn(batch, 77, 32, generator=generator)
    return latents, timesteps, text


# --- cross-view attention -------------------------------------------------------------------------


def test_one_view_per_group_is_stock_attention() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stock = tiny_unet(**CAMERA_EMBEDDING).eval()
    grouped = tiny_unet(**CAMERA_EMBEDDING).eval()
    grouped.load_state_dict(stock.state_dict())
    attention_layers = len(grouped.attn_processors)
    assert install_cross_view_attention(grouped, num_views=1) == attention_layers // 2  # every attn1, no attn2
    latents, timesteps, text = unet_inputs(4)
    cameras = mvdream_camera_conditions(group_cameras([0.0, 90.0, 180.0, 270.0]))
    with torch.no_grad():
        expected = stock(latents, timesteps, text, class_labels=cameras).sample
        actual = grouped(latents, timesteps, text, class_labels=cameras).sample
    assert torch.equal(actual, expected)


def test_attention_spans_the_views_of_a_group_only_with_the_cross_view_processor(multiview_unet) -> None:
    latents, timesteps, text = unet_inputs(4)
    cameras = mvdream_camera_conditions(group_cameras([10.0, 100.0, 190.0, 280.0]))
    changed = latents.clone()
    changed[1] += 1.0  # view 2 of the group
    with torch.no_grad():
        before = multiview_unet(latents, timesteps, text, class_labels=cameras).sample
        after = multiview_unet(changed, timesteps, text, class_labels=cameras).sample
    assert (after[0] - before[0]).abs().max() > 1e-4, "view 1 does not see view 2"
    stock = tiny_unet(**CAMERA_EMBEDDING).eval()
    stock.load_state_dict(multiview_unet.state_dict())
    with torch.no_grad():
        before = stock(latents, timesteps, text, class_labels=cameras).sample
        after = stock(changed, timesteps, text, class_labels=cameras).sample
    assert torch.equal(after[0], before[0])


def test_permuting_views_with_their_cameras_permutes_the_output(multiview_unet) -> None:
    latents, timesteps, text = unet_inputs(8, seed=1)  # two groups
    cameras = mvdream_camera_conditions(group_cameras([5.0, 95.0, 185.0, 275.0, 40.0, 130.0, 220.0, 310.0]))
    order = torch.tensor([2, 0, 3, 1, 7, 6, 5, 4])  # within each group
    with torch.no_grad():
        output = multiview_unet(latents, timesteps, text, class_labels=cameras).sample
        permuted = multiview_unet(latents[order], timesteps, text[order], class_labels=cameras[order]).sample
    torch.testing.assert_close(permuted, output[order], atol=1e-5, rtol=1e-5)


def test_the_processor_refuses_partial_groups_and_cross_attention(multiview_unet) -> None:
    attention = multiview_unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    with pytest.raises(ValueError, match="whole groups of 4"):
        CrossViewAttnProcessor(4)(attention, torch.randn(6, 16, 32))
    with pytest.raises(ValueError, match="self-attention"):
        CrossViewAttnProcessor(4)(attention, torch.randn(4, 16, 32), encoder_hidden_states=torch.randn(4, 77, 32))


# --- LDM names --------------------------------------------------------------------------------------


def test_ldm_mapping_covers_every_key_of_the_tiny_checkpoint_and_round_trips(tiny_models) -> None:
    ldm_state = load_file(tiny_models["mvdream"] / TINY_MVDREAM_WEIGHTS)
    assert any(key.startswith("input_blocks.1.1.transformer_blocks.0.attn1.") for key in ldm_state)
    assert "camera_embed.2.weight" in ldm_state and not any(key.startswith("down_blocks") for key in ldm_state)
    unet = tiny_unet(**CAMERA_EMBEDDING)
    converted = ldm_to_diffusers_unet(ldm_state, unet.config)
    assert set(converted) == set(unet.state_dict())  # every parameter filled
    assert {id(tensor) for tensor in converted.values()} == {id(tensor) for tensor in ldm_state.values()}  # none left
    back = diffusers_to_ldm_unet(converted, unet.config)
    assert set(back) == set(ldm_state) and all(back[key] is ldm_state[key] for key in back)
    from diffusers.loaders.single_file_utils import LDM_UNET_KEY

    prefixed = {f"{LDM_UNET_KEY}{key}": value for key, value in ldm_state.items()}  # MVDream's own .pt names
    assert set(ldm_to_diffusers_unet(prefixed, unet.config)) == set(converted)


def test_ldm_mapping_covers_the_full_sd21_base_architecture() -> None:
    config = {**read_sd21_base_config("unet"), **CAMERA_EMBEDDING}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    ldm_state = diffusers_to_ldm_unet(state, unet.config)
    assert len(ldm_state) == len(state) == 690
    # names MVDream's openaimodel.py gives SD 2.1-base's layout (12 input blocks, upsamplers after attention)
    for key in (
        "input_blocks.11.0.out_layers.3.weight",
        "output_blocks.2.1.conv.weight",
        "output_blocks.8.2.conv.bias",
    ):
        assert key in ldm_state
    converted = ldm_to_diffusers_unet(ldm_state, unet.config)
    assert set(converted) == set(state) and all(converted[key] is state[key] for key in state)


def test_a_left_over_key_is_refused() -> None:
    unet = tiny_unet(**CAMERA_EMBEDDING)
    ldm_state = diffusers_to_ldm_unet(unet.state_dict(), unet.config)
    ldm_state["out.1.weight"] = torch.zeros(2)  # out.1 is the SiLU: nowhere to put it
    with pytest.raises(
        UnmappedWeights, match=r"1 weights of the checkpoint have no place in the UNet \(e.g. out.1.weight"
    ):
        ldm_to_diffusers_unet(ldm_state, unet.config)


# --- camera recipe ------------------------------------------------------------------------------------


def get_camera_reference(elevation: float, azimuth: float) -> np.ndarray:
    """MVDream's `get_camera` for one view, re-derived from camera_utils.py (look-at, OpenGL, then z-up)."""
    elevation, azimuth = math.radians(elevation), math.radians(azimuth)
    position = np.array(
        [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)]
    )
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3] = np.stack([right, up, -forward], axis=1)
    camera_to_world[:3, 3] = position
    flip_yz = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    return (flip_yz @ camera_to_world).reshape(16)


def test_camera_recipe_matches_mvdreams_get_camera() -> None:
    elevations = [-10.0, 0.0, 15.0, 30.0, 60.0]
    azimuths = [0.0, 37.0, 90.0, 180.0, 270.0, -135.0]
    grid = [(elevation, azimuth) for elevation in elevations for azimuth in azimuths]
    cameras = make_cameras(
        torch.tensor([azimuth for _, azimuth in grid], dtype=torch.float64),
        torch.tensor([elevation for elevation, _ in grid], dtype=torch.float64),
        torch.full((len(grid),), 2.7, dtype=torch.float64),
        torch.full((len(grid),), 50.0, dtype=torch.float64),
        64,
        64,
    )
    expected = np.stack([get_camera_reference(elevation, azimuth) for elevation, azimuth in grid])
    np.testing.assert_allclose(mvdream_camera_conditions(cameras).double().numpy(), expected, atol=1e-6)


# --- loading ------------------------------------------------------------------------------------------


def test_the_prior_loads_the_ldm_named_checkpoint(mvdream_prior, tiny_models) -> None:
    assert mvdream_prior.views_per_group == 4
    processors = mvdream_prior.unet.attn_processors
    assert all(isinstance(processors[name], CrossViewAttnProcessor) for name in processors if "attn1" in name)
    ldm_state = load_file(tiny_models["mvdream"] / TINY_MVDREAM_WEIGHTS)
    torch.testing.assert_close(mvdream_prior.unet.class_embedding.linear_2.weight, ldm_state["camera_embed.2.weight"])
    cameras = group_cameras([0.0, 90.0, 180.0, 270.0])
    latents = mvdream_prior.encode_images(torch.rand(4, 3, 64, 64))
    text = mvdream_prior.embed_prompts(["a corgi"] * 4)
    eps = mvdream_prior.predict_noise(torch.randn_like(latents), torch.full((4,), 500), text, cameras)
    assert eps.shape == latents.shape and torch.isfinite(eps).all()
    with pytest.raises(ValueError, match="whole groups of 4"):
        mvdream_prior.predict_noise(latents[:2], torch.full((2,), 500), text[:2], cameras.select(slice(0, 2)))


def test_unusable_unet_paths_fail_with_one_line(tmp_path: Path, tiny_models) -> None:
    pickled = tmp_path / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    cases = {
        str(pickled): "only pickled weights",
        str(pickled / "unet" / "diffusion_pytorch_model.bin"): "is a pickle; splatgen loads safetensors only",
        str(tmp_path / "missing" / "x"): "does not exist",
        "nobody/not-cached-mvdream": "HF_HUB_OFFLINE=1",
    }
    for model, reason in cases.items():
        with pytest.raises(ModelUnavailable, match=reason) as caught:
            mvdream_weights_file(model, None)
        assert "\n" not in str(caught.value) and "--prior.unet" in str(caught.value)
    wrong = tmp_path / "sd-unet.safetensors"  # a checkpoint of the plain UNet: no camera embedding
    plain = tiny_unet()
    save_file(diffusers_to_ldm_unet(plain.state_dict(), plain.config), wrong)
    config = MVDreamConfig(model=str(tiny_models["sd"]), unet=str(wrong), image_size=64)
    with pytest.raises(ModelUnavailable, match="do not fit SD 2.1-base's UNet.*class_embedding") as caught:
        MVDreamPrior.from_config(config)
    assert "\n" not in str(caught.value)
    extra = tmp_path / "extra.safetensors"  # a block parameter the converter renames but the UNet lacks
    ldm_state = load_file(tiny_models["mvdream"] / TINY_MVDREAM_WEIGHTS)
    save_file({**ldm_state, "input_blocks.1.1.transformer_blocks.0.attn3.to_q.weight": torch.zeros(2, 2)}, extra)
    with pytest.raises(ModelUnavailable, match="attn3"):
        MVDreamPrior.from_config(replace(config, unet=str(extra)))


# --- camera groups and timesteps --------------------------------------------------------------------------


def test_camera_groups_share_elevation_fov_distance_and_sit_90_degrees_apart() -> None:
    sampler = OrbitSampler(
        elevation_range=(0.0, 30.0), fovy_range=(15.0, 60.0), distance_range=(1.0, 1.25), distance_relative_to_fovy=True
    )
    cameras = sample_cameras(sampler, 16, 64, 64, torch.Generator().manual_seed(0), views_per_group=4)
    again = sample_cameras(sampler, 16, 64, 64, torch.Generator().manual_seed(0), views_per_group=4)
    assert torch.equal(cameras.viewmats, again.viewmats)
    azimuth = cameras.azimuth_deg.view(4, 4)
    steps = torch.remainder(azimuth.diff(dim=1), 360.0)
    torch.testing.assert_close(steps, torch.full_like(steps, 90.0), atol=1e-4, rtol=0)
    for values in (cameras.elevation_deg, cameras.fovy_deg, cameras.distance):
        assert (values.view(4, 4) == values.view(4, 4)[:, :1]).all()
    half_height = cameras.distance * torch.tan(torch.deg2rad(cameras.fovy_deg) / 2)
    assert ((half_height >= 1.0 - 1e-5) & (half_height <= 1.25 + 1e-5)).all()
    offsets = torch.remainder(azimuth[:, 0] + 180.0, 360.0)  # one per group, stratified over [0, 90)
    assert torch.equal(torch.floor(offsets / 22.5), torch.arange(4.0))
    with pytest.raises(ValueError, match="whole groups of 4"):
        sample_cameras(sampler, 6, 64, 64, torch.Generator(), views_per_group=4)


def test_single_view_sampling_is_unchanged_by_the_group_argument() -> None:
    sampler = OrbitSampler(jitter=0.05)
    default = sample_cameras(sampler, 5, 32, 32, torch.Generator().manual_seed(4))
    explicit = sample_cameras(sampler, 5, 32, 32, torch.Generator().manual_seed(4), views_per_group=1)
    assert torch.equal(default.viewmats, explicit.viewmats) and torch.equal(default.Ks, explicit.Ks)


def test_one_timestep_per_group(mvdream_prior) -> None:
    cameras = group_cameras([0.0, 90.0, 180.0, 270.0, 45.0, 135.0, 225.0, 315.0])
    latents = torch.randn(8, 4, 8, 8, requires_grad=True)
    plain = mvdream_prior.embed_prompts(["a corgi"]).expand(8, -1, -1)
    text = PromptEmbeddings(view=plain, negative=plain, empty=plain, plain=plain)
    result = distillation_step(mvdream_prior, DSDS(), latents, cameras, text, 0.3, torch.Generator().manual_seed(0))
    timesteps = result.timesteps.view(2, 4)
    assert (timesteps == timesteps[:, :1]).all() and timesteps[0, 0] != timesteps[1, 0]


def test_x0_reconstruction_form_matches_threestudios_recon_loss() -> None:
    generator = torch.Generator().manual_seed(2)
    latents, noise, eps_cond, eps_uncond = (torch.randn(8, 4, 8, 8, generator=generator) for _ in range(4))
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
    timesteps = torch.tensor([100] * 4 + [700] * 4)
    inputs = ScoreInputs(latents, noise, timesteps, alphas_cumprod, eps_cond, eps_uncond, views_per_group=4)
    config = SDS(guidance_scale=50.0, reconstruction_rescale=0.5)
    # threestudio multiview_diffusion_guidance.py, written out on [G, 4, c, h, w]
    abar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = abar.sqrt() * latents + (1 - abar).sqrt() * noise
    eps_hat = eps_uncond + 50.0 * (eps_cond - eps_uncond)
    recon = (noisy - (1 - abar).sqrt() * eps_hat) / abar.sqrt()
    recon_nocfg = (noisy - (1 - abar).sqrt() * eps_cond) / abar.sqrt()
    factor = (recon_nocfg.view(2, 4, 4, 8, 8).std([1, 2, 3, 4], keepdim=True) + 1e-8) / (
        recon.view(2, 4, 4, 8, 8).std([1, 2, 3, 4], keepdim=True) + 1e-8
    )
    adjusted = recon * factor.squeeze(1).repeat_interleave(4, dim=0)
    target = 0.5 * adjusted + 0.5 * recon
    torch.testing.assert_close(sds_gradient(config, inputs), latents - target, atol=1e-4, rtol=1e-5)
    plain_x0 = sds_gradient(
        replace(config, reconstruction_rescale=0.0), inputs
    )  # = sqrt((1-abar)/abar) (eps_hat - eps)
    torch.testing.assert_close(plain_x0, ((1 - abar) / abar).sqrt() * (eps_hat - noise), atol=1e-3, rtol=1e-4)


# --- configuration and whole runs ----------------------------------------------------------------------------


def test_multi_view_pairings_are_refused_with_one_line() -> None:
    cases = {
        "must be a multiple of 4 with prior:mvdream": dict(batch_size=6),
        "objective:vsd trains a LoRA": dict(objective=from_dict(TrainConfig, {"objective": {"type": "vsd"}}).objective),
        "--prompts.perp-neg works on view prompts": dict(prompts=replace(TrainConfig().prompts, perp_neg=True)),
    }
    for message, change in cases.items():
        config = replace(TrainConfig(prompt="a corgi", prior=MVDreamConfig()), **change)
        with pytest.raises(ValueError, match=message) as caught:
            config.validate()
        assert "\n" not in str(caught.value)


def test_presets_and_yaml_without_a_type_keep_the_default_prior() -> None:
    for name in ("mvdream-sds", "mvdream-dsds"):
        config = from_dict(TrainConfig, load_yaml(PRESETS / f"{name}.yaml"))
        assert isinstance(config.prior, MVDreamConfig) and config.prior.image_size == 256 and config.batch_size % 4 == 0
        assert config.cameras.distance_relative_to_fovy and not config.prompts.debias
        config.validate() if config.prompt else replace(config, prompt="a corgi").validate()
    assert from_dict(TrainConfig, load_yaml(PRESETS / "mvdream-sds.yaml")).objective.reconstruction_rescale == 0.5
    tuned = from_dict(TrainConfig, {"prior": {"image_size": 64}})
    assert type(tuned.prior).__name__ == "StableDiffusionConfig" and tuned.prior.image_size == 64
    with pytest.raises(ConfigError, match="not one of: sd, mvdream"):
        from_dict(TrainConfig, {"prior": {"type": "mv"}})


def test_smoke_run_with_the_multi_view_prior(tmp_path: Path, tiny_models, capsys) -> None:
    out = tmp_path / "run"
    status = main(
        [
            "train",
            "--preset",
            "smoke",
            "--prompt",
            "a corgi",
            "--out",
            str(out),
            "--no-viewer",
            "--steps",
            "6",
            "--batch-size",
            "4",
            "--video-frames",
            "0",
            "prior:mvdream",
            "--prior.model",
            "tiny-random",
            "--prior.unet",
            "tiny-random",
            "--prior.image-size",
            "64",
        ]
    )
    assert status == 0, capsys.readouterr().out
    assert (out / "a-corgi.ply").stat().st_size > 0
    saved = from_dict(TrainConfig, load_yaml(out / "config.yaml"))
    assert isinstance(saved.prior, MVDreamConfig)


def test_training_with_the_prior_denoises_whole_groups(tmp_path: Path, mvdream_prior) -> None:
    seen: list[int] = []
    original = mvdream_prior.predict_noise

    def counting(noisy, *args, **kwargs):
        seen.append(noisy.shape[0])
        return original(noisy, *args, **kwargs)

    mvdream_prior.predict_noise = counting
    try:
        config = from_dict(TrainConfig, load_yaml(PRESETS / "smoke.yaml"))
        config = replace(
            config, prompt="a corgi", out=tmp_path / "run", steps=3, batch_size=8, video_frames=0, prior=MVDreamConfig()
        )
        config.viewer.enabled = False
        result = train(config, prior=mvdream_prior)
    finally:
        mvdream_prior.predict_noise = original
    assert result.steps_completed == 3 and seen == [16, 16, 16]  # CFG pair of 2 groups of 4, one call per step


def test_the_sd_folder_needs_no_unet_weights_for_the_multi_view_prior(tmp_path: Path, tiny_models) -> None:
    import shutil

    folder = tmp_path / "sd-without-unet-weights"
    shutil.copytree(tiny_models["sd"], folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    config = MVDreamConfig(model=str(folder), unet=str(tiny_models["mvdream"]), image_size=64)
    assert MVDreamPrior.from_config(config).views_per_group == 4
