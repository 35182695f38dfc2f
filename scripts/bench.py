"""Time splatgen's training step, its parts, and the floor set by the diffusion prior.

The step timed is the product's own `splatgen.train.step.train_step` over a `TrainState` built by
`splatgen.train.assemble.initial_state`: sample cameras -> rasterize -> VAE-encode the renders ->
score distillation (CFG UNet batch, VSD/ESD LoRA scores, objective) -> backward -> NaN check ->
Adam per key -> densification bookkeeping -> LoRA train step (VSD/ESD), plus the loop's viewer
push (`--viewer`). Per configuration (objective x batch) it reports:

- `ms_per_step`: median of full steps timed end to end. The full step adds no synchronisation of
  its own except one final `torch.cuda.synchronize()`; the product's own host-device syncs are
  part of what it measures.
- `parts`: median milliseconds of each part, from separate steps in which every part is fenced by
  device synchronisation through the step's `region(name)` hook (so `parts_sum_ms` >= `ms_per_step`
  on a GPU: fencing stops overlap).
  `backward` is render + VAE-encoder backward together (the one `loss.backward()` call).
- `floor_ms`: the prior's own work for the same batch, each piece timed alone on device tensors:
  the CFG UNet forward (2B latents, 3B for CSD's negative term; text embeddings precomputed), the
  VAE encoder forward + backward on a leaf image tensor of the render size, and for VSD/ESD the
  LoRA prediction(s) and the LoRA's training compute (forward, backward, AdamW). `floor_ratio = ms_per_step / floor_ms`:
  1.0 would mean nothing but the diffusion model costs anything.
- `peak_mem_mb`: CUDA `torch.cuda.max_memory_allocated` for this configuration (weights included);
  CPU: the peak RSS of the process that ran it (`resource.getrusage`).
- `gaussians_per_s`: Gaussians x views / median render-forward time.
- `syncs_per_step` (CUDA only): host-device synchronisations in one full step, counted with
  `torch.cuda.set_sync_debug_mode("warn")`, and `sync_sites`, where they happen.

Each configuration runs `--warmup` untimed steps (on CUDA the first gsplat call JIT-compiles its
kernels, `--compile` compiles the UNet, cuDNN picks algorithms), then `--steps` full steps
interleaved with `--steps` fenced steps and `--steps` rounds of the floor's pieces, so that load
changes on a shared machine hit all three alike. Every timed step starts from the same scene
(restored, untimed, before each step). Densification only does its per-step bookkeeping:
refinements (every 100 steps in a run) change the number of Gaussians and are not timed. On CPU
each configuration runs in its own process (glibc's allocator state would otherwise carry over
from one configuration to the next; `--same-process` turns this off). On a shared machine,
`--threads 1` gives steadier numbers than torch's default.

CPU (default without CUDA): the tiny random SD-shaped models (`tiny-random`, built once into
`$SPLATGEN_TINY_MODELS`), 64x64 renders, pure-torch rasterizer, D-SDS at batch 1.
CUDA: the full SD 2.1-base architecture with random weights (`assets/sd21_base/`, compute does
not depend on weight values) in the prior's auto dtype (fp16; bf16 for VSD/ESD), prior and renders at 512x512, gsplat, every objective at
batch 1 and 4, 100k Gaussians.

`--prior mvdream` times the MVDream multi-view prior instead (MV-SDS: 4-view groups, one timestep
per group; CPU: the tiny LDM-named multi-view UNet, CUDA: MVDream's full-size architecture with
random weights at 256 px; batches must be multiples of 4). `--perp-neg` turns Perp-Neg on for the
SD prior (the UNet batch grows from 2B to 4B, floor included).

    .venv/bin/python scripts/bench.py                                  # CPU, D-SDS, batch 1, a table
    .venv/bin/python scripts/bench.py --objective sds vsd --batch 1 4 --json
    .venv/bin/python scripts/bench.py --device cuda --objective all --batch 1 4 --json
    .venv/bin/python scripts/bench.py --prior mvdream --objective sds dsds --batch 4      # MV-SDS
    .venv/bin/python scripts/bench.py --perp-neg --objective sds --batch 1 4              # Perp-Neg

`--json` prints one JSON line per configuration (a single configuration: exactly one line) on
stdout; progress notes go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from splatgen.errors import SplatgenError
from splatgen.objectives import OBJECTIVES
from splatgen.prior.base import views_per_group
from splatgen.prior.multiview import VIEWS_PER_GROUP
from splatgen.prior.mvdream import MVDreamConfig, MVDreamPrior
from splatgen.prior.stable_diffusion import StableDiffusionConfig, StableDiffusionPrior
from splatgen.prompts import PromptConfig, build_view_prompts
from splatgen.render import resolve_backend
from splatgen.scene.cameras import sample_cameras
from splatgen.scene.densify import DensifyConfig
from splatgen.scene.init import BallInit
from splatgen.tiny_models import TINY_MODEL_ID, resolve_mvdream_unet, resolve_sd_model
from splatgen.train import assemble
from splatgen.train.config import TrainConfig
from splatgen.train.distill import Region, camera_condition, lora_predictions, no_region, prior_predictions
from splatgen.train.step import TrainState, snapshot_factory, train_step
from splatgen.viewer import LiveViewer, ViewerConfig

REPO = Path(__file__).resolve().parent.parent
NOMINAL_STEPS = 1200  # the run the benchmarked step belongs to (GaussianDreamer: 1,200 steps)
BENCH_STEP = 360  # every timed step is this step of that run (30%: inside the densify window, 10%..75%)
NEVER = 10**9  # refine_every: bookkeeping only, so the number of Gaussians stays fixed while timing
PROMPT = "a DSLR photo of a corgi wearing a hat"


@dataclass(frozen=True)
class DeviceDefaults:
    objectives: tuple[str, ...]
    batches: tuple[int, ...]
    resolution: int
    prior_size: int
    gaussians: int
    steps: int
    warmup: int


CPU_DEFAULTS = DeviceDefaults(("dsds",), (1,), resolution=64, prior_size=64, gaussians=1000, steps=5, warmup=2)
CUDA_DEFAULTS = DeviceDefaults(
    tuple(OBJECTIVES), (1, 4), resolution=512, prior_size=512, gaussians=100_000, steps=20, warmup=5
)


@dataclass(frozen=True)
class BenchSettings:
    """What every configuration shares (one command line)."""

    device: torch.device
    dtype: str  # StableDiffusionConfig.dtype: auto | fp32 | fp16 | bf16
    resolution: int
    prior_size: int
    gaussians: int
    steps: int
    warmup: int
    compile: bool
    channels_last: bool
    viewer: bool
    prior: str = "sd"  # sd | mvdream
    perp_neg: bool = False
    cudnn_benchmark: bool = True
    free_unused: bool = True
    peft_toggles: bool = False  # switch LoRA adapters with diffusers' calls that walk the UNet (the old way)

    @property
    def model(self) -> str:
        if self.prior == "mvdream":
            return "mvdream-sd21-base-random" if self.device.type == "cuda" else "mvdream-tiny-random"
        return "sd21-base-random" if self.device.type == "cuda" else TINY_MODEL_ID


# ---------------------------------------------------------------------------------------------
# Timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FencedTimer:
    """A `Region` that times named parts of a step, synchronising the device before and after each part.

    A part named twice in one step (densification before and after backward) adds up.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.steps: list[dict[str, float]] = []  # per step: part -> milliseconds
        self._current: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self._current[name] += 1e3 * (time.perf_counter() - start)

    def end_step(self) -> None:
        self.steps.append(dict(self._current))
        self._current = defaultdict(float)

    def medians(self) -> dict[str, float]:
        names = dict.fromkeys(name for step in self.steps for name in step)
        return {name: statistics.median(step.get(name, 0.0) for step in self.steps) for name in names}

    def means(self) -> dict[str, float]:
        names = dict.fromkeys(name for step in self.steps for name in step)
        return {name: statistics.fmean(step.get(name, 0.0) for step in self.steps) for name in names}


def time_call_ms(device: torch.device, call: Callable[[], Any]) -> float:
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return 1e3 * (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# The models (one prior per objective: a LoRA score attaches itself to its prior's UNet)


@dataclass
class Models:
    prior: StableDiffusionPrior
    lora_score: Any  # splatgen.prior.lora.LoraScore for VSD/ESD, else None


def prior_config(settings: BenchSettings) -> StableDiffusionConfig:
    model = resolve_sd_model(TINY_MODEL_ID) if settings.device.type == "cpu" else StableDiffusionConfig().model
    fields = dict(
        model=model,
        dtype=settings.dtype,
        image_size=settings.prior_size,
        channels_last=settings.channels_last,
        compile=settings.compile,
        cudnn_benchmark=settings.cudnn_benchmark,
        free_unused=settings.free_unused,
    )
    if settings.prior == "mvdream":
        unet = resolve_mvdream_unet(TINY_MODEL_ID) if settings.device.type == "cpu" else MVDreamConfig().unet
        return MVDreamConfig(**fields, unet=unet)
    return StableDiffusionConfig(**fields)


def load_prior(settings: BenchSettings, trains_lora: bool) -> StableDiffusionPrior:
    """CPU: the tiny random pipeline through `from_config`; CUDA: the full architecture, random weights."""
    config = prior_config(settings)
    kind = MVDreamPrior if settings.prior == "mvdream" else StableDiffusionPrior
    if settings.device.type == "cuda":
        return kind.with_random_sd21_base_weights(config, settings.device, trains_lora=trains_lora)
    return kind.from_config(config, settings.device, trains_lora)


def use_peft_toggles() -> None:
    """Switch the LoRA adapters with diffusers' `enable_adapters()` / `disable_adapters()`, which walk the
    whole UNet, instead of the cached `AdapterSwitch`: `--peft-toggles` times what the cache saves."""
    import splatgen.prior.lora as lora_module
    import splatgen.prior.stable_diffusion as prior_module

    def pretrained(unet) -> None:
        if getattr(unet, "_hf_peft_config_loaded", False):
            unet.disable_adapters()

    for module in (lora_module, prior_module):
        module.use_pretrained_weights = pretrained
        module.use_lora_weights = lambda unet: unet.enable_adapters()


def build_models(settings: BenchSettings, objective_name: str) -> Models:
    prior = load_prior(settings, OBJECTIVES[objective_name].uses_lora)  # --compile: compiled lazily, LoRA included
    batch = VIEWS_PER_GROUP if settings.prior == "mvdream" else 1
    lora_score = assemble.make_lora_score(train_config(settings, objective_name, batch), prior, settings.device)
    if settings.peft_toggles:
        use_peft_toggles()
    return Models(prior, lora_score)


# ---------------------------------------------------------------------------------------------
# One configuration's training state, as `train.train` builds it


def train_config(settings: BenchSettings, objective_name: str, batch: int) -> TrainConfig:
    """The run this step belongs to: product defaults, except what the command line sets."""
    config = TrainConfig(
        prompt=PROMPT,
        steps=NOMINAL_STEPS,
        batch_size=batch,
        render_size=settings.resolution,
        objective=OBJECTIVES[objective_name](),
        prior=prior_config(settings),
        prompts=PromptConfig(debias=False, perp_neg=settings.perp_neg),  # debiasing runs once before training
        init=BallInit(count=settings.gaussians),
        densify=DensifyConfig(refine_every=NEVER, max_gaussians=max(settings.gaussians, DensifyConfig().max_gaussians)),
        device=settings.device.type,
        viewer=ViewerConfig(enabled=settings.viewer, port=0),
    )
    config.validate()
    return config


@dataclass
class BenchState:
    """A run's `TrainState` (built by the product's `assemble.initial_state`), its viewer, and the scene
    every timed step starts from."""

    train: TrainState
    viewer: LiveViewer | None
    initial_splats: dict[str, torch.Tensor]

    @property
    def device(self) -> torch.device:
        return self.train.device

    @property
    def config(self) -> TrainConfig:
        return self.train.config

    @torch.no_grad()
    def reset(self) -> None:
        """Back to step BENCH_STEP with the Gaussians where they started (optimiser moments stay), so that
        every timed step renders the same scene however many steps ran before (the render cost follows it)."""
        for key, parameter in self.train.splats.items():
            parameter.copy_(self.initial_splats[key])
        self.train.step = BENCH_STEP


def build_bench_state(settings: BenchSettings, models: Models, config: TrainConfig, viewer_dir: Path) -> BenchState:
    quiet = Console(quiet=True)
    view_prompts = build_view_prompts(config.prompt, config.prompts)
    state = assemble.initial_state(config, models.prior, view_prompts, settings.device, quiet, models.lora_score)
    viewer = LiveViewer(config.viewer, viewer_dir, quiet) if settings.viewer else None
    initial_splats = {key: value.detach().clone() for key, value in state.splats.items()}
    return BenchState(state, viewer, initial_splats)


def training_step(bench: BenchState, region: Region) -> None:
    """One iteration of `train()`'s loop: the product's `train_step` with its parts in `region`, and the
    viewer's part when it runs (log-interval work excluded: progress line, checkpoint).

    Call `bench.reset()` first (untimed) to time every step on the same scene at step BENCH_STEP.
    """
    if bench.viewer is not None:
        with region("viewer"):
            bench.viewer.wait_while_paused()
    result = train_step(bench.train, region)
    if bench.viewer is not None:
        with region("viewer"):
            bench.viewer.publish(snapshot_factory(bench.train, result))


# ---------------------------------------------------------------------------------------------
# The floor: the prior's own work for this batch, each piece alone


def lora_training_compute(lora_score, latents, noise, timesteps, text_embeddings, conditions) -> None:
    """What `LoraScore.train_step` computes (forward, MSE, backward, AdamW), without its host-side sampling."""
    lora_score.update(lora_score.diffusion_loss(latents, noise, timesteps, text_embeddings, conditions))


def floor_pieces(bench: BenchState) -> dict[str, Callable[[], Any]]:
    """Device-resident inputs of the step's shapes, and one closure per piece of the prior's work."""
    state = bench.train
    device, prior, batch, size = state.device, state.prior, state.config.batch_size, state.config.render_size
    objective, lora_score = state.config.objective, state.lora_score
    generator = torch.Generator(device=device).manual_seed(0)
    cameras = sample_cameras(
        state.config.cameras, batch, size, size, torch.Generator().manual_seed(0), views_per_group(prior)
    ).to(device)
    prompts = state.text.for_cameras(cameras)  # each [B, L, D]
    images = torch.rand(
        batch, 3, size, size, device=device, generator=generator, requires_grad=True
    )  # a leaf, like a render
    with torch.no_grad():
        latents = prior.encode_images(images)  # [B, c, h, w]
    noise = torch.randn(latents.shape, device=device, generator=generator)
    timesteps = torch.randint(20, 980, (batch,), device=device, generator=generator)

    def vae_encode_forward_backward() -> None:
        prior.encode_images(images).sum().backward()
        images.grad = None

    pieces: dict[str, Callable[[], Any]] = {
        "unet_cfg": lambda: prior_predictions(
            prior, objective, noise, timesteps, prompts, cameras
        ),  # 2B (3B: CSD's negative term; +2B: Perp-Neg)
        "vae_encode_fwd_bwd": vae_encode_forward_backward,
    }
    if lora_score is not None:
        conditions = camera_condition(objective, cameras)  # [B, 16]
        pieces["unet_lora"] = lambda: lora_predictions(
            lora_score, objective, noise, timesteps, prompts.plain, conditions
        )
        pieces["lora_train"] = lambda: lora_training_compute(
            lora_score, latents, noise, timesteps, prompts.plain, conditions
        )
    return pieces


# ---------------------------------------------------------------------------------------------
# Host-device synchronisations (CUDA)


def sync_site(filename: str, lineno: int) -> str:
    """A short name for where a sync happened: splatgen/x.py:12, or package/module.py:34 for an installed one."""
    path = Path(filename)
    if path.is_relative_to(REPO):
        name = path.relative_to(REPO).as_posix()
    else:
        name = path.as_posix().rsplit("/site-packages/", 1)[-1]
    return f"{name}:{lineno}"


def is_gsplat_site(site: str) -> bool:
    """A sync inside gsplat (its rasterizer sizing buffers, its densification strategy's bookkeeping)."""
    return site.startswith("gsplat/")


def count_syncs(bench: BenchState) -> tuple[int, int, dict[str, int]] | None:
    """(syncs, syncs outside gsplat, where they happen) in one full non-refinement step; None off CUDA or if
    counting fails. Refinement steps (every `refine_every` steps) sync more: they resize the scene."""
    if bench.device.type != "cuda":
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                bench.reset()
                training_step(bench, no_region)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        sites = Counter(sync_site(w.filename, w.lineno) for w in caught if "synchroniz" in str(w.message))
        outside = sum(count for site, count in sites.items() if not is_gsplat_site(site))
        return sum(sites.values()), outside, dict(sites.most_common())
    except Exception as error:  # an auxiliary count must not lose a GPU run's timings
        note(f"sync counting failed ({type(error).__name__}: {error}); syncs_per_step left out")
        return None


# ---------------------------------------------------------------------------------------------
# One configuration


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss_of_process"  # Linux: KiB


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def time_full_step(bench: BenchState) -> float:
    """Milliseconds of one unfenced step from the initial scene (one synchronisation, at the end)."""
    bench.reset()
    return time_call_ms(bench.device, lambda: training_step(bench, no_region))


def run_fenced_step(bench: BenchState, timer: FencedTimer) -> None:
    bench.reset()
    training_step(bench, timer)
    timer.end_step()


def warm_up(bench: BenchState, steps: int) -> None:
    backend = resolve_backend(bench.config.render_backend, bench.device)
    if backend == "gsplat":
        note(
            "gsplat: the first call JIT-compiles its CUDA kernels (minutes the first time; set TORCH_CUDA_ARCH_LIST, "
            "e.g. 9.0 on an H200); the warm-up absorbs it"
        )
    for index in range(steps):
        seconds = time_full_step(bench) / 1e3
        if index == 0 and seconds > 5.0:
            note(f"first warm-up step took {seconds:.1f} s (JIT compilation / autotuning)")


def bench_configuration(settings: BenchSettings, models: Models, objective_name: str, batch: int) -> dict[str, Any]:
    config = train_config(settings, objective_name, batch)
    with tempfile.TemporaryDirectory(prefix="splatgen-bench-") as viewer_dir:
        bench = build_bench_state(settings, models, config, Path(viewer_dir))
        try:
            reset_peak_memory(settings.device)
            floor = floor_pieces(bench)
            warm_up(bench, settings.warmup)
            for call in floor.values():
                call()
            full_ms, fenced, floor_ms = [], FencedTimer(settings.device), defaultdict(list)
            for _ in range(settings.steps):  # interleaved, so that load changes on a shared machine hit all three alike
                full_ms.append(time_full_step(bench))
                run_fenced_step(bench, fenced)
                for name, call in floor.items():
                    floor_ms[name].append(time_call_ms(settings.device, call))
            syncs = count_syncs(bench)
            peak_mb, peak_kind = peak_memory_mb(settings.device)
        finally:
            if bench.viewer is not None:
                bench.viewer.close()
    floor_parts = {name: statistics.median(values) for name, values in floor_ms.items()}
    return configuration_record(settings, config, bench.train, full_ms, fenced, floor_parts, syncs, peak_mb, peak_kind)


def configuration_record(
    settings, config, state, full_ms, fenced, floor_parts, syncs, peak_mb, peak_kind
) -> dict[str, Any]:
    parts = fenced.medians()
    ms_per_step = statistics.median(full_ms)
    floor_ms = sum(floor_parts.values())
    render_s = parts["render"] / 1e3
    record: dict[str, Any] = {
        "objective": type(config.objective).__name__.lower(),
        "batch": config.batch_size,
        "resolution": config.render_size,
        "prior_image_size": state.prior.image_size,
        "num_gaussians": len(state.splats["means"]),
        "device": device_description(settings.device),
        "prior": settings.model,
        "perp_neg": settings.perp_neg,
        "dtype": str(state.prior.dtype).removeprefix("torch."),
        "renderer": resolve_backend(config.render_backend, settings.device),
        "threads": torch.get_num_threads(),
        "compile": settings.compile,
        "channels_last": settings.channels_last,
        "cudnn_benchmark": settings.cudnn_benchmark,
        "free_unused": settings.free_unused,
        "peft_toggles": settings.peft_toggles,
        "steps": settings.steps,
        "warmup": settings.warmup,
        "ms_per_step": round(ms_per_step, 3),
        "ms_per_step_min": round(min(full_ms), 3),
        "parts_sum_ms": round(sum(parts.values()), 3),
        "parts": {name: round(value, 3) for name, value in parts.items()},
        "floor_ms": round(floor_ms, 3),
        "floor_parts": {name: round(value, 3) for name, value in floor_parts.items()},
        "floor_ratio": round(ms_per_step / floor_ms, 3),
        "seconds_per_1200_steps": round(1.2 * ms_per_step, 2),
        "peak_mem_mb": round(peak_mb, 1),
        "peak_mem_kind": peak_kind,
        "gaussians_per_s": round(len(state.splats["means"]) * config.batch_size / render_s) if render_s > 0 else None,
        "skipped_steps": state.skipped_steps,
        "torch": torch.__version__,
        **git_revision(),
    }
    if settings.viewer:
        record["viewer_ms_mean"] = round(fenced.means().get("viewer", 0.0), 3)
    if syncs is not None:
        record["syncs_per_step"], record["syncs_outside_gsplat"], record["sync_sites"] = syncs
    return record


# ---------------------------------------------------------------------------------------------
# Context and output


def note(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def git_revision() -> dict[str, Any]:
    """{'commit': short hash or None, 'dirty': whether tracked files differ from it}."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def print_table(record: dict[str, Any]) -> None:
    print(
        f"\n{record['objective']} batch {record['batch']}, {record['resolution']}px renders, prior {record['prior']}{' + Perp-Neg' if record.get('perp_neg') else ''} "
        f"{record['dtype']} at {record['prior_image_size']}px, {record['num_gaussians']:,} Gaussians, {record['device']}, "
        f"{record['renderer']} renderer, torch {record['torch']}, commit {record['commit']}"
    )
    print(
        f"  step (end to end)   {record['ms_per_step']:10.2f} ms   ({record['seconds_per_1200_steps']:.1f} s per 1,200 steps)"
    )
    print(f"  floor (prior only)  {record['floor_ms']:10.2f} ms   floor_ratio {record['floor_ratio']:.2f}")
    for name, value in record["floor_parts"].items():
        print(f"    {name:<18}{value:10.2f} ms")
    print(f"  parts (fenced)      {record['parts_sum_ms']:10.2f} ms in all")
    for name, value in record["parts"].items():
        print(f"    {name:<18}{value:10.2f} ms")
    print(f"  peak memory         {record['peak_mem_mb']:10.1f} MB ({record['peak_mem_kind']})")
    if record["gaussians_per_s"] is not None:
        print(f"  render              {record['gaussians_per_s']:10,} Gaussians/s (forward)")
    if "viewer_ms_mean" in record:
        print(
            f"  viewer (mean)       {record['viewer_ms_mean']:10.2f} ms per step (pushes at the viewer's update rate)"
        )
    if "syncs_per_step" in record:
        print(
            f"  host-device syncs   {record['syncs_per_step']:10d} per step, {record['syncs_outside_gsplat']} outside "
            f"gsplat: {record['sync_sites']}"
        )
    if record["skipped_steps"]:
        print(f"  non-finite steps    {record['skipped_steps']:10d} (skipped, as the trainer does)")


@dataclass(frozen=True)
class Plan:
    """What one command line asks for."""

    settings: BenchSettings
    objectives: list[str]
    batches: list[int]
    threads: int | None  # torch CPU threads; None = torch's choice
    as_json: bool
    one_process_each: bool  # run every configuration in a fresh process (see `run_in_own_process`)

    @property
    def configurations(self) -> list[tuple[str, int]]:
        return [(objective_name, batch) for objective_name in self.objectives for batch in self.batches]


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--objective",
        nargs="+",
        action="extend",
        choices=[*OBJECTIVES, "all"],
        help="objectives to time (default: dsds on CPU, all on CUDA)",
    )
    parser.add_argument(
        "--batch",
        nargs="+",
        action="extend",
        type=int,
        help="views per step; repeatable or a list (default: 1 CPU, 1 4 CUDA)",
    )
    parser.add_argument("--resolution", type=int, help="square render size in pixels (default: 64 CPU, 512 CUDA)")
    parser.add_argument(
        "--prior-size", type=int, help="the prior's image size (renders are resized to it; default: 64 CPU, 512 CUDA)"
    )
    parser.add_argument("--gaussians", type=int, help="number of Gaussians (default: 1,000 CPU, 100,000 CUDA)")
    parser.add_argument("--steps", type=int, help="timed steps per configuration, each mode (default: 5 CPU, 20 CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 2 CPU, 5 CUDA)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="prior dtype (auto: fp32 CPU; CUDA: bf16 for VSD/ESD where supported, else fp16)",
    )
    parser.add_argument("--compile", action="store_true", help="the prior's compile option (UNet and VAE encoder)")
    parser.add_argument("--channels-last", action="store_true", help="the prior's channels-last option (UNet and VAE)")
    parser.add_argument(
        "--no-cudnn-benchmark", action="store_true", help="turn off the prior's cudnn_benchmark option (CUDA)"
    )
    parser.add_argument(
        "--keep-unused",
        action="store_true",
        help="turn off the prior's free_unused option (keep VAE decoder, text encoder)",
    )
    parser.add_argument(
        "--peft-toggles", action="store_true", help="switch LoRA adapters with diffusers' UNet-walking calls"
    )
    parser.add_argument(
        "--viewer", action="store_true", help="run the live viewer (port 0) and time its per-step publish"
    )
    parser.add_argument(
        "--prior", default="sd", choices=["sd", "mvdream"], help="the prior: Stable Diffusion or MVDream (MV-SDS)"
    )
    parser.add_argument("--perp-neg", action="store_true", help="Perp-Neg on the SD prior (a 4B UNet batch)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="CPU: run every configuration in this process (faster; later ones inherit the allocator's state)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON line per configuration on stdout instead of tables"
    )
    args = parser.parse_args(argv)
    try:
        device = assemble.resolve_device(args.device)
    except SplatgenError as error:
        parser.error(str(error))
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    objectives = args.objective or list(defaults.objectives)
    objectives = list(OBJECTIVES) if "all" in objectives else list(dict.fromkeys(objectives))
    batches = list(dict.fromkeys(args.batch or defaults.batches))
    settings = BenchSettings(
        device=device,
        dtype=args.dtype,
        resolution=args.resolution or defaults.resolution,
        prior_size=args.prior_size
        or (256 if args.prior == "mvdream" and device.type == "cuda" else defaults.prior_size),
        gaussians=args.gaussians or defaults.gaussians,
        steps=args.steps or defaults.steps,
        warmup=defaults.warmup if args.warmup is None else args.warmup,
        compile=args.compile,
        channels_last=args.channels_last,
        viewer=args.viewer,
        prior=args.prior,
        perp_neg=args.perp_neg,
        cudnn_benchmark=not args.no_cudnn_benchmark,
        free_unused=not args.keep_unused,
        peft_toggles=args.peft_toggles,
    )
    for batch in batches:  # refuse bad values (render size, batch, counts) before any model loads
        try:
            train_config(settings, objectives[0], batch)
        except ValueError as error:
            parser.error(f"{error} (the trainer's --render-size is --resolution here, --batch-size is --batch)")
    one_process_each = device.type == "cpu" and not args.same_process and len(objectives) * len(batches) > 1
    return Plan(settings, objectives, batches, args.threads, args.json, one_process_each)


def free_device_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def single_configuration_argv(plan: Plan, objective_name: str, batch: int) -> list[str]:
    """This script's command line for one configuration of `plan`, run in this process (`--same-process`)."""
    settings = plan.settings
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--device",
        settings.device.type,
        "--dtype",
        settings.dtype,
        "--resolution",
        str(settings.resolution),
        "--prior-size",
        str(settings.prior_size),
        "--gaussians",
        str(settings.gaussians),
        "--steps",
        str(settings.steps),
        "--warmup",
        str(settings.warmup),
        "--objective",
        objective_name,
        "--batch",
        str(batch),
        "--prior",
        settings.prior,
        "--same-process",
        "--json",
    ]
    flags = {
        "--compile": settings.compile,
        "--channels-last": settings.channels_last,
        "--viewer": settings.viewer,
        "--perp-neg": settings.perp_neg,
        "--no-cudnn-benchmark": not settings.cudnn_benchmark,
        "--keep-unused": not settings.free_unused,
        "--peft-toggles": settings.peft_toggles,
    }
    argv += [flag for flag, on in flags.items() if on]
    return argv + ([] if plan.threads is None else ["--threads", str(plan.threads)])


def run_in_own_process(plan: Plan, objective_name: str, batch: int) -> dict[str, Any]:
    """One configuration in a fresh process, so that none inherits another's allocator state.

    On CPU, glibc's malloc adapts its mmap and trim thresholds to the largest blocks freed so far:
    after a batch-4 configuration, a batch-1 step page-faults less and runs ~25 % faster than in a
    fresh process (the state a real batch-1 run is in), which would flatter every later configuration.
    """
    completed = subprocess.run(
        single_configuration_argv(plan, objective_name, batch), stdout=subprocess.PIPE, text=True
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"bench: {objective_name} batch {batch} failed (exit status {completed.returncode}); see above"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_in_this_process(plan: Plan) -> Iterator[dict[str, Any]]:
    settings = plan.settings
    for objective_name in plan.objectives:
        note(f"{objective_name}: loading the {settings.model} prior on {settings.device}")
        models = build_models(settings, objective_name)
        for batch in plan.batches:
            note(f"{objective_name} batch {batch}: {settings.warmup} warm-up + 2 x {settings.steps} timed steps")
            yield bench_configuration(settings, models, objective_name, batch)
            free_device_memory(settings.device)
        del models
        free_device_memory(settings.device)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    plan = parse_args(argv)
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    if plan.one_process_each:
        records = (run_in_own_process(plan, objective_name, batch) for objective_name, batch in plan.configurations)
    else:
        records = run_in_this_process(plan)
    results = []
    for record in records:
        results.append(record)
        if plan.as_json:
            print(json.dumps(record), flush=True)
        else:
            print_table(record)
    return results


if __name__ == "__main__":
    main()
