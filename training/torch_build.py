"""Install the torch build this machine can run: the CUDA build its NVIDIA driver supports, or
the CPU build where there is no NVIDIA GPU. Standard library only: it runs before the venv has
anything in it.

    python3 -m training.torch_build install VENV_PYTHON [cpu|cu126|cu128|cu130]

torch 2.13.0 from PyPI on Linux is the CUDA 13.0 build, which needs driver 580 or newer; older
drivers need a CUDA 12 build from download.pytorch.org. CUDA 12 builds run on any driver from 525
on (CUDA's minor-version compatibility).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from common.errors import UserError, run_command

BUILDS = ("cpu", "cu126", "cu128", "cu130")
# Oldest driver major each CUDA build runs on, newest build first (NVIDIA's CUDA release notes).
DRIVER_RULES = ((580, "cu130"), (570, "cu128"), (525, "cu126"))
INDEX = "https://download.pytorch.org/whl/{build}"


def driver() -> str | None:
    """The NVIDIA driver version nvidia-smi reports, or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1]
    return first[0].strip() if out.returncode == 0 and first else None


def choose(driver_version: str | None, forced: str | None = None) -> str:
    """The build for this driver (None: no NVIDIA GPU), unless TORCH_CUDA forces one."""
    if forced:
        if forced not in BUILDS:
            raise UserError(f"TORCH_CUDA must be one of {', '.join(BUILDS)}, got {forced!r}")
        return forced
    if driver_version is None:
        return "cpu"
    m = re.match(r"(\d+)", driver_version)
    if not m:
        raise UserError(f"cannot read the NVIDIA driver version {driver_version!r}; set TORCH_CUDA=cu126|cu128|cu130")
    major = int(m.group(1))
    for oldest, build in DRIVER_RULES:
        if major >= oldest:
            return build
    raise UserError(f"NVIDIA driver {driver_version} is older than 525, the oldest any torch 2.13 CUDA build "
                     "runs on: update the driver (580+ for CUDA 13.0), or set TORCH_CUDA=cpu")


def pip_attempts(build: str, version: str, platform: str = sys.platform) -> list[list[str]]:
    """pip arguments to try in order. The CPU build is first looked for where pip already looks (a
    local wheel or mirror), so an offline machine that holds it never waits on the network."""
    pin = f"torch=={version}"
    if platform != "linux" or build == "cu130":
        return [[pin]]  # PyPI: CPU (macOS, Windows) or the CUDA 13.0 build (Linux)
    exact = f"{pin}+{build}"
    attempts = [["--extra-index-url", INDEX.format(build=build), exact]]
    return [[exact]] + attempts if build == "cpu" else attempts


def installed_build(python: str) -> str | None:
    """The build of the torch in ``python``'s environment (cpu, cu128, ...), or None without one."""
    probe = "import torch; v = torch.version.cuda; print('cpu' if v is None else 'cu' + v.replace('.', ''))"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = done.stdout.strip()
    return found if done.returncode == 0 and found else None


def install(python: str, forced: str | None, requirements: Path = Path("requirements.txt")) -> None:
    pins = re.findall(r"^torch==(\S+)", requirements.read_text(encoding="utf-8"), re.M)
    if not pins:
        raise UserError(f"{requirements} pins no torch==<version>")
    found = driver()
    build = choose(found, forced)
    why = f"TORCH_CUDA={forced}" if forced else (f"NVIDIA driver {found}" if found else "no NVIDIA driver")
    print(f"torch {pins[0]}: the {build} build ({why}; TORCH_CUDA=cpu|cu126|cu128|cu130 chooses another)")
    attempts = pip_attempts(build, pins[0])
    present = installed_build(python)
    if present and present != build:  # pip would keep it: `torch==2.13.0` is met by 2.13.0+cpu too
        print(f"replacing the {present} build of torch in {python}")
        subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "torch"], check=False)
    for i, args in enumerate(attempts):
        last = i == len(attempts) - 1
        done = subprocess.run([python, "-m", "pip", "install", "--quiet", *args],
                              stderr=None if last else subprocess.DEVNULL)
        if done.returncode == 0:
            return
    raise UserError(f"could not install the {build} build of torch {pins[0]} (see pip's message above)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "install":
        print(__doc__, file=sys.stderr)
        return 2
    return run_command(lambda: install(args[1], args[2] if len(args) == 3 and args[2] else None))


if __name__ == "__main__":
    sys.exit(main())
