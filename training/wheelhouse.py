"""Wheels for a GPU box with no network: what it lacks for `make train` and `make merge`.

    python -m training.wheelhouse OUT_DIR [--python 3.12] [--cuda 130]      (make wheelhouse, online)

The box is assumed to hold Python, torch, transformers, tokenizers, accelerate, numpy, pandas and
pyarrow (as this project's lent GPU machines do); `requirements-gpu-box.txt` lists the rest, with
Axolotl's exact pins where the box's versions differ. Binary wheels are fetched for the box's
Python and Linux x86_64; the two source-only Axolotl contribs are built here (pure Python).
bitsandbytes ships a library for every CUDA from 11.8 and ROCm (43 MB); only the CPU one and those
for the box's CUDA major are kept, which holds the set under the 64 MB a device call carries.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from common.errors import UserError, run_command

LIST = Path("requirements-gpu-box.txt")
LIMIT_MB = 64
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)] + ["manylinux2014_x86_64"]
NATIVE_LIB = re.compile(r"libbitsandbytes_(\w+?)\.(so|dll|dylib)$")


def pins(path: Path = LIST) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.split("#")[0].strip()]


def fetch(pin: str, out: Path, python: str) -> None:
    """A binary wheel for the box, or a wheel built here from a pure-Python source release."""
    binary = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--python-version", python, "--implementation", "cp", "-d", str(out), pin]
    for platform in PLATFORMS:
        binary[-1:-1] = ["--platform", platform]
    if subprocess.run(binary, stderr=subprocess.DEVNULL).returncode == 0:
        return
    print(f"{pin}: no wheel on the index; building one from its source release")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), pin], check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def trim_cuda_libraries(wheel: Path, cuda_major: str) -> int:
    """Rewrite the bitsandbytes wheel with only its CPU library and those of the box's CUDA major
    (no other CUDA, ROCm or XPU builds), and its RECORD to match; returns the bytes saved."""
    before = wheel.stat().st_size
    keep = lambda name: not (m := NATIVE_LIB.search(name)) or m.group(1) == "cpu" or m.group(1).startswith(f"cuda{cuda_major}")
    trimmed = wheel.with_suffix(".trimmed")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as dst:
        names = [n for n in src.namelist() if keep(n)]
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        lines = []
        for name in names:
            if name == record:
                continue
            data = src.read(name)
            dst.writestr(src.getinfo(name), data)
            lines.append(_record_line(name, data))
        dst.writestr(record, "\n".join(lines + [f"{record},,"]) + "\n")
    trimmed.replace(wheel)
    return before - wheel.stat().st_size


def build(out: Path, python: str, cuda_major: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    for pin in pins():
        fetch(pin, out, python)
    for wheel in out.glob("bitsandbytes-*.whl"):
        saved = trim_cuda_libraries(wheel, cuda_major)
        print(f"{wheel.name}: kept its CPU and CUDA {cuda_major}.x libraries ({saved / 1e6:.0f} MB of others left out)")
    total = sum(w.stat().st_size for w in out.glob("*.whl")) / 1e6
    print(f"{out}/: {len(list(out.glob('*.whl')))} wheels, {total:.1f} MB")
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--python", default="3.12", help="the box's Python, major.minor")
    p.add_argument("--cuda", default="13", help="the CUDA major of the box's torch (torch.version.cuda)")
    args = p.parse_args(argv)
    return run_command(lambda: build_within_limit(args.out, args.python, args.cuda))


def build_within_limit(out: Path, python: str, cuda_major: str) -> None:
    try:
        total = build(out, python, cuda_major)
    except subprocess.CalledProcessError as e:
        raise UserError(f"{' '.join(e.cmd[-1:])}: pip failed (see above); is PyPI reachable?") from None
    if total > LIMIT_MB:
        raise UserError(f"{total:.1f} MB is over the {LIMIT_MB} MB a device call carries")


if __name__ == "__main__":
    sys.exit(main())
