"""`python -m splatgen.gpu report | build | nvcc-packages CUDA` (used by scripts/setup.sh and gpu_check.sh).

report          driver, GPUs, torch and its CUDA, the nvcc found, the kernel cache and whether it is built
build           build gsplat's kernels into the cache (exit 1 with one line if they do not build)
nvcc-packages   the pip requirements of an nvcc for a CUDA version ("13.0"), one per line
"""

from __future__ import annotations

import sys


def report() -> int:
    import torch

    from splatgen.gpu.driver import DriverQueryFailed, query_driver
    from splatgen.gpu.kernels import kernels_built, use_kernel_cache
    from splatgen.gpu.toolkit import find_toolkit

    try:
        driver = query_driver()
        driver_text = "none (no nvidia-smi)" if driver is None else f"{driver.version}, GPUs: {', '.join(driver.gpus)}"
    except DriverQueryFailed as error:
        driver_text = f"nvidia-smi failed: {error}"
    lines = {
        "driver": driver_text,
        "torch": f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'}), sees GPU: {torch.cuda.is_available()}",
    }
    if torch.cuda.is_available():
        lines["gpu"] = f"{torch.cuda.get_device_name(0)} (sm_{''.join(map(str, torch.cuda.get_device_capability(0)))})"
    if torch.version.cuda:
        toolkit, rejected = find_toolkit(torch.version.cuda)
        lines["nvcc"] = (
            f"{toolkit.version} at {toolkit.home} ({toolkit.source})"
            if toolkit
            else f"none of CUDA {torch.version.cuda}"
        ) + (f"; passed over: {'; '.join(rejected)}" if rejected else "")
    cache = use_kernel_cache()
    lines["gsplat kernels"] = f"{'built' if kernels_built(cache) else 'not built'} in {cache}"
    for key, value in lines.items():
        print(f"{key:>15}: {value}")
    return 0


def build() -> int:
    import torch

    from splatgen.errors import SplatgenError
    from splatgen.gpu.driver import DriverQueryFailed, query_driver
    from splatgen.gpu.kernels import load_gsplat_kernels
    from splatgen.gpu.preflight import resolve_device

    try:
        no_gpu = not torch.cuda.is_available() and query_driver() is None
    except DriverQueryFailed:
        no_gpu = True
    if no_gpu:
        print("gpu: no NVIDIA GPU here; gsplat's CUDA kernels are built on a GPU machine", file=sys.stderr)
        return 1
    try:
        resolve_device("cuda")  # a driver/torch mismatch is named before anything else
        status = load_gsplat_kernels(build=True, announce=lambda text: print(f"gpu: {text}", flush=True))
    except SplatgenError as error:
        print(f"gpu: {error}", file=sys.stderr)
        return 1
    how = (
        f"built in {status.seconds:.0f} s" if status.built_now else f"already built (loaded in {status.seconds:.1f} s)"
    )
    print(f"gpu: gsplat's CUDA kernels {how}, cache {status.cache_dir}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["report"]:
        return report()
    if argv[:1] == ["build"]:
        return build()
    if argv[:1] == ["nvcc-packages"] and len(argv) == 2:
        from splatgen.gpu.toolkit import nvcc_pip_packages

        print("\n".join(nvcc_pip_packages(argv[1])))
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
