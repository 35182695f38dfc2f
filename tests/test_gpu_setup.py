"""The GPU path on a CPU machine: driver -> torch build table, nvcc discovery and the pip CUDA_HOME,
the kernel cache, and the fail-fast checks (driver/torch mismatch, missing kernels), each simulated
with real probes pointed at fake nvidia-smi / nvcc programs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

import splatgen.gpu.preflight as preflight
from splatgen.cli import main, parse_train_args
from splatgen.gpu import toolkit
from splatgen.gpu.driver import (
    DriverInfo,
    DriverQueryFailed,
    min_driver_for_cuda,
    query_driver,
    torch_build_for_driver,
)
from splatgen.gpu.kernels import KernelsUnavailable, default_cache_dir, kernels_built, load_gsplat_kernels

H200 = "580.159.03, NVIDIA H200"
OLD_A100 = "535.104.05, NVIDIA A100-SXM4-80GB"


def fake_program(folder: Path, name: str, output: str, status: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text(f"#!/bin/sh\ncat <<'END'\n{output}\nEND\nexit {status}\n")
    program.chmod(0o755)
    return program


def fake_nvcc(folder: Path, release: str) -> Path:
    return fake_program(folder, "nvcc", f"Cuda compilation tools, release {release}, V{release}.88")


@pytest.fixture
def no_cuda(monkeypatch):
    """torch sees no GPU (also on a GPU machine, so these simulations mean the same everywhere)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def nvidia_smi_on_path(tmp_path, monkeypatch):
    """Put a fake nvidia-smi first on PATH; returns a function setting what it prints."""

    def install(output: str, status: int = 0) -> None:
        fake_program(tmp_path / "bin", "nvidia-smi", output, status)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    return install


# ---------------------------------------------------------------- the driver and the torch build


@pytest.mark.parametrize(
    ("branch", "cuda", "index"),
    [
        (580, "13.0", None),
        (590, "13.0", None),
        (575, "12.8", "https://download.pytorch.org/whl/cu128"),
        (550, "12.6", "https://download.pytorch.org/whl/cu126"),
        (525, "12.6", "https://download.pytorch.org/whl/cu126"),
    ],
)
def test_driver_picks_the_newest_torch_build_it_runs(branch, cuda, index):
    build = torch_build_for_driver(branch)
    assert (build.cuda, build.index_url) == (cuda, index)
    assert branch >= min_driver_for_cuda(build.cuda)  # NVIDIA's minor-version-compatibility floor


def test_driver_older_than_every_build_gets_none():
    assert torch_build_for_driver(520) is None and min_driver_for_cuda("13.0") == 580


def test_nvidia_smi_is_parsed(nvidia_smi_on_path):
    nvidia_smi_on_path(H200 + "\n" + H200)
    assert query_driver() == DriverInfo("580.159.03", ("NVIDIA H200", "NVIDIA H200"))
    assert query_driver(which=lambda name: None) is None
    nvidia_smi_on_path("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", status=9)
    with pytest.raises(DriverQueryFailed, match="nvidia-smi failed"):
        query_driver()


def test_setup_reads_the_torch_index_for_the_driver(nvidia_smi_on_path):
    """What scripts/setup.sh runs with the system Python before torch exists."""
    nvidia_smi_on_path(OLD_A100)
    script = [sys.executable, str(REPO / "splatgen" / "gpu" / "driver.py"), "torch-index"]
    answer = subprocess.run(script, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
    assert answer.stdout.split()[:3] == ["https://download.pytorch.org/whl/cu126", "12.6", "535.104.05"]
    nvidia_smi_on_path("470.82.01, Tesla K80")
    too_old = subprocess.run(script, capture_output=True, text=True)
    assert too_old.returncode == 3 and len(too_old.stderr.strip().splitlines()) == 1
    assert "470.82.01" in too_old.stderr and "whl/cpu" in too_old.stderr


# ---------------------------------------------------------------- nvcc and the pip CUDA_HOME


def fake_toolkit(home: Path, release: str) -> Path:
    fake_nvcc(home / "bin", release)
    (home / "include").mkdir(parents=True)
    (home / "include" / "cuda_runtime.h").write_text("")
    (home / "lib64").mkdir()
    (home / "lib64" / f"libcudart.so.{release.split('.')[0]}").write_text("")
    return home


def test_toolkit_of_the_wrong_major_or_layout_is_passed_over(tmp_path, monkeypatch):
    wrapper_home = tmp_path / "local"  # like /usr/local/bin/nvcc, a wrapper script: no headers beside it
    fake_nvcc(wrapper_home / "bin", "13.0")
    cuda12 = fake_toolkit(tmp_path / "cuda-12.4", "12.4")
    cuda13 = fake_toolkit(tmp_path / "cuda-13.0", "13.0")
    monkeypatch.setattr(toolkit, "pip_cuda_home", lambda major: None)
    candidates = [("PATH", wrapper_home), ("CUDA_HOME", cuda12), ("/usr/local/cuda", cuda13)]
    monkeypatch.setattr(toolkit, "candidate_homes", lambda: candidates)
    found, rejected = toolkit.find_toolkit("13.0")
    assert found == toolkit.Toolkit(cuda13, "13.0", "/usr/local/cuda")
    assert any("has nvcc but no include" in reason for reason in rejected)
    assert any("nvcc 12.4" in reason and "not CUDA 13" in reason for reason in rejected)
    monkeypatch.setattr(toolkit, "candidate_homes", lambda: candidates[:2])
    assert toolkit.find_toolkit("13.0")[0] is None


def pip_cuda13(site: Path) -> Path:
    """The layout NVIDIA's CUDA 13 wheels unpack to (nvidia-cuda-nvcc, -crt, -cccl, -runtime, nvidia-nvvm)."""
    root = site / "nvidia" / "cu13"
    fake_nvcc(root / "bin", "13.0")
    (root / "nvvm" / "bin").mkdir(parents=True)
    for header in ("cuda_runtime.h", "crt/host_config.h", "cccl/cub/cub.cuh", "cccl/thrust/sort.h", "cublas_v2.h"):
        (root / "include" / header).parent.mkdir(parents=True, exist_ok=True)
        (root / "include" / header).write_text("")
    (root / "lib").mkdir()
    for library in ("libcudart.so.13", "libcublas.so.13", "libcudadevrt.a"):
        (root / "lib" / library).write_text("")
    return site


def test_pip_cuda13_wheels_become_a_toolkit_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLATGEN_CACHE", str(tmp_path / "cache"))
    site = pip_cuda13(tmp_path / "site")
    home = toolkit.pip_cuda_home(13, search=[str(site)])
    assert home is not None and toolkit.is_toolkit_layout(home)
    assert (home / "lib64" / "libcudart.so").resolve() == (site / "nvidia/cu13/lib/libcudart.so.13").resolve()
    assert (home / "include" / "cub" / "cub.cuh").is_file()  # CUDA 13 keeps CUB/Thrust under include/cccl
    assert (home / "include" / "crt" / "host_config.h").is_file() and (home / "nvvm" / "bin").is_dir()
    assert (home / "targets" / "x86_64-linux" / "include" / "cuda_runtime.h").is_file()
    assert toolkit.nvcc_version(home / "bin" / "nvcc") == "13.0"
    stamp = (home / "splatgen-cuda-home.json").stat().st_mtime_ns
    assert toolkit.pip_cuda_home(13, search=[str(site)]) == home  # idempotent: not rebuilt
    assert (home / "splatgen-cuda-home.json").stat().st_mtime_ns == stamp


def test_pip_cuda12_components_are_merged(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLATGEN_CACHE", str(tmp_path / "cache"))
    nvidia = tmp_path / "site" / "nvidia"
    fake_nvcc(nvidia / "cuda_nvcc" / "bin", "12.8")
    for component, header in (
        ("cuda_runtime", "cuda_runtime.h"),
        ("cuda_cccl", "cub/cub.cuh"),
        ("cublas", "cublas_v2.h"),
    ):
        (nvidia / component / "include" / header).parent.mkdir(parents=True, exist_ok=True)
        (nvidia / component / "include" / header).write_text("")
    (nvidia / "cuda_runtime" / "lib").mkdir()
    (nvidia / "cuda_runtime" / "lib" / "libcudart.so.12").write_text("")
    home = toolkit.pip_cuda_home(12, search=[str(tmp_path / "site")])
    assert toolkit.is_toolkit_layout(home)
    assert all((home / "include" / name).is_file() for name in ("cuda_runtime.h", "cub/cub.cuh", "cublas_v2.h"))
    assert toolkit.pip_cuda_home(13, search=[str(tmp_path / "site")]) is None  # no CUDA 13 nvcc there


def test_nvcc_pip_packages_match_torchs_cuda():
    assert toolkit.nvcc_pip_packages("13.0") == [
        "nvidia-cuda-nvcc==13.0.*",
        "nvidia-cuda-crt==13.0.*",
        "nvidia-nvvm==13.0.*",
        "nvidia-cuda-cccl==13.0.*",
        "nvidia-cuda-runtime==13.0.*",
    ]
    assert toolkit.nvcc_pip_packages("12.6")[0] == "nvidia-cuda-nvcc-cu12==12.6.*"


# ---------------------------------------------------------------- the kernel cache


def test_kernel_cache_is_persistent_and_per_torch_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLATGEN_CACHE", str(tmp_path))
    expected = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__.split('+')[0]}_cu"
    assert default_cache_dir().parent == tmp_path / "torch_extensions"
    assert default_cache_dir().name.startswith(expected)
    assert not kernels_built(tmp_path / "ext")
    (tmp_path / "ext" / "gsplat_cuda").mkdir(parents=True)
    (tmp_path / "ext" / "gsplat_cuda" / "gsplat_cuda.so").write_text("")
    assert kernels_built(tmp_path / "ext")


def test_no_compile_is_attempted_without_a_gpu(no_cuda):
    with pytest.raises(KernelsUnavailable, match="--render-backend torch"):
        load_gsplat_kernels()
    assert "gsplat.cuda._backend" not in sys.modules


# ---------------------------------------------------------------- fail fast in `splatgen train`


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load the LM or the prior fails the test: the checks must come first."""
    from splatgen.train import assemble

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the GPU checks")

    monkeypatch.setattr(assemble, "load_prior", refuse)
    monkeypatch.setattr(assemble, "prepare_view_prompts", refuse)


def train_error(capsys, tmp_path, *flags) -> str:
    out = tmp_path / "run"
    status = main(["train", "--preset", "smoke", "--prompt", "a red apple", "--out", str(out), *flags])
    text = capsys.readouterr().out.strip()
    assert status == 2 and not out.exists(), text  # one-line error, nothing left behind
    assert len(text.splitlines()) == 1 and "Traceback" not in text
    return " ".join(text.split())


def test_gpu_seen_by_nvidia_smi_but_not_torch_stops_with_the_mismatch(
    capsys, tmp_path, monkeypatch, nvidia_smi_on_path, no_model_loads, no_cuda
):
    nvidia_smi_on_path(OLD_A100)
    monkeypatch.setattr(torch.version, "cuda", "13.0")  # PyPI's torch: CUDA 13.0, needs r580+
    text = train_error(capsys, tmp_path, "--device", "auto")
    assert "NVIDIA A100-SXM4-80GB (driver 535.104.05)" in text and "CUDA 13.0, which needs driver >= 580" in text
    assert "whl/cu126" in text and "--device cpu" in text
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only torch on a GPU machine
    assert "is a CPU-only build" in train_error(capsys, tmp_path, "--device", "cuda")


def test_device_cuda_without_any_gpu_is_one_line(no_cuda):
    with pytest.raises(preflight.GpuUnavailable, match="no NVIDIA GPU here"):
        preflight.resolve_device("cuda", probe=lambda: None)
    assert preflight.resolve_device("auto", probe=lambda: None) == torch.device("cpu")


def test_nvidia_smi_without_a_gpu_still_trains_on_cpu(nvidia_smi_on_path, no_cuda):
    nvidia_smi_on_path("No devices were found", status=6)
    assert preflight.resolve_device("auto") == torch.device("cpu")


def test_gsplat_backend_on_cpu_is_one_line(capsys, tmp_path, no_model_loads):
    text = train_error(capsys, tmp_path, "--device", "cpu", "--render-backend", "gsplat")
    assert "--render-backend gsplat needs a CUDA GPU" in text and "--render-backend torch" in text


def test_missing_kernels_without_a_matching_nvcc_stop_before_models_load(capsys, tmp_path, monkeypatch, no_model_loads):
    """A CUDA machine simulated: torch "sees" a GPU; the only nvcc is CUDA 12.4 and no pip nvcc is there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    cuda12 = fake_toolkit(tmp_path / "cuda-12.4", "12.4")
    monkeypatch.setattr(toolkit, "candidate_homes", lambda: [("CUDA_HOME", cuda12)])
    monkeypatch.setattr(toolkit, "pip_cuda_home", lambda major: None)
    for backend in ("auto", "gsplat"):
        text = train_error(capsys, tmp_path, "--render-backend", backend)
        assert "gsplat's CUDA kernels are not built" in text and "nvcc 12.4" in text
        assert "nvidia-cuda-nvcc==13.0.*" in text and "--render-backend torch" in text
    assert "gsplat.cuda._backend" not in sys.modules


def test_missing_build_tools_are_named(capsys, tmp_path, monkeypatch, no_model_loads):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    cuda13 = fake_toolkit(tmp_path / "cuda-13.0", "13.0")
    monkeypatch.setattr(toolkit, "candidate_homes", lambda: [("CUDA_HOME", cuda13)])
    monkeypatch.setattr("splatgen.gpu.kernels.missing_build_tools", lambda: ["ninja (pip install ninja)"])
    monkeypatch.delenv("CUDA_HOME", raising=False)  # restored after the test (the check sets it)
    text = train_error(capsys, tmp_path)
    assert "needs ninja (pip install ninja)" in text and "--render-backend torch" in text
    assert os.environ["CUDA_HOME"] == str(cuda13)


def test_setup_refuses_a_driver_too_old_before_touching_anything(tmp_path, nvidia_smi_on_path):
    nvidia_smi_on_path("470.82.01, Tesla K80")
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    (copy / "splatgen" / "gpu").mkdir(parents=True)
    for name in ("scripts/setup.sh", "splatgen/gpu/driver.py"):
        (copy / name).write_text((REPO / name).read_text())
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "driver 470.82.01 is older than every CUDA build" in result.stderr
    assert not (copy / ".venv").exists()


# ---------------------------------------------------------------- scripts/gpu_check.sh on a CPU machine


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the check runs for real (minutes)")
def test_gpu_check_runs_end_to_end_on_cpu_with_cuda_stages_skipped(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        line.split()[0]: line.split(None, 3)[1:] for line in (tmp_path / "summary.txt").read_text().splitlines()[2:]
    }
    assert list(rows) == ["env", "install", "build", "parity", "precision", "bench", "train", "gpu-tests"]
    assert rows["env"][0] == "ok" and "sees GPU: False" in rows["env"][2]
    assert rows["install"][0] == "ok"
    for stage in ("build", "parity", "bench", "train", "gpu-tests"):
        assert rows[stage][0] == "skipped" and "no CUDA GPU" in rows[stage][2], rows[stage]
    assert rows["precision"][0] == "skipped"
    assert "===== build" in (tmp_path / "gpu_check.log").read_text() and result.stdout.startswith("splatgen gpu_check")


def test_gpu_check_train_stage_flags_parse_and_validate():
    script = REPO / "scripts" / "gpu_check.sh"
    read = f'eval "$(sed -n "/^TRAIN_ARGS=(/,/)$/p" {script})"; printf "%s\\n" "${{TRAIN_ARGS[@]}}"'
    args = subprocess.run(["bash", "-c", read], capture_output=True, text=True, check=True).stdout.splitlines()
    config = parse_train_args(args)
    config.validate()
    assert (config.steps, config.batch_size, config.render_size, config.prior.model) == (
        100,
        4,
        512,
        "sd21-base-random",
    )
    start, stop = config.steps * config.densify.start_fraction, config.steps * config.densify.stop_fraction
    refinements = [step for step in range(0, config.steps, config.densify.refine_every) if start <= step < stop]
    assert len(refinements) >= 2, refinements  # the run refines
    assert config.checkpoint_every < config.steps
