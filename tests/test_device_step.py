"""The CUDA step's properties, checked on CPU: draws on the generator's device, no avoidable host reads,
cheap LoRA switches, the prior's dtype choice and its memory switches.

The host-read counts run a real step under a `TorchDispatchMode` that records every aten call that
must read a device value back to the host on CUDA (`_local_scalar_dense` is what `.item()`, `float()`,
`bool()` and `int()` of a tensor reach; `nonzero` & co. size their output from device data).
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import replace
from io import StringIO

import pytest
import torch
from rich.console import Console
from test_train import QUIET, _interrupt_at, tiny_config
from torch.utils._python_dispatch import TorchDispatchMode

from splatgen.cli import parse_train_args
from splatgen.io.ply import read_ply
from splatgen.objectives import VSD
from splatgen.prior.lora import LoraScore, LoraScoreConfig, camera_conditions
from splatgen.prior.stable_diffusion import AdapterSwitch, StableDiffusionConfig, StableDiffusionPrior
from splatgen.render import make_backgrounds
from splatgen.scene.cameras import OrbitSampler, rigid_inverse, sample_cameras
from splatgen.tiny_models import TINY_MODEL_ID, resolve_sd_model
from splatgen.train.loop import train

IMAGE_SIZE = 64


pytestmark = pytest.mark.usefixtures("module_on_one_torch_thread")


def tiny_prior(**overrides) -> StableDiffusionPrior:
    config = StableDiffusionConfig(model=resolve_sd_model(TINY_MODEL_ID), image_size=IMAGE_SIZE, **overrides)
    return StableDiffusionPrior.from_config(config, "cpu")


# ---------------------------------------------------------------- cameras


def test_rigid_inverse_equals_the_general_inverse():
    cameras = sample_cameras(OrbitSampler(jitter=0.2), 16, 32, 32, torch.Generator().manual_seed(3))
    inverse = rigid_inverse(cameras.viewmats)
    torch.testing.assert_close(inverse, torch.linalg.inv(cameras.viewmats), rtol=0, atol=1e-5)
    torch.testing.assert_close(cameras.viewmats @ inverse, torch.eye(4).expand(16, 4, 4), rtol=0, atol=1e-5)
    assert torch.equal(cameras.camtoworlds, inverse)


def test_camera_repeat_equals_selecting_with_a_repeated_index():
    cameras = sample_cameras(OrbitSampler(), 3, 32, 32, torch.Generator().manual_seed(0))
    repeated, selected = cameras.repeat(2), cameras.select(torch.arange(3).repeat(2))
    for name in ("viewmats", "Ks", "azimuth_deg", "elevation_deg", "distance", "fovy_deg"):
        assert torch.equal(getattr(repeated, name), getattr(selected, name)), name


def test_draws_follow_the_generators_device_and_stay_bit_identical_on_cpu():
    """Cameras and backgrounds are drawn on `generator.device`; on CPU the stream is the one a plain
    `torch.rand(..., generator=g)` gives (what earlier versions drew), so CPU runs keep their bits."""
    generator = torch.Generator().manual_seed(5)
    cameras = sample_cameras(OrbitSampler(), 4, 32, 32, generator)
    backgrounds = make_backgrounds("random", 4, generator, "cpu")
    reference = torch.Generator().manual_seed(5)
    strata = (torch.arange(4) + torch.rand(4, generator=reference)) / 4
    assert torch.equal(cameras.azimuth_deg, torch.remainder(-180.0 + 360.0 * strata + 180.0, 360.0) - 180.0)
    for _ in range(3):  # elevation, distance, fovy
        torch.rand(4, generator=reference)
    assert torch.equal(backgrounds, torch.rand(4, 3, generator=reference))
    assert cameras.viewmats.device == backgrounds.device == generator.device


# ---------------------------------------------------------------- LoRA adapter switch


def perturbed_lora(prior: StableDiffusionPrior) -> LoraScore:
    """A LoRA score whose adapter changes the prediction (peft initialises B = 0: on == off)."""
    lora = LoraScore(prior, LoraScoreConfig())
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in prior.unet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return lora


def test_adapter_switch_equals_peft_toggling():
    prior = tiny_prior()
    lora = perturbed_lora(prior)
    unet, switch = prior.unet, AdapterSwitch.of(prior.unet)
    from peft.tuners.tuners_utils import BaseTunerLayer

    assert switch.layers == [module for module in unet.modules() if isinstance(module, BaseTunerLayer)]
    assert len(switch.layers) > 0 and AdapterSwitch.of(unet) is switch  # found once, then cached
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=generator)
    timesteps = torch.tensor([100, 700])
    embeddings = prior.embed_prompts(["a corgi", "a corgi"])

    def eps() -> torch.Tensor:
        with torch.no_grad():
            return unet(latents, timesteps, encoder_hidden_states=embeddings).sample

    results = {}
    for enabled in (True, False):
        switch.set(enabled)
        lora_weights = [parameter for group in lora.optimizer.param_groups for parameter in group["params"]]
        assert all(parameter.requires_grad for parameter in lora_weights)  # peft's switch-off clears it
        results["switch", enabled] = eps()
        flags = [layer.disable_adapters for layer in switch.layers]
        (unet.enable_adapters if enabled else unet.disable_adapters)()
        results["peft", enabled] = eps()
        assert flags == [layer.disable_adapters for layer in switch.layers]
    assert torch.equal(results["switch", True], results["peft", True])
    assert torch.equal(results["switch", False], results["peft", False])
    assert not torch.equal(results["switch", True], results["switch", False])


# ---------------------------------------------------------------- dtype and memory switches


@pytest.mark.parametrize(
    ("dtype", "device", "trains_lora", "bf16_supported", "expected"),
    [
        ("auto", "cpu", True, True, torch.float32),
        ("auto", "cuda", False, True, torch.float16),
        ("auto", "cuda", True, True, torch.bfloat16),
        ("auto", "cuda", True, False, torch.float32),
        ("fp16", "cuda", True, True, torch.float16),
        ("bf16", "cpu", False, False, torch.bfloat16),
    ],
)
def test_auto_dtype_is_bf16_for_lora_objectives_on_gpus_that_have_it(
    monkeypatch, dtype, device, trains_lora, bf16_supported, expected
):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    assert StableDiffusionConfig(dtype=dtype).torch_dtype(device, trains_lora) == expected


def test_free_unused_drops_the_decoder_and_offloads_the_text_encoder_after_the_prompts():
    kept, freed = tiny_prior(free_unused=False), tiny_prior()
    assert kept.vae.decoder is not None and freed.vae.decoder is None and freed.vae.post_quant_conv is None
    images = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(freed.encode_images(images), kept.encode_images(images))
    before = freed.embed_prompts(["a corgi"])
    freed.prompts_encoded()
    assert freed.text_encoder.device.type == "cpu"
    torch.testing.assert_close(
        freed.embed_prompts(["a corgi", "a new prompt"]), kept.embed_prompts(["a corgi", "a new prompt"])
    )
    assert torch.equal(freed.embed_prompts(["a corgi"]), before)  # cached, not encoded again


# ---------------------------------------------------------------- host reads


HOST_READS = {  # aten ops that read device data on the host (a blocking sync on CUDA)
    "aten._local_scalar_dense.default",  # .item(), float(), bool(), int() of a tensor
    "aten.nonzero.default",
    "aten.masked_select.default",
    "aten.unique.default",
    "aten._unique2.default",
}


HOST_SIDE = (  # reads that are no sync on CUDA either
    "/torch/optim/",  # Adam's step counters: CPU tensors on CUDA too (non-capturable Adam)
)
GSPLATS_OWN = (  # gsplat's rasterizer and densification bookkeeping (and the CPU twin of its kernels)
    "/gsplat/",
    "splatgen/render/torch_backend.py",
)


class HostReads(TorchDispatchMode):
    """Records where the aten calls in HOST_READS are made while it is active: the innermost frame of
    splatgen's code (or the library's frame), skipping HOST_SIDE reads and marking GSPLATS_OWN ones."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []  # "splatgen/x.py:12 op", or "gsplat: op"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in HOST_READS or (name == "aten.index.Tensor" and _has_bool_index(args)):
            self._record(name)
        return func(*args, **(kwargs or {}))

    def _record(self, name: str) -> None:
        frames = [frame for frame in traceback.extract_stack() if "torch/utils/_python_dispatch" not in frame.filename]
        if any(marker in frame.filename for frame in frames for marker in HOST_SIDE):
            return
        if any(marker in frame.filename for frame in frames for marker in GSPLATS_OWN):
            self.reads.append(f"gsplat: {name}")
            return
        ours = [frame for frame in frames if "/splatgen/" in frame.filename and "/tests/" not in frame.filename]
        frame = (ours or frames)[-1]
        self.reads.append(f"splatgen/{frame.filename.rsplit('/splatgen/', 1)[-1]}:{frame.lineno} {name}")

    @property
    def outside_gsplat(self) -> list[str]:
        return [read for read in self.reads if not read.startswith("gsplat: ")]


def _has_bool_index(args) -> bool:
    return any(isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in args[1] or ())


def test_the_lora_train_step_reads_nothing_back():
    prior = tiny_prior()
    lora = LoraScore(prior, LoraScoreConfig())
    latents = torch.randn(2, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    embeddings = prior.embed_prompts(["a corgi"])
    conditions = camera_conditions(sample_cameras(OrbitSampler(), 2, 32, 32, torch.Generator().manual_seed(0)))
    lora.train_step(latents, embeddings, conditions, torch.Generator().manual_seed(0))  # AdamW state exists
    with HostReads() as counter:
        lora.train_step(latents, embeddings, conditions, torch.Generator().manual_seed(1))
        lora.predict(latents, torch.tensor([10, 20]), embeddings.expand(2, -1, -1), None)
    assert counter.reads == []


class OneStepReads:
    """`train(on_step=...)` hook: records the host reads of step `step` (from the end of the step before)."""

    def __init__(self, step: int) -> None:
        self.step, self.counter = step, HostReads()

    def __call__(self, completed: int) -> None:
        if completed == self.step - 1:
            self.counter.__enter__()
        elif completed == self.step:
            self.counter.__exit__(None, None, None)


@pytest.mark.parametrize("case", ["dsds", "vsd", "mvdream", "perp-neg"])
def test_a_training_step_reads_the_device_once_outside_gsplat(tmp_path, tiny_models, case):
    """Outside gsplat's own code a step reads one value back: the NaN/Inf check (the LoRA's own check
    stays on the device). Step 2 of the run is not a log, checkpoint or refinement step. The same holds
    for MVDream's 4-view groups and for Perp-Neg. (Host-to-device copies cannot be seen on CPU;
    `bench.py --device cuda` counts every sync there.)"""
    from splatgen.objectives import DSDS
    from splatgen.prior.mvdream import MVDreamConfig

    config = tiny_config(tmp_path / case, steps=3, log_every=100, checkpoint_every=100)
    config = replace(config, objective=VSD() if case == "vsd" else DSDS())
    if case == "mvdream":
        mvdream = MVDreamConfig(model=TINY_MODEL_ID, unet=TINY_MODEL_ID, image_size=IMAGE_SIZE)
        config = replace(config, prior=mvdream, batch_size=4)
    if case == "perp-neg":
        config = replace(config, prompts=replace(config.prompts, perp_neg=True))
    hook = OneStepReads(step=2)
    train(config, console=QUIET, on_step=hook)
    assert len(hook.counter.outside_gsplat) == 1, hook.counter.reads
    assert "_local_scalar_dense" in hook.counter.outside_gsplat[0], hook.counter.reads
    assert "train/step.py" in hook.counter.outside_gsplat[0], hook.counter.reads  # all_finite


def test_multi_view_groups_are_drawn_on_the_generators_device():
    """MVDream's groups (one elevation, distance and field of view per group, views 90 degrees apart) come
    from the generator's device like single views; on CPU from the stream a plain CPU draw gives."""
    generator = torch.Generator().manual_seed(4)
    cameras = sample_cameras(OrbitSampler(), 8, 32, 32, generator, views_per_group=4)
    reference = torch.Generator().manual_seed(4)
    offsets = (torch.arange(2) + torch.rand(2, generator=reference)) / 2 * 90.0 - 180.0
    azimuth = (offsets[:, None] + 90.0 * torch.arange(4)).reshape(-1)
    assert torch.equal(cameras.azimuth_deg, torch.remainder(azimuth + 180.0, 360.0) - 180.0)
    assert cameras.viewmats.device == generator.device
    assert torch.equal(cameras.elevation_deg[:4], cameras.elevation_deg[:1].expand(4))


# ---------------------------------------------------------------- precision


@pytest.mark.slow
def test_bf16_leaves_the_lora_gradient_unbiased_where_fp16_underflows():
    """At 64x64 latents the LoRA loss's per-value gradient is below fp16's normal range: through an fp16
    UNet part of it flushes to zero and the gradient shrinks; bf16 only rounds (vs the fp32 gradient)."""
    from splatgen.prior.precision import lora_gradient_precision

    def make_prior(dtype: str) -> StableDiffusionPrior:
        config = StableDiffusionConfig(model=resolve_sd_model(TINY_MODEL_ID), dtype=dtype, image_size=512)
        return StableDiffusionPrior.from_config(config, "cpu")

    fp32, bf16, fp16 = lora_gradient_precision(make_prior, ["bf16", "fp16"], batch=4)
    assert (fp32.dtype, fp32.zero_fraction, fp32.relative_error) == ("fp32", 0.0, 0.0)
    assert bf16.zero_fraction < 0.005 and abs(bf16.scale - 1.0) < 0.01 and bf16.relative_error < 0.05
    assert fp16.zero_fraction > 0.03 and fp16.scale < 0.97 and fp16.relative_error > 0.1


# ---------------------------------------------------------------- --prior.compile


@pytest.mark.slow
def test_compiled_prior_trains_what_the_eager_prior_trains(tmp_path, tiny_models, monkeypatch):
    """`--prior.compile` on a short VSD run (the UNet switches adapters and the camera embedding under
    dynamo; the VAE encoder is compiled with its backward). Inductor's code generation takes minutes on
    2 cores, so the test compiles with the `aot_eager` backend: dynamo's graph capture, guards and
    AOTAutograd's backward graph, the parts that break on unsupported code, executed by eager kernels."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    assets = {}
    for compiled in (False, True):
        base = tiny_config(tmp_path / f"compiled-{compiled}", steps=3, objective=VSD())
        config = replace(base, prior=replace(base.prior, compile=compiled))
        result = train(config, console=QUIET)
        assert result.steps_completed == 3 and result.skipped_steps == 0
        assets[compiled] = read_ply(result.ply_path)
    torch._dynamo.reset()
    torch.testing.assert_close(assets[True].means, assets[False].means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(assets[True].opacities, assets[False].opacities, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- resume on CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resumed_cuda_run_equals_an_uninterrupted_one(tmp_path, tiny_models):
    """The step generator lives on the GPU and gsplat's split draws from the global CUDA generator:
    both are in the checkpoint. Interrupted at step 5, resumed, refined at step 10: the same asset up
    to the float reordering of gsplat's atomic gradient sums (different cameras would differ by O(1))."""
    config = replace(tiny_config(tmp_path / "whole", objective=VSD()), device="cuda")
    uninterrupted = train(config, console=QUIET)
    stopped = train(replace(config, out=tmp_path / "split"), console=QUIET, on_step=_interrupt_at(5))
    assert stopped.interrupted and stopped.steps_completed == 5
    checkpoint = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["rng"]["cuda"] and checkpoint["rng"]["generator"].dtype == torch.uint8
    arguments = ["--resume", str(tmp_path / "split"), "--video-frames", "0", "--no-viewer"]
    resumed = train(parse_train_args(arguments), console=QUIET)
    assert resumed.steps_completed == 7 and [r.step for r in resumed.refinements] == [
        r.step for r in uninterrupted.refinements if r.step > 5
    ]
    whole, split = read_ply(uninterrupted.ply_path), read_ply(resumed.ply_path)
    assert len(whole) == len(split)
    for name in ("means", "scales", "opacities", "sh0"):
        torch.testing.assert_close(getattr(split, name), getattr(whole, name), rtol=1e-3, atol=1e-4)


def test_an_fp16_prior_with_a_lora_objective_is_warned_about(tmp_path, tiny_models):
    from splatgen.train import assemble

    config = tiny_config(tmp_path, objective=VSD())
    output = StringIO()
    prior = assemble.load_prior(
        replace(config, prior=replace(config.prior, dtype="fp16")), torch.device("cpu"), Console(file=output, width=400)
    )
    assert prior.dtype == torch.float16 and "LoRA gradient underflows" in output.getvalue()
    output.truncate(0)
    assert assemble.load_prior(config, torch.device("cpu"), Console(file=output, width=400)).dtype == torch.float32
    assert "underflows" not in output.getvalue()


# ---------------------------------------------------------------- random state in checkpoints


def test_a_resumed_vsd_run_equals_an_uninterrupted_one_on_cpu(tmp_path, tiny_models):
    """The LoRA's draws come from the step generator and its fused AdamW's state (step counters included)
    goes through the checkpoint: interrupted at step 5 and resumed, a VSD run writes the same PLY bytes."""
    uninterrupted = train(tiny_config(tmp_path / "whole", objective=VSD()), console=QUIET)
    stopped = train(tiny_config(tmp_path / "split", objective=VSD()), console=QUIET, on_step=_interrupt_at(5))
    assert stopped.interrupted and stopped.steps_completed == 5
    arguments = ["--resume", str(tmp_path / "split"), "--video-frames", "0", "--no-viewer"]
    resumed = train(parse_train_args(arguments), console=QUIET)
    assert resumed.steps_completed == 7
    assert resumed.ply_path.read_bytes() == uninterrupted.ply_path.read_bytes()


def test_a_resume_on_another_device_type_seeds_the_step_generator_from_the_checkpoint(tmp_path, tiny_models):
    """`--device` may change on resume, but a CPU generator cannot take a CUDA generator's state: the step
    generator is seeded from the saved state instead (the same checkpoint, the same draws) and a note says so.
    Simulated on CPU with the 16-byte state (seed, offset) a CUDA generator saves."""
    import shutil

    from splatgen.train.checkpoint import state_digest

    run = train(tiny_config(tmp_path / "run", steps=4), console=QUIET).run_dir
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert state["rng"]["generator_device"] == "cpu"
    integrity = state.pop("integrity")
    state["rng"].update(generator=torch.arange(16, dtype=torch.uint8), generator_device="cuda")
    state["integrity"] = {**integrity, "sha256": state_digest(state)}
    torch.save(state, path)
    shutil.copytree(run, tmp_path / "copy")
    assets, printed = [], []
    for folder in (run, tmp_path / "copy"):
        output = StringIO()
        arguments = ["--resume", str(folder), "--steps", "6", "--video-frames", "0", "--no-viewer"]
        result = train(parse_train_args(arguments), console=Console(file=output, width=400))
        assert result.steps_completed == 2  # steps 5 and 6
        assets.append(read_ply(result.ply_path))
        printed.append(output.getvalue())
    assert "step generator was on cuda, this run's is on cpu" in printed[0]
    assert torch.equal(assets[0].means, assets[1].means) and torch.equal(assets[0].sh0, assets[1].sh0)


# ---------------------------------------------------------------- the LoRA's non-finite updates


def lora_after_one_update():
    """A VSD LoRA on the tiny prior after one finite update, with the inputs of that update."""
    prior = tiny_prior()
    lora = LoraScore(prior, LoraScoreConfig())
    latents = torch.randn(
        2, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=torch.Generator().manual_seed(0)
    )  # [2, 4, 8, 8]
    embeddings = prior.embed_prompts(["a corgi"])
    conditions = camera_conditions(sample_cameras(OrbitSampler(), 2, 32, 32, torch.Generator().manual_seed(0)))
    lora.train_step(latents, embeddings, conditions, torch.Generator().manual_seed(0))
    return lora, latents, embeddings, conditions


def test_a_non_finite_lora_gradient_skips_the_update_on_the_device(monkeypatch):
    """The LoRA's AdamW step is skipped where the loss or a gradient is NaN/Inf, without reading the device:
    weights, moments and step counts stay as they were, and the next finite step trains again."""
    lora, latents, embeddings, conditions = lora_after_one_update()

    before = lora.state_dict()  # a deep copy
    forward = LoraScore._forward
    monkeypatch.setattr(LoraScore, "_forward", lambda self, *args: forward(self, *args) * float("nan"))
    with HostReads() as counter:
        loss = lora.train_step(latents, embeddings, conditions, torch.Generator().manual_seed(1))
    assert counter.reads == [] and torch.isnan(loss)
    after = lora.state_dict()
    for name, tensor in before["lora"].items():
        assert torch.equal(after["lora"][name], tensor), name
    for index, moments in before["optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.equal(after["optimizer"]["state"][index][key], value), (index, key)
    monkeypatch.setattr(LoraScore, "_forward", forward)
    assert torch.isfinite(lora.train_step(latents, embeddings, conditions, torch.Generator().manual_seed(2)))
    steps = {float(moments["step"]) for moments in lora.optimizer.state.values()}
    assert steps == {2.0}  # the skipped step did not count


def test_a_lora_state_saved_with_a_non_fused_adamw_loads_and_trains():
    """Checkpoints written before the LoRA's AdamW was fused hold fused=False and CPU step counters."""
    lora, latents, embeddings, conditions = lora_after_one_update()
    state = lora.state_dict()
    for group in state["optimizer"]["param_groups"]:
        group.update(fused=False, foreach=None)
    lora.load_state_dict(state)
    assert all(group["fused"] for group in lora.optimizer.param_groups)
    assert torch.isfinite(lora.train_step(latents, embeddings, conditions, torch.Generator().manual_seed(1)))


def test_a_resume_may_change_the_priors_speed_switches(tmp_path, tiny_models):
    run = train(tiny_config(tmp_path / "run", steps=4), console=QUIET).run_dir
    switches = ["--prior.channels-last", "--prior.no-cudnn-benchmark", "--prior.no-free-unused"]
    arguments = ["--resume", str(run), "--steps", "5", "--video-frames", "0", "--no-viewer", *switches]
    config = parse_train_args(arguments)
    assert (config.prior.channels_last, config.prior.cudnn_benchmark, config.prior.free_unused) == (True, False, False)
    assert train(config, console=QUIET).steps_completed == 1


# ---------------------------------------------------------------- the measuring scripts


def _script(name: str):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"splatgen_{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_the_precision_probe_compares_each_dtype_with_fp32(tiny_models, capsys):
    import json

    record = _script("precision_probe").main(["--dtype", "bf16", "--batch", "1", "--image-size", "64", "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record
    fp32, bf16 = record["results"]
    assert (record["architecture"], record["latent_size"], fp32["dtype"], bf16["dtype"]) == ("tiny", 8, "fp32", "bf16")
    assert fp32["relative_error"] == 0.0 and fp32["scale"] == 1.0 and 0.0 < bf16["relative_error"] < 0.05


def test_the_adapter_switch_benchmark_runs_on_the_sd21_architecture(capsys):
    _script("bench_adapter_switch").main(["--repeats", "1"])
    printed = capsys.readouterr().out
    assert "1,989 modules, 128 LoRA layers" in printed and "AdapterSwitch.set(True)" in printed


def test_the_adapter_switch_follows_a_lora_removed_and_added_again():
    """`splatgen batch` reuses a prior: `LoraScore.remove_from` deletes the adapter and the next VSD run adds
    one under the same name (new layers); the cached switch must flip the new layers, not the deleted ones."""
    prior = tiny_prior()
    perturbed_lora(prior)
    first = AdapterSwitch.of(prior.unet)
    assert LoraScore.remove_from(prior)
    lora = perturbed_lora(prior)  # same adapter name, new layers
    second = AdapterSwitch.of(prior.unet)
    assert second is not first and second.serves(prior.unet)
    from peft.tuners.tuners_utils import BaseTunerLayer

    assert second.layers == [module for module in prior.unet.modules() if isinstance(module, BaseTunerLayer)]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=generator)
    embeddings = prior.embed_prompts(["a corgi", "a corgi"])
    timesteps = torch.tensor([100, 700])
    pretrained = prior.predict_noise(latents, timesteps, embeddings)
    with_lora = lora.predict(latents, timesteps, embeddings, None)
    assert not torch.equal(pretrained, with_lora)  # the new adapter switches on for the LoRA's prediction
    assert torch.equal(prior.predict_noise(latents, timesteps, embeddings), pretrained)  # and off again


def test_a_kept_prior_is_reloaded_when_the_objective_changes_its_auto_dtype(monkeypatch):
    """`splatgen batch` keeps one prior loaded: on a bf16 GPU, auto means bf16 for VSD and fp16 for D-SDS,
    so the two need different priors; on CPU both are fp32 and share one."""
    from splatgen.objectives import DSDS
    from splatgen.train.assemble import ModelCache
    from splatgen.train.config import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    vsd, dsds = TrainConfig(prompt="a corgi", objective=VSD()), TrainConfig(prompt="a corgi", objective=DSDS())
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert ModelCache.prior_key(vsd, cuda) != ModelCache.prior_key(dsds, cuda)
    assert ModelCache.prior_key(vsd, cpu) == ModelCache.prior_key(dsds, cpu)
