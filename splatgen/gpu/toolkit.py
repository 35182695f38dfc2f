"""Finding an `nvcc` of torch's CUDA major, or making one from NVIDIA's pip packages usable.

`torch.utils.cpp_extension` (which gsplat's JIT build uses) needs a CUDA_HOME laid out like a
toolkit: `bin/nvcc`, `include/` (runtime, CUB/Thrust, cuBLAS... headers) and `lib64/libcudart.so`.
Candidates are tried in the order torch tries them (CUDA_HOME / CUDA_PATH, the `nvcc` on PATH,
`/usr/local/cuda`), but each one is checked: it must have those files and its nvcc must be of
torch's CUDA major. A wrapper script on PATH (`/usr/local/bin/nvcc` calling the real one) makes
torch guess `/usr/local`; the check skips it.

NVIDIA's pip wheels (`nvidia-cuda-nvcc`, `-crt`, `-cccl`, `-runtime`, `nvidia-nvvm` for CUDA 13;
`nvidia-cuda-nvcc-cu12`, `-cccl-cu12`, `-runtime-cu12` for CUDA 12) unpack into `nvidia/cu13/`
(CUDA 13) or one `nvidia/<component>/` folder each (CUDA 12) without `lib64/`, the unversioned
`libcudart.so`, or CUDA 13's `include/cccl` on the include path. `assemble_cuda_home` builds a
folder of symbolic links with the toolkit layout over them (cheap, idempotent, atomic).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NVCC_PIP_PACKAGES = {
    13: ("nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-cccl", "nvidia-cuda-runtime"),
    12: ("nvidia-cuda-nvcc-cu12", "nvidia-cuda-cccl-cu12", "nvidia-cuda-runtime-cu12"),
}
"""NVIDIA's pip packages that make a CUDA toolkit for building extensions, per CUDA major."""


@dataclass(frozen=True)
class Toolkit:
    home: Path  # what CUDA_HOME is set to
    version: str  # nvcc's release, "13.0"
    source: str  # where it was found: "CUDA_HOME", "PATH", "/usr/local/cuda", "pip"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def cache_root() -> Path:
    """splatgen's cache folder: $SPLATGEN_CACHE, default ~/.cache/splatgen."""
    return Path(os.environ.get("SPLATGEN_CACHE") or Path.home() / ".cache" / "splatgen")


def nvcc_pip_packages(cuda: str) -> list[str]:
    """pip requirements for an nvcc (plus headers) matching torch's CUDA version, e.g. "13.0"."""
    major, minor = (int(part) for part in cuda.split(".")[:2])
    if major not in NVCC_PIP_PACKAGES:
        raise ValueError(f"no pip packages known for CUDA {cuda} (known: {sorted(NVCC_PIP_PACKAGES)})")
    return [f"{name}=={major}.{minor}.*" for name in NVCC_PIP_PACKAGES[major]]


def nvcc_version(nvcc: Path) -> str | None:
    """nvcc's release ("13.0") from `nvcc --version`, or None if it does not run."""
    try:
        text = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+\.\d+)", text)
    return found.group(1) if found else None


def is_toolkit_layout(home: Path) -> bool:
    """The files torch's extension builder reads from CUDA_HOME."""
    lib = home / "lib64" if (home / "lib64").is_dir() else home / "lib"
    return (
        (home / "bin" / "nvcc").is_file()
        and (home / "include" / "cuda_runtime.h").is_file()
        and any(lib.glob("libcudart.so*"))
    )


def candidate_homes() -> list[tuple[str, Path]]:
    """Where torch would look for CUDA, in its order (each checked by `find_toolkit`)."""
    found: list[tuple[str, Path]] = []
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            found.append((variable, Path(os.environ[variable])))
    on_path = shutil.which("nvcc")
    if on_path:
        found.append(("PATH", Path(on_path).parent.parent))
        found.append(("PATH", Path(on_path).resolve().parent.parent))
    found.append(("/usr/local/cuda", Path("/usr/local/cuda")))
    return found


def find_toolkit(cuda: str) -> tuple[Toolkit | None, list[str]]:
    """The first installed toolkit of torch's CUDA major, and why the others were passed over."""
    major = int(cuda.split(".")[0])
    rejected: list[str] = []
    seen: set[Path] = set()
    for source, home in candidate_homes():
        if home in seen or not home.exists():
            continue
        seen.add(home)
        if not is_toolkit_layout(home):
            if (home / "bin" / "nvcc").exists():
                rejected.append(f"{home} ({source}) has nvcc but no include/cuda_runtime.h or lib64/libcudart.so")
            continue
        version = nvcc_version(home / "bin" / "nvcc")
        if version is None:
            rejected.append(f"{home}/bin/nvcc ({source}) does not run")
        elif int(version.split(".")[0]) != major:
            rejected.append(f"nvcc {version} at {home} ({source}) is not CUDA {major}")
        else:
            return Toolkit(home, version, source), rejected
    pip_home = pip_cuda_home(major)
    if pip_home is not None:
        version = nvcc_version(pip_home / "bin" / "nvcc")
        if version is not None and int(version.split(".")[0]) == major:
            return Toolkit(pip_home, version, "pip"), rejected
        rejected.append(f"the pip-installed nvcc ({pip_home}) is {version or 'not runnable'}")
    return None, rejected


def nvidia_package_dirs(search: list[str] | None = None) -> list[Path]:
    """Every `nvidia/` namespace folder on sys.path (where NVIDIA's pip wheels unpack)."""
    dirs = []
    for entry in search if search is not None else sys.path:
        candidate = Path(entry or ".") / "nvidia"
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs


def pip_toolkit_roots(nvidia: Path, major: int) -> list[Path] | None:
    """The component folders of a pip-installed toolkit under `nvidia/`, nvcc's first; None without nvcc."""
    unified = nvidia / f"cu{major}"
    if (unified / "bin" / "nvcc").is_file():  # CUDA 13+: one folder for every component
        return [unified]
    nvcc = nvidia / "cuda_nvcc"
    if major == 12 and (nvcc / "bin" / "nvcc").is_file():  # CUDA 12: one folder per component
        others = sorted(path for path in nvidia.iterdir() if path.is_dir() and path != nvcc)
        return [nvcc, *others]
    return None


def pip_cuda_home(major: int, search: list[str] | None = None) -> Path | None:
    """A CUDA_HOME over the pip-installed toolkit of this major (assembled on first use), or None."""
    for nvidia in nvidia_package_dirs(search):
        roots = pip_toolkit_roots(nvidia, major)
        if roots is not None:
            key = hashlib.sha1(str(nvidia.resolve()).encode()).hexdigest()[:10]
            return assemble_cuda_home(roots, cache_root() / "cuda" / f"cu{major}-{key}")
    return None


def _link_entries(source: Path, target: Path) -> None:
    """Symlink every entry of `source` into `target` unless `target` already has that name."""
    if not source.is_dir():
        return
    for entry in sorted(source.iterdir()):
        link = target / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(entry.resolve())


def assemble_cuda_home(roots: list[Path], dest: Path) -> Path:
    """A toolkit-shaped folder of symlinks over pip component folders (`roots[0]` holds nvcc).

        bin/        nvcc and its tools          nvvm/      cicc and libdevice
        include/    every component's headers, and CUDA 13's include/cccl/* (CUB, Thrust, libcu++)
        lib64/      every component's libraries, plus unversioned names (libcudart.so -> .so.13)
        lib -> lib64, targets/x86_64-linux/{include,lib} (where nvcc.profile looks)

    Rebuilt when the component folders change; written beside `dest` and renamed into place.
    """
    signature = json.dumps([str(root.resolve()) for root in roots] + [sorted(p.name for p in roots[0].glob("bin/*"))])
    stamp = dest / "splatgen-cuda-home.json"
    if stamp.is_file() and stamp.read_text() == signature and is_toolkit_layout(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        staging.chmod(0o755)
        for name in ("bin", "include", "lib64", "targets/x86_64-linux"):
            (staging / name).mkdir(parents=True)
        _link_entries(roots[0] / "bin", staging / "bin")
        if (roots[0] / "nvvm").is_dir():
            (staging / "nvvm").symlink_to((roots[0] / "nvvm").resolve())
        for root in roots:
            _link_entries(root / "include", staging / "include")
        for root in roots:
            _link_entries(root / "include" / "cccl", staging / "include")
            _link_entries(root / "lib", staging / "lib64")
            _link_entries(root / "lib64", staging / "lib64")
        for library in list((staging / "lib64").glob("lib*.so.*")):
            plain = staging / "lib64" / (library.name.split(".so.")[0] + ".so")
            if not plain.exists():
                plain.symlink_to(library.name)
        (staging / "lib").symlink_to("lib64")
        (staging / "targets" / "x86_64-linux" / "include").symlink_to("../../include")
        (staging / "targets" / "x86_64-linux" / "lib").symlink_to("../../lib64")
        (staging / "splatgen-cuda-home.json").write_text(signature)
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dest


def use_toolkit(toolkit: Toolkit) -> None:
    """Point torch's extension builder (and gsplat's toolkit check) at `toolkit`."""
    os.environ["CUDA_HOME"] = str(toolkit.home)
    extension_module = sys.modules.get("torch.utils.cpp_extension")
    if extension_module is not None:  # it reads CUDA_HOME once, at import
        extension_module.CUDA_HOME = str(toolkit.home)
