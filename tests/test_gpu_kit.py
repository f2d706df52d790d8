"""The GPU kit: the torch build for the driver, and `make gpu-check` (run here with TINY=1, the
same script on the CPU with the tiny model, so it cannot rot)."""
import os
import subprocess
import sys

import pytest
from helpers import REPO

from common.errors import UserError
from common.files import replace_section
from training import estimate, gpu_check
from training.torch_build import choose, pip_attempts


@pytest.mark.parametrize("driver, build", [(None, "cpu"), ("580.159.04", "cu130"), ("590.1", "cu130"),
                                           ("575.51.03", "cu128"), ("570.86.15", "cu128"), ("560.35.03", "cu126"),
                                           ("535.230.02", "cu126"), ("525.60.13", "cu126")])
def test_torch_build_follows_the_driver(driver, build):
    assert choose(driver) == build


def test_torch_build_refusals_and_override():
    assert choose("470.256.02", "cu128") == "cu128" and choose(None, "cu130") == "cu130"
    with pytest.raises(UserError, match="older than 525"):
        choose("470.256.02")
    with pytest.raises(UserError, match="TORCH_CUDA must be one of cpu, cu126, cu128, cu130"):
        choose("580.1", "cu118")
    with pytest.raises(UserError, match="cannot read the NVIDIA driver version"):
        choose("N/A")


def test_pip_arguments_per_build():
    assert pip_attempts("cu130", "2.13.0", "linux") == [["torch==2.13.0"]]
    assert pip_attempts("cu128", "2.13.0", "linux") == [
        ["--extra-index-url", "https://download.pytorch.org/whl/cu128", "torch==2.13.0+cu128"]]
    assert pip_attempts("cpu", "2.13.0", "linux") == [
        ["torch==2.13.0+cpu"], ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0+cpu"]]
    assert pip_attempts("cpu", "2.13.0", "darwin") == [["torch==2.13.0"]]


@pytest.mark.parametrize("smi, forced, message", [
    ("echo 470.256.02", "", "error: NVIDIA driver 470.256.02 is older than 525"),
    ("exit 9", "cu118", "error: TORCH_CUDA must be one of cpu, cu126, cu128, cu130, got 'cu118'"),
])
def test_install_refuses_before_pip_runs(tmp_path, smi, forced, message):
    (tmp_path / "nvidia-smi").write_text(f"#!/bin/sh\n{smi}\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    marker = tmp_path / "pip-ran"
    fake_python = tmp_path / "python"  # would record a pip call; must never run
    fake_python.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake_python.chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "training.torch_build", "install", str(fake_python), forced],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert done.returncode == 2 and done.stderr.splitlines()[-1].startswith(message)
    assert not marker.exists()


def test_install_says_which_build_and_why(tmp_path):
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 575.51.03\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\n")
    fake_python.chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "training.torch_build", "install", str(fake_python)], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert done.returncode == 0
    assert done.stdout == ("torch 2.13.0: the cu128 build (NVIDIA driver 575.51.03; "
                           "TORCH_CUDA=cpu|cu126|cu128|cu130 chooses another)\n")
    assert (tmp_path / "args").read_text().split() == [
        "-m", "pip", "install", "--quiet", "--extra-index-url", "https://download.pytorch.org/whl/cu128", "torch==2.13.0+cu128"]


def test_measure_takes_the_median_after_warm_up():
    steps = [{"loss": 2.0, "tokens/train_per_sec_per_gpu": 10.0, "memory/max_allocated (GiB)": 40.0},
             {"loss": 1.9, "tokens/train_per_sec_per_gpu": 100.0, "memory/max_allocated (GiB)": 47.5},
             {"loss": 1.8, "tokens/train_per_sec_per_gpu": 300.0},
             {"loss": 1.7, "tokens/train_per_sec_per_gpu": 200.0},
             {"loss": 1.6, "tokens/train_per_sec_per_gpu": 400.0, "tokens/trainable": 4000.0}]
    n = estimate.Arch(4096, 32, 32, 8, 14336, 128256).matmul_params
    m = gpu_check.measure(steps, n, 989e12, micro_batch=4)
    assert m["tokens_per_s"] == 300.0 and m["mfu"] == pytest.approx(300 * 4 * n / 989e12)
    assert (m["peak_gib"], m["loss"], m["finite"], m["tokens_per_row"]) == (47.5, (2.0, 1.6), True, 200.0)
    assert gpu_check.measure([{"loss": float("nan")}], n, None, 4)["finite"] is False


def test_step_logs_reads_axolotl_log_lines():
    log = ("noise {'loss': '1.25', 'grad_norm': '0.5', 'tokens/train_per_sec_per_gpu': '812.5', 'epoch': '0.1'}\n"
           "{'train_runtime': '3.2'}\n{'loss': 1.0, 'memory/max_allocated (GiB)': 47.2, "
           "'tokens/train_per_sec_per_gpu': '1.023e+04', 'tokens/trainable': 954}\n")
    assert gpu_check.step_logs(log) == [{"loss": 1.25, "grad_norm": 0.5, "tokens/train_per_sec_per_gpu": 812.5,
                                         "epoch": 0.1}, {"loss": 1.0, "memory/max_allocated (GiB)": 47.2,
                                                         "tokens/train_per_sec_per_gpu": 10230.0, "tokens/trainable": 954.0}]


def test_benchmarks_section_is_replaced_and_the_rest_kept(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Data path\n\nconversion 1.9 s\n", encoding="utf-8")
    replace_section(path, gpu_check.SECTION, f"{gpu_check.SECTION}\n\nfirst\n")
    replace_section(path, gpu_check.SECTION, f"{gpu_check.SECTION}\n\nsecond\n")
    assert path.read_text(encoding="utf-8") == (f"# Benchmarks\n\n## Data path\n\nconversion 1.9 s\n\n"
                                                f"{gpu_check.SECTION}\n\nsecond\n")
    path.write_text(f"# Benchmarks\n\n{gpu_check.SECTION}\n\nold\n\n## Data path\n\nkept\n", encoding="utf-8")
    replace_section(path, gpu_check.SECTION, f"{gpu_check.SECTION}\n\nnew\n")
    assert path.read_text(encoding="utf-8") == f"# Benchmarks\n\n{gpu_check.SECTION}\n\nnew\n\n## Data path\n\nkept\n"


@pytest.mark.e2e
def test_make_gpu_check_tiny_runs_train_and_merge_end_to_end(tmp_path):
    benchmarks = (REPO / "docs" / "benchmarks.md")
    before = benchmarks.read_bytes() if benchmarks.exists() else None
    done = subprocess.run(["make", "--no-print-directory", "gpu-check", "TINY=1", f"GPU_CHECK_OUT={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in done.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| run")}
    assert list(rows) == ["card", "packing", "liger", "qlora"]
    assert rows["card"][2:4] == ["2 x 512", "ok"] and rows["packing"][3] == "ok"
    assert float(rows["card"][4].replace(",", "")) > 0 and float(rows["packing"][4].replace(",", "")) > 0
    assert rows["liger"][3] == rows["qlora"][3] == "skipped: needs cuda"  # both packages are in the venv
    merge = next(line for line in done.stdout.splitlines() if line.startswith("Merge: "))
    assert merge.startswith("Merge: `make merge` ok; largest logit difference merged/ vs base + adapter") and merge.endswith("(ok)")
    assert (tmp_path / "runs" / "card" / "merged" / "merged_from.json").is_file()
    assert (tmp_path / "table.md").read_text(encoding="utf-8") in done.stdout
    assert (benchmarks.read_bytes() if benchmarks.exists() else None) == before  # TINY never writes the GPU table


def test_wheelhouse_keeps_only_the_boxes_cuda_libraries(tmp_path):
    import zipfile

    from training.wheelhouse import pins, trim_cuda_libraries

    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    libs = ["cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm72", "xpu"]
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("bitsandbytes/__init__.py", "x = 1\n")
        for lib in libs:
            z.writestr(f"bitsandbytes/libbitsandbytes_{lib}.so", lib.encode() * 1000)
        z.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "stale\n")
    assert trim_cuda_libraries(wheel, "13") > 0
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        record = z.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()
    assert sorted(n for n in names if n.endswith(".so")) == [
        f"bitsandbytes/libbitsandbytes_{lib}.so" for lib in ("cpu", "cuda130", "cuda132")]
    assert [line.split(",")[0] for line in record] == [n for n in names if not n.endswith("RECORD")] + [
        "bitsandbytes-0.50.2.dist-info/RECORD"]
    assert record[0] == "bitsandbytes/__init__.py,sha256=nia_NpkRxFwkPGhBR7I_yeHc_PJX0pmhxjIBam_NM_Q,6"
    listed = pins(REPO / "requirements-gpu-box.txt")
    assert "axolotl==0.19.0" in listed and all("==" in p for p in listed)
    # the box's carried pins are Axolotl's and this repo's own where both name a package
    ours = {line.split("==")[0].lower(): line.lower() for line in (REPO / "requirements.txt").read_text().split()
            if "==" in line}
    assert [p for p in listed if ours.get(p.split("==")[0].lower(), p.lower()) != p.lower()] == []


def test_install_replaces_a_torch_of_another_build(tmp_path):
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 580.159.04\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    fake_python = tmp_path / "python"  # a venv python that holds the CPU build: answers the probe, logs pip calls
    fake_python.write_text(f"#!/bin/sh\nif [ \"$1\" = -c ]; then echo cpu; else echo \"$@\" >> {tmp_path}/calls; fi\n")
    fake_python.chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "training.torch_build", "install", str(fake_python)], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert done.returncode == 0 and "replacing the cpu build of torch" in done.stdout
    assert (tmp_path / "calls").read_text().splitlines() == [
        "-m pip uninstall --quiet --yes torch", "-m pip install --quiet torch==2.13.0"]
