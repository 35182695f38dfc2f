"""The NVIDIA driver (read from `nvidia-smi`) and which CUDA build of torch it can run.

Standard library only: `scripts/setup.sh` runs this file with the system Python before torch is
installed (`python3 splatgen/gpu/driver.py torch-index`).

Minimum drivers are NVIDIA's "CUDA minor version compatibility" floors (CUDA Toolkit release
notes, table "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version
Compatibility", https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/): a driver of at least
the floor runs every toolkit of that CUDA major.

    driver      torch build                                   CUDA
    >= 580      PyPI's default wheel                          13.0
    570-579     https://download.pytorch.org/whl/cu128        12.8
    525-569     https://download.pytorch.org/whl/cu126        12.6
    < 525       none (update the driver, or train on the CPU)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

PYTORCH_INDEX = "https://download.pytorch.org/whl"
MIN_DRIVER_FOR_CUDA_MAJOR = {13: 580, 12: 525, 11: 450}
"""Driver branch from which a CUDA major runs (minor version compatibility)."""


@dataclass(frozen=True)
class TorchBuild:
    """One CUDA build of torch: where pip gets it and the driver branch it needs."""

    cuda: str  # "13.0"
    min_driver: int  # driver branch, e.g. 580
    index_url: str | None  # None: PyPI's default wheel

    @property
    def tag(self) -> str:
        return "cu" + self.cuda.replace(".", "")


TORCH_BUILDS = (
    TorchBuild("13.0", 580, None),
    TorchBuild("12.8", 570, f"{PYTORCH_INDEX}/cu128"),
    TorchBuild("12.6", 525, f"{PYTORCH_INDEX}/cu126"),
)
"""Newest first; the first whose `min_driver` the driver meets is chosen."""


@dataclass(frozen=True)
class DriverInfo:
    """What `nvidia-smi` reports: the driver version and the GPUs it sees."""

    version: str  # "580.159.03"
    gpus: tuple[str, ...]  # ("NVIDIA H200",)

    @property
    def branch(self) -> int:
        """The driver's major version (its branch: 535, 550, 570, 580 ...)."""
        return int(self.version.split(".")[0])


class DriverQueryFailed(RuntimeError):
    """nvidia-smi exists but did not answer (no GPU visible, driver not loaded)."""


Runner = Callable[[list[str]], str]


def _run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout


def query_driver(run: Runner = _run, which: Callable[[str], str | None] = shutil.which) -> DriverInfo | None:
    """The driver and GPUs from `nvidia-smi`; None when there is no nvidia-smi (no NVIDIA driver).

    Raises `DriverQueryFailed` when nvidia-smi is there but fails or lists no GPU.
    """
    if which("nvidia-smi") is None:
        return None
    try:
        text = run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"])
    except (OSError, subprocess.SubprocessError) as error:
        raise DriverQueryFailed(
            f"nvidia-smi failed ({type(error).__name__}: {' '.join(str(error).split())})"
        ) from error
    rows = [[part.strip() for part in line.split(",", 1)] for line in text.splitlines() if line.strip()]
    rows = [row for row in rows if len(row) == 2 and re.match(r"^\d+\.\d+", row[0])]
    if not rows:
        raise DriverQueryFailed(f"nvidia-smi listed no GPU ({' '.join(text.split())[:200] or 'empty output'})")
    return DriverInfo(version=rows[0][0], gpus=tuple(name for _, name in rows))


def torch_build_for_driver(branch: int) -> TorchBuild | None:
    """The newest CUDA build of torch that a driver of this branch runs (None: the driver is too old)."""
    for build in TORCH_BUILDS:
        if branch >= build.min_driver:
            return build
    return None


def min_driver_for_cuda(cuda: str) -> int | None:
    """The driver branch a CUDA version ("13.0", "12.8") needs, or None for an unknown major."""
    return MIN_DRIVER_FOR_CUDA_MAJOR.get(int(cuda.split(".")[0]))


def main(argv: list[str]) -> int:
    """`driver.py torch-index`: print the pip index for this machine's driver ("pypi" for PyPI's default).

    Exit 3 with one line on stderr when the driver runs no CUDA build of torch; exit 4 when nvidia-smi fails.
    """
    if argv[:1] != ["torch-index"]:
        print("usage: driver.py torch-index", file=sys.stderr)
        return 2
    try:
        driver = query_driver()
    except DriverQueryFailed as error:
        print(f"setup: {error}", file=sys.stderr)
        return 4
    if driver is None:
        print("setup: no nvidia-smi on this machine", file=sys.stderr)
        return 4
    build = torch_build_for_driver(driver.branch)
    if build is None:
        oldest = TORCH_BUILDS[-1]
        print(
            f"setup: NVIDIA driver {driver.version} is older than every CUDA build of torch "
            f"(CUDA {oldest.cuda} needs driver >= {oldest.min_driver}); update the driver, or install the CPU build "
            f"with SPLATGEN_TORCH_INDEX={PYTORCH_INDEX}/cpu",
            file=sys.stderr,
        )
        return 3
    print(f"{build.index_url or 'pypi'} {build.cuda} {driver.version} {driver.gpus[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
