#!/usr/bin/env bash
# Download the wheels an offline GPU machine needs to run scripts/gpu_check.sh: splatgen's dependencies
# (pyproject.toml, plus pytest-timeout) and everything they pull in, minus what that machine already has.
#
#   bash scripts/make_wheelhouse.sh                        # into .whl/, for Python 3.12 manylinux x86_64
#   bash scripts/make_wheelhouse.sh DIR --present FILE     # FILE: the target's `pip list --format=freeze`
#
# The default present list is scripts/wheelhouse-present.txt: the packages of the H200 image this project's
# checks run on (torch 2.11+cu130, transformers, accelerate, safetensors, peft, ninja, pytest ...). A present
# package is trusted to satisfy the requirement (its version is not compared). imageio-ffmpeg (a 65 MiB
# ffmpeg binary) is left out too: without it the turntable step writes views.png and no video
# (SPLATGEN_WHEELHOUSE_SKIP, space-separated, sets what is left out). Requirements are followed
# transitively (markers evaluated for the target), one wheel per name, binary wheels only. Fails if the
# wheelhouse is over 60 MiB. Copy the folder next to the checkout (or name it in the device tool's carry)
# and gpu_check.sh installs it with `pip install --no-index --no-deps --target .gpu-check-site`.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=".whl"
[[ $# -gt 0 && $1 != --* ]] && dest="$1" && shift
present="scripts/wheelhouse-present.txt"
[[ "${1:-}" == --present ]] && present="$2"
python="${PYTHON:-python3}"
mkdir -p "$dest"

"$python" - "$dest" "$present" "${SPLATGEN_WHEELHOUSE_SKIP-imageio-ffmpeg}" <<'EOF'
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

dest, present_file, skip = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split()
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
          "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix"}
LIMIT_MIB = 60

present = {canonicalize_name(re.split(r"[=<>!~ ]", line.strip())[0])
           for line in present_file.read_text().splitlines() if line.strip() and not line.startswith("#")}
present |= {canonicalize_name(name) for name in skip}
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
wanted = [Requirement(text) for text in project["dependencies"]] + [Requirement("pytest-timeout>=2.3")]


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({**TARGET, "extra": ""})


def download(requirement: Requirement) -> Path:
    before = set(dest.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3",
               "--abi", "none", *[f"--platform={name}" for name in PLATFORMS], "-d", str(dest), str(requirement)]
    subprocess.run(command, check=True)
    name = canonicalize_name(requirement.name)
    for wheel in sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob("*.whl")):
        if canonicalize_name(wheel.name.split("-")[0]) == name:
            return wheel
    raise SystemExit(f"make_wheelhouse: pip downloaded no wheel for {requirement}")


def requirements_of(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]


queue, seen, wheels = [r for r in wanted if applies(r)], set(), {}
while queue:
    requirement = queue.pop(0)
    name = canonicalize_name(requirement.name)
    if name in seen or name in present:
        continue
    seen.add(name)
    wheels[name] = download(Requirement(f"{requirement.name}{requirement.specifier}"))
    queue += [r for r in requirements_of(wheels[name]) if applies(r)]

for wheel in dest.glob("*.whl"):  # one version of each name: drop leftovers of earlier runs
    if wheel not in wheels.values():
        wheel.unlink()
total = sum(wheel.stat().st_size for wheel in wheels.values()) / 2**20
for name, wheel in sorted(wheels.items()):
    print(f"  {wheel.stat().st_size / 2**20:6.1f} MiB  {wheel.name}")
print(f"make_wheelhouse: {len(wheels)} wheels, {total:.1f} MiB in {dest} (left out: {len(present)} names present"
      f"{', and ' + ' '.join(skip) if skip else ''})")
if total > LIMIT_MIB:
    raise SystemExit(f"make_wheelhouse: {total:.1f} MiB is over the {LIMIT_MIB} MiB the device machine takes")
EOF
