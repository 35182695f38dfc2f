"""Stable Diffusion prior, model loading errors, the VSD/ESD LoRA score, and the shipped SD 2.1-base configs.

Everything runs on the tiny random SD-2.x-shaped pipeline that `scripts/make_tiny_models.py`
writes, loaded back through `from_pretrained` exactly as a hub id would be.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx2
import pytest
import torch
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors.torch import load_file

from splatgen.errors import SplatgenError
from splatgen.prior import DiffusionPrior, batched_noise_predictions
from splatgen.prior.loading import (
    MIRRORS,
    SD21_BASE_CONFIGS,
    ModelUnavailable,
    hub_failure_reason,
    random_sd21_base_components,
    read_sd21_base_config,
)
from splatgen.prior.lora import ADAPTER_NAME, LoraScore, LoraScoreConfig, camera_conditions, drop_cameras
from splatgen.prior.stable_diffusion import StableDiffusionConfig, StableDiffusionPrior
from splatgen.prior.tiny import is_complete_sd_folder, make_tiny_stable_diffusion
from splatgen.scene.cameras import OrbitSampler, sample_cameras
from splatgen.tiny_models import is_complete_mlm_folder

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 64


pytestmark = pytest.mark.usefixtures("module_on_one_torch_thread")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return make_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-models") / "sd")


def load_prior(folder: Path, **overrides) -> StableDiffusionPrior:
    return StableDiffusionPrior.from_config(
        StableDiffusionConfig(model=str(folder), image_size=IMAGE_SIZE, **overrides), "cpu"
    )


@pytest.fixture(scope="module")
def prior(tiny_sd) -> StableDiffusionPrior:
    """A prior without LoRA (LoRA tests load their own: the adapter lives on the UNet)."""
    return load_prior(tiny_sd)


def noisy_batch(prior: StableDiffusionPrior, batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=generator)
    timesteps = torch.randint(20, 980, (batch,), generator=generator)
    embeddings = prior.embed_prompts(["a photo of a corgi"] * batch)
    return latents, timesteps, embeddings


def cameras_for(batch: int, seed: int = 0):
    return sample_cameras(OrbitSampler(), batch, IMAGE_SIZE, IMAGE_SIZE, torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- tiny models


def test_tiny_folder_has_the_diffusers_layout_and_is_small(tiny_sd):
    assert is_complete_sd_folder(tiny_sd)
    index = json.loads((tiny_sd / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["tokenizer"] == [
        "transformers",
        "CLIPTokenizer",
    ]
    files = [path for path in tiny_sd.rglob("*") if path.is_file()]
    assert not [path for path in files if path.suffix in (".bin", ".pt", ".ckpt")]
    assert sum(path.stat().st_size for path in files) < 5e6
    unet_config = json.loads((tiny_sd / "unet" / "config.json").read_text())
    assert unet_config["use_linear_projection"] and unet_config["cross_attention_dim"] == 32
    scheduler_config = json.loads((tiny_sd / "scheduler" / "scheduler_config.json").read_text())
    schedule = (scheduler_config["beta_schedule"], scheduler_config["beta_start"], scheduler_config["beta_end"])
    assert schedule == ("scaled_linear", 0.00085, 0.012)


def test_tiny_models_are_deterministic_and_the_maker_is_idempotent(tiny_sd, tmp_path):
    stamp = (tiny_sd / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert make_tiny_stable_diffusion(tiny_sd) == tiny_sd
    assert (tiny_sd / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    again = make_tiny_stable_diffusion(tmp_path / "sd")
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        first, second = load_file(tiny_sd / part), load_file(again / part)
        assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_make_tiny_models_script_writes_sd_and_mlm(tiny_sd):
    spec = importlib.util.spec_from_file_location("make_tiny_models", REPO / "scripts" / "make_tiny_models.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    paths = script.make_tiny_models(tiny_sd.parent)
    assert paths["sd"] == tiny_sd and is_complete_mlm_folder(paths["mlm"])


# ---------------------------------------------------------------- the prior


def test_prior_loads_through_from_pretrained_frozen_and_in_eval_mode(prior):
    assert isinstance(prior, DiffusionPrior)
    assert prior.dtype == torch.float32 and prior.image_size == IMAGE_SIZE
    for module in (prior.unet, prior.vae, prior.text_encoder):
        assert not module.training
        assert not any(parameter.requires_grad for parameter in module.parameters())
    assert prior.latent_scaling == pytest.approx(0.18215)


def test_alphas_cumprod_is_sds_schedule(prior):
    alphas_cumprod = prior.alphas_cumprod
    assert alphas_cumprod.shape == (1000,) and alphas_cumprod.dtype == torch.float32
    assert torch.all(alphas_cumprod[1:] < alphas_cumprod[:-1])
    assert alphas_cumprod[0].item() == pytest.approx(1 - 0.00085, abs=1e-6)
    assert alphas_cumprod[-1].item() == pytest.approx(0.0047, abs=2e-4)  # SD's final abar


def test_encode_images_resizes_scales_and_is_differentiable(prior):
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    latents = prior.encode_images(images)
    assert latents.shape == (2, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8) and latents.dtype == torch.float32
    size = (IMAGE_SIZE, IMAGE_SIZE)
    resized = torch.nn.functional.interpolate(images.detach(), size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = 0.18215 * prior.vae.encode(2 * resized - 1).latent_dist.mean
    torch.testing.assert_close(latents.detach(), expected)
    latents.square().sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_embed_prompts_encodes_each_distinct_prompt_once(prior):
    calls = []
    hook = prior.text_encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        first = prior.embed_prompts(["a cat", "a dog, side view", "a cat"])
        second = prior.embed_prompts(["a dog, side view", "a cat"])
        prior.embed_prompts(["a bird"])
    finally:
        hook.remove()
    assert calls == [2, 1]  # one batched call for the two new prompts, none for cached ones, one for "a bird"
    assert first.shape == (3, 77, 32)
    assert torch.equal(first[0], first[2]) and torch.equal(second[0], first[1])
    assert not torch.equal(first[0], first[1])


def test_long_prompt_is_truncated_with_a_warning_naming_the_cut(prior):
    prompt = "a photo of a corgi " + " ".join(f"word{index}" for index in range(40)) + " endmarker"
    with pytest.warns(UserWarning, match="endmarker"):
        embedding = prior.embed_prompts([prompt])
    assert embedding.shape == (1, 77, 32)


def test_predict_noise_shape_dtype_and_determinism(prior):
    latents, timesteps, embeddings = noisy_batch(prior, 3)
    eps = prior.predict_noise(latents, timesteps, embeddings)
    assert eps.shape == latents.shape and eps.dtype == torch.float32 and not eps.requires_grad
    assert torch.equal(eps, prior.predict_noise(latents, timesteps, embeddings))
    assert not torch.equal(eps, prior.predict_noise(latents, timesteps + 7, embeddings))


def test_batched_noise_predictions_equals_separate_calls(prior):
    latents, timesteps, cond = noisy_batch(prior, 4)
    uncond = prior.embed_prompts([prior.config.negative_prompt] * 4)
    eps_cond, eps_uncond = batched_noise_predictions(prior, latents, timesteps, [cond, uncond], cameras_for(4))
    torch.testing.assert_close(eps_cond, prior.predict_noise(latents, timesteps, cond), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_uncond, prior.predict_noise(latents, timesteps, uncond), rtol=1e-5, atol=1e-5)


def test_cfg_forward_at_64px_batch_4_is_fast(prior):
    latents, timesteps, cond = noisy_batch(prior, 4)
    uncond = prior.embed_prompts([""] * 4)
    batched_noise_predictions(prior, latents, timesteps, [cond, uncond])
    start = time.process_time()
    batched_noise_predictions(prior, latents, timesteps, [cond, uncond])
    assert time.process_time() - start < 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 8"):
        StableDiffusionConfig(image_size=500).validate()
    assert StableDiffusionConfig().torch_dtype("cpu") == torch.float32
    assert StableDiffusionConfig().torch_dtype("cuda") == torch.float16
    assert StableDiffusionConfig(dtype="bf16").torch_dtype("cpu") == torch.bfloat16


# ---------------------------------------------------------------- loading errors


def assert_helpful(error: ModelUnavailable, reason: str) -> None:
    message = str(error)
    assert isinstance(error, RuntimeError) and isinstance(error, SplatgenError)
    assert "\n" not in message and reason in message
    for needed in ("--prior.model", *MIRRORS, "HF_HUB_OFFLINE", "--local-dir"):
        assert needed in message


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        load_prior(tmp_path / "no-such-folder")
    assert_helpful(caught.value, "does not exist")


def test_hub_id_offline_with_nothing_cached(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as caught:
        load_prior(Path("stabilityai/stable-diffusion-2-1-base"))
    assert_helpful(caught.value, "not in the local hub cache")
    assert "withdrawn" in str(caught.value)


def test_folder_without_unet(tiny_sd, tmp_path):
    broken = Path(shutil.copytree(tiny_sd, tmp_path / "sd"))
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelUnavailable) as caught:
        load_prior(broken)
    assert_helpful(caught.value, "no unet/config.json")


def test_folder_with_only_bin_weights(tiny_sd, tmp_path):
    broken = Path(shutil.copytree(tiny_sd, tmp_path / "sd"))
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), broken / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelUnavailable) as caught:
        load_prior(broken)
    assert_helpful(caught.value, "only PyTorch .bin weights")


def test_v_prediction_model_is_refused(tiny_sd, tmp_path):
    broken = Path(shutil.copytree(tiny_sd, tmp_path / "sd"))
    config_path = broken / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "prediction_type": "v_prediction"}))
    with pytest.raises(ModelUnavailable, match="epsilon-prediction"):
        load_prior(broken)


def test_hub_failure_reasons_for_gated_missing_and_unreachable(monkeypatch):
    monkeypatch.setattr("splatgen.prior.loading.hub_offline", lambda: False)
    request = httpx2.Request("GET", "https://huggingface.co/org/name/resolve/main/unet/config.json")
    response = httpx2.Response(401, request=request)

    def wrapped(cause: BaseException) -> OSError:
        try:
            raise OSError("org/name does not appear to have a file named config.json.") from cause
        except OSError as error:
            return error

    assert "gated" in hub_failure_reason("org/name", "unet", wrapped(GatedRepoError("restricted", response=response)))
    missing = wrapped(RepositoryNotFoundError("404", response=response))
    assert "no such repository" in hub_failure_reason("org/name", "unet", missing)
    assert "cannot be reached" in hub_failure_reason("org/name", "unet", wrapped(LocalEntryNotFoundError("no network")))


# ---------------------------------------------------------------- the LoRA score (VSD / ESD)


def test_pretrained_prediction_is_unchanged_by_the_lora(tiny_sd):
    prior = load_prior(tiny_sd)
    latents, timesteps, embeddings = noisy_batch(prior, 2)
    before = prior.predict_noise(latents, timesteps, embeddings)
    lora = LoraScore(prior, LoraScoreConfig(learning_rate=1e-2))
    assert torch.equal(prior.predict_noise(latents, timesteps, embeddings), before)
    generator = torch.Generator().manual_seed(0)
    cameras = cameras_for(2)
    for _ in range(2):
        lora.train_step(latents, embeddings, cameras, generator)
    lora.predict(latents, timesteps, embeddings, camera_conditions(cameras))
    assert torch.equal(prior.predict_noise(latents, timesteps, embeddings), before)
    assert prior.unet.class_embedding is None


def test_lora_prediction_changes_after_a_train_step(tiny_sd):
    prior = load_prior(tiny_sd)
    lora = LoraScore(prior, LoraScoreConfig(learning_rate=1e-2))
    latents, timesteps, embeddings = noisy_batch(prior, 2)
    conditions = camera_conditions(cameras_for(2))
    before = lora.predict(latents, timesteps, embeddings, conditions)
    loss = lora.train_step(latents, embeddings[:1], cameras_for(2), torch.Generator().manual_seed(1))
    assert loss.shape == () and not loss.requires_grad and loss.device == prior.device and loss > 0
    after = lora.predict(latents, timesteps, embeddings, conditions)
    assert after.shape == latents.shape and after.dtype == torch.float32
    assert (after - before).abs().max() > 1e-4
    lora_weights = [p for name, p in prior.unet.named_parameters() if f".{ADAPTER_NAME}." in name]
    assert lora_weights and all(p.dtype == torch.float32 for p in lora_weights)
    with_camera, without_camera = lora.predict_with_and_without_camera(latents, timesteps, embeddings, conditions)
    torch.testing.assert_close(with_camera, after, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(without_camera, lora.predict(latents, timesteps, embeddings, None), rtol=1e-5, atol=1e-5)
    assert (with_camera - without_camera).abs().max() > 0


def test_camera_dropout_frequency():
    conditions = torch.ones(20000, 16)
    dropped = drop_cameras(conditions, 0.1, torch.Generator().manual_seed(0))
    zero_rows = (dropped.abs().sum(dim=1) == 0).float().mean().item()
    assert zero_rows == pytest.approx(0.1, abs=0.01)
    assert torch.equal(dropped[dropped.sum(dim=1) > 0], conditions[: int((dropped.sum(dim=1) > 0).sum())])
    assert torch.equal(drop_cameras(conditions[:100], 0.0, torch.Generator()), conditions[:100])
    assert drop_cameras(conditions[:100], 1.0, torch.Generator()).abs().sum() == 0


def test_lora_state_round_trip_includes_the_optimiser(tiny_sd):
    latents, _, _ = noisy_batch(load_prior(tiny_sd), 2)
    cameras = cameras_for(2)
    scores = []
    for _ in range(2):
        prior = load_prior(tiny_sd)
        scores.append((prior, LoraScore(prior, LoraScoreConfig(learning_rate=1e-2), seed=len(scores))))
    (prior_a, score_a), (prior_b, score_b) = scores
    embeddings = prior_a.embed_prompts(["a photo of a corgi"] * 2)
    for step in range(2):
        score_a.train_step(latents, embeddings, cameras, torch.Generator().manual_seed(step))
    score_b.load_state_dict(score_a.state_dict())
    _, timesteps, _ = noisy_batch(prior_a, 2)
    conditions = camera_conditions(cameras)
    torch.testing.assert_close(
        score_b.predict(latents, timesteps, embeddings, conditions),
        score_a.predict(latents, timesteps, embeddings, conditions),
        rtol=0,
        atol=0,
    )
    losses = [
        score.train_step(latents, embeddings, cameras, torch.Generator().manual_seed(9)) for score in (score_a, score_b)
    ]
    assert float(losses[0]) == pytest.approx(float(losses[1]), rel=1e-6)
    torch.testing.assert_close(
        score_b.predict(latents, timesteps, embeddings, conditions),
        score_a.predict(latents, timesteps, embeddings, conditions),
        rtol=1e-6,
        atol=1e-6,
    )


def test_lora_keeps_fp32_weights_on_a_bf16_unet(tiny_sd):
    prior = load_prior(tiny_sd, dtype="bf16")
    assert prior.unet.dtype == torch.bfloat16
    lora = LoraScore(prior)
    latents, timesteps, embeddings = noisy_batch(prior, 2)
    loss = lora.train_step(latents, embeddings, cameras_for(2), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    assert prior.predict_noise(latents, timesteps, embeddings).dtype == torch.float32
    assert all(parameter.dtype == torch.float32 for parameter in lora.camera_embedding.parameters())
    assert all(
        group_param.dtype == torch.float32 for group in lora.optimizer.param_groups for group_param in group["params"]
    )


def test_second_lora_on_the_same_prior_is_refused(tiny_sd):
    prior = load_prior(tiny_sd)
    LoraScore(prior)
    with pytest.raises(RuntimeError, match="already carries"):
        LoraScore(prior)


# ---------------------------------------------------------------- the full-size SD 2.1-base configs


def test_sd21_base_configs_parse_and_build_on_the_meta_device():
    unet = read_sd21_base_config("unet")
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["cross_attention_dim"] == 1024
    assert unet["attention_head_dim"] == [5, 10, 20, 20] and unet["use_linear_projection"] and unet["sample_size"] == 64
    assert read_sd21_base_config("vae")["scaling_factor"] == 0.18215
    text = read_sd21_base_config("text_encoder")
    assert (text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]) == (1024, 23, 49408)
    scheduler = read_sd21_base_config("scheduler")
    assert (scheduler["beta_schedule"], scheduler["prediction_type"]) == ("scaled_linear", "epsilon")
    assert sorted(path.parent.name for path in SD21_BASE_CONFIGS.rglob("*.json")) == [
        "scheduler",
        "text_encoder",
        "unet",
        "vae",
    ]
    components = random_sd21_base_components(device="meta")
    modules = (components.unet, components.vae, components.text_encoder)
    counts = [sum(parameter.numel() for parameter in module.parameters()) for module in modules]
    assert counts == [865_910_724, 83_653_863, 340_387_840]  # SD 2.x UNet, KL-f8 VAE, OpenCLIP-H text tower (23 layers)
    assert components.scheduler.alphas_cumprod.shape == (1000,)
