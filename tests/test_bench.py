"""scripts/bench.py: its JSON line has what the docs promise, and the step it times is the product's.

The smoke test calls the script's `main` with tiny settings (one plain objective, one LoRA
objective; each configuration runs in its own process, as on CPU by default); the fencing test
checks that timing `splatgen.train.step.train_step` part by part (through its `region` hook)
leaves what the step computes unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch
from conftest import REPO

REQUIRED_KEYS = {
    "ms_per_step",
    "floor_ms",
    "floor_ratio",
    "peak_mem_mb",
    "device",
    "objective",
    "batch",
    "resolution",
    "num_gaussians",
    "parts",
    "torch",
    "commit",
}
STEP_PARTS = {"cameras", "render", "vae_encode", "unet_cfg", "objective", "backward", "optimizer", "densify"}
LORA_PARTS = {"unet_lora", "lora_train"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("splatgen_bench_script", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def positive_and_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_json_lines_have_the_promised_keys_and_sane_numbers(bench, tiny_models, one_torch_thread, capsys):
    argv = [
        "--device",
        "cpu",
        "--objective",
        "dsds",
        "vsd",
        "--batch",
        "1",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--gaussians",
        "300",
        "--resolution",
        "32",
        "--prior-size",
        "32",
        "--threads",
        "1",
        "--peft-toggles",
        "--keep-unused",
        "--json",
    ]
    bench.main(argv)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    records = [json.loads(line) for line in lines]
    assert [record["objective"] for record in records] == ["dsds", "vsd"]
    for record in records:
        assert REQUIRED_KEYS <= record.keys()
        assert record["device"] == "cpu" and record["batch"] == 1 and record["resolution"] == 32
        assert record["num_gaussians"] == 300 and record["torch"] == torch.__version__
        for key in ("ms_per_step", "floor_ms", "floor_ratio", "peak_mem_mb", "gaussians_per_s", "parts_sum_ms"):
            assert positive_and_finite(record[key]), (key, record[key])
        assert all(positive_and_finite(value) for value in record["parts"].values()), record["parts"]
        assert all(positive_and_finite(value) for value in record["floor_parts"].values()), record["floor_parts"]
        assert STEP_PARTS <= record["parts"].keys()
        switches = ("compile", "channels_last", "cudnn_benchmark", "free_unused", "peft_toggles")
        assert [record[name] for name in switches] == [False, False, True, False, True]  # through the subprocess
        assert math.isclose(record["floor_ms"], sum(record["floor_parts"].values()), rel_tol=1e-3, abs_tol=0.01)
        # the step does all of the floor's work and more; slack for a shared, noisy machine
        assert record["floor_ratio"] >= 0.7, record
    plain, lora = records
    assert not LORA_PARTS & plain["parts"].keys() and LORA_PARTS <= lora["parts"].keys()
    assert LORA_PARTS <= lora["floor_parts"].keys()


def tiny_step_settings(bench, **overrides):
    """One untimed-warm-up step of the tiny pipeline at 32 px with 50 Gaussians, on the CPU."""
    fields = dict(
        device=torch.device("cpu"),
        dtype="auto",
        resolution=32,
        prior_size=32,
        gaussians=50,
        steps=1,
        warmup=0,
        compile=False,
        channels_last=False,
        viewer=False,
    )
    return bench.BenchSettings(**(fields | overrides))


@pytest.mark.parametrize("objective_name", ["dsds", "vsd"])
def test_fenced_step_is_the_products_step_with_its_parts_timed(bench, tiny_models, one_torch_thread, objective_name):
    """The timed step is `train_step` itself: fencing its regions changes nothing it computes."""
    settings = tiny_step_settings(bench)
    config = bench.train_config(settings, objective_name, batch=2)
    models = bench.build_models(settings, objective_name)
    lora_before = models.lora_score.state_dict() if models.lora_score is not None else None
    plain = bench.build_bench_state(settings, models, config, REPO)
    plain.reset()
    bench.training_step(plain, bench.no_region)
    if models.lora_score is not None:  # one LoRA per prior: put it back for the second state
        models.lora_score.load_state_dict(lora_before)
    fenced = bench.build_bench_state(settings, models, config, REPO)
    fenced.reset()
    timer = bench.FencedTimer(settings.device)
    bench.training_step(fenced, timer)
    timer.end_step()
    assert plain.train.step == fenced.train.step == bench.BENCH_STEP + 1
    for key, value in plain.train.splats.items():
        assert torch.equal(value, fenced.train.splats[key]), key
    assert not torch.equal(plain.train.splats["means"], plain.initial_splats["means"])  # the step moved them
    assert torch.equal(plain.train.generator.get_state(), fenced.train.generator.get_state())
    assert STEP_PARTS | {"noise", "text", "finite_check"} <= timer.steps[0].keys()
    assert (LORA_PARTS <= timer.steps[0].keys()) == (objective_name == "vsd")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_on_the_sd21_architecture(bench, capsys):
    bench.main(
        [
            "--device",
            "cuda",
            "--objective",
            "dsds",
            "--batch",
            "1",
            "--steps",
            "2",
            "--warmup",
            "2",
            "--gaussians",
            "10000",
            "--json",
        ]
    )
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["prior"] == "sd21-base-random" and record["renderer"] == "gsplat" and record["resolution"] == 512
    assert positive_and_finite(record["ms_per_step"]) and positive_and_finite(record["floor_ms"])
    assert record["peak_mem_kind"] == "cuda_max_memory_allocated" and "syncs_per_step" in record
    assert record["syncs_outside_gsplat"] <= 3, record["sync_sites"]  # issue 10's goal for a D-SDS step


@pytest.mark.parametrize("prior, perp_neg", [("mvdream", False), ("sd", True)], ids=["mvdream", "perp-neg"])
def test_the_step_and_floor_with_view_groups_and_perp_neg(bench, tiny_models, one_torch_thread, prior, perp_neg):
    """`--prior mvdream` / `--prompts.perp-neg`: the timed step runs the product's step, the floor's UNet batch is the step's."""
    settings = tiny_step_settings(bench, prior=prior, perp_neg=perp_neg)
    models = bench.build_models(settings, "dsds")
    assert bench.views_per_group(models.prior) == (4 if prior == "mvdream" else 1)
    state = bench.build_bench_state(settings, models, bench.train_config(settings, "dsds", batch=4), REPO)
    batches: list[int] = []
    original = models.prior.predict_noise
    models.prior.predict_noise = lambda noisy, *args, **kwargs: (
        batches.append(noisy.shape[0]) or original(noisy, *args, **kwargs)
    )
    state.reset()
    bench.training_step(state, bench.no_region)
    bench.floor_pieces(state)["unet_cfg"]()
    expected = 16 if perp_neg else 8  # [view, negative] (+ Perp-Neg's two negatives) x 4 views
    assert batches == [expected, expected] and state.train.step == bench.BENCH_STEP + 1
