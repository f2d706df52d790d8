"""One prepared GPU check: the real `make train` and `make merge` on random Llama-3-8B-shaped
models, with no network, measured and written to docs/benchmarks.md.

    python -m training.gpu_check [--tiny] [--out DIR] [--steps N]     (make gpu-check [TINY=1])

Each variant is a recipe config pointed at a random model and synthetic rows: the card's recipe
(padded micro batches), sample packing, packing + Liger kernels and QLoRA. Every run goes through
`make train` (tokenize once, guarded output folder, Axolotl); the card run then goes through
`make merge`, and the merged model must give the logits of base + adapter. Runs use accumulation 1
and train_on_inputs (Axolotl's per-step token rate then counts every non-padding token); neither
changes the work per micro batch. ``--tiny`` runs the same on CPU with the demo's tiny model.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common.errors import UserError, run_command
from common.files import replace_section, write_atomic
from preprocess.prompts import card_prompt
from preprocess.sources import REPO_ROOT, SOURCES
from training import estimate
from training.config import cpu_copy, datasets_in, importable, load, write_resolved
from training.run import MERGED, say
from training.tiny_model import LLAMA3_8B, build, training_corpus

RECIPE = Path("axolotl_configs/aog-lora.yml")
PACKING = Path("axolotl_configs/ablations/fast-packing.yml")
QLORA = Path("axolotl_configs/ablations/qlora-24gb.yml")
LIGER = {"plugins": ["axolotl.integrations.liger.LigerPlugin"], "liger_rope": True, "liger_rms_norm": True,
         "liger_glu_activation": True, "liger_fused_linear_cross_entropy": True}
# name, what it is, config, extra keys, what it needs besides the recipe's own packages
VARIANTS = (
    ("card", "the card's recipe: LoRA, padded micro batches", RECIPE, {}, ()),
    ("packing", "+ sample packing", PACKING, {}, ()),
    # Axolotl's own fused LoRA MLP kernel replaces the MLP forward, so Liger's SwiGLU does not run:
    # this row measures Liger's fused linear cross-entropy, RMSNorm and RoPE.
    ("liger", "+ packing + Liger (fused linear cross-entropy, RMSNorm, RoPE)", PACKING, LIGER, ("cuda", "liger_kernel")),
    ("qlora", "QLoRA: 4-bit base", QLORA, {}, ("cuda", "bitsandbytes")),
)
# Dense bf16 peak by GPU name, most specific first; the H200 is the H100 SXM's compute die.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}
BENCHMARKS = REPO_ROOT / "docs" / "benchmarks.md"
SECTION = "## GPU check (make gpu-check)"
STEP_LOG = re.compile(r"\{'loss'.*?\}")


def environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    found = {name: importable(name) for name in ("flash_attn", "liger_kernel", "bitsandbytes")}
    return {"torch": torch.__version__, "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else "CPU",
            "cuda_version": torch.version.cuda, **found}


def synthetic_rows(tokenizer, ids: list[int], n: int, median: int, longest: int, seed: int) -> list[dict]:
    """Alpaca rows whose answers hold a log-normal number of tokens, cut from ``ids`` (the recipe's
    sample text, tokenized): lengths, not language, are what the throughput depends on."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        size = min(longest, max(16, int(rng.lognormvariate(math.log(median), 0.8))))
        start = rng.randrange(len(ids))
        answer = tokenizer.decode([ids[(start + k) % len(ids)] for k in range(size)])
        rows.append({"instruction": f"다음 글을 이어서 쓰세요. ({i})", "input": "", "output": answer})
    return rows


def variant_config(path: Path, extra: dict, model: Path, data: Path, out: Path, steps: int, tiny: bool) -> dict:
    cfg = load(path)
    if tiny:
        cfg = cpu_copy(cfg, model, data, out)
    cfg = {**cfg, **extra, "base_model": str(model),
           "datasets": datasets_in(cfg, data),
           "dataset_prepared_path": str(out.parent.parent / "prepared"), "output_dir": str(out),
           "max_steps": steps, "gradient_accumulation_steps": 1, "warmup_steps": 1, "logging_steps": 1,
           "train_on_inputs": True, "save_strategy": "no", "use_tensorboard": False}
    cfg.pop("saves_per_epoch", None)
    return cfg


def step_logs(log: str) -> list[dict]:
    """Axolotl's per-step log dicts from a `make train` log."""
    steps = []
    for match in STEP_LOG.finditer(log):
        try:
            d = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue
        steps.append({k: float(v) if isinstance(v, (int, float, str)) and re.fullmatch(r"-?[\d.]+(e[+-]?\d+)?|nan|-?inf", str(v))
                      else v for k, v in d.items()})
    return steps


def measure(steps: list[dict], matmul_params: int, peak: float | None, micro_batch: int) -> dict:
    """Median token rate after two warm-up steps, MFU on the 4N basis of LoRA (forward 2N plus the
    backward's activation gradients 2N, no weight gradients), peak allocated memory, and the mean
    non-padding tokens per row."""
    rates = [s["tokens/train_per_sec_per_gpu"] for s in steps[2:] if isinstance(s.get("tokens/train_per_sec_per_gpu"), float)]
    memory = [s["memory/max_allocated (GiB)"] for s in steps if isinstance(s.get("memory/max_allocated (GiB)"), float)]
    losses = [s["loss"] for s in steps if isinstance(s.get("loss"), float)]
    rate = statistics.median(rates) if rates else None
    seen = steps[-1].get("tokens/trainable") if steps else None
    return {"steps": len(steps), "tokens_per_s": rate,
            "tokens_per_row": seen / (len(steps) * micro_batch) if isinstance(seen, float) else None,
            "mfu": rate * 4 * matmul_params / peak if rate and peak else None,
            "peak_gib": max(memory) if memory and max(memory) > 0 else None,  # 0 on a CPU
            "loss": (losses[0], losses[-1]) if losses else None,
            "finite": bool(losses) and all(math.isfinite(x) for x in losses)}


def make(target: str, config: Path, log: Path, timeout: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        try:
            rc = subprocess.run(["make", "--no-print-directory", target, f"CONFIG={config}",
                                 *(["OVERWRITE=1"] if target == "train" else [])],
                                stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - t0


def merge_distances(run: Path, base: Path, device: str) -> tuple[float, float]:
    """On one card prompt: the largest |logit| difference between merged/ and base + adapter, and
    between the base alone and base + adapter (what the adapter changes). A merge that dropped the
    adapter has the first as large as the second."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tok = AutoTokenizer.from_pretrained(run / MERGED)
    x = tok(card_prompt("김치를 오래 보관하려면?"), return_tensors="pt").to(device)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(run / MERGED, dtype=dtype).to(device).eval()
        a = merged(**x).logits.float()
        del merged
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device), run).eval()
        b = tuned(**x).logits.float()
        with tuned.disable_adapter():
            c = tuned(**x).logits.float()
    return (a - b).abs().max().item(), (c - b).abs().max().item()


def table(env: dict, rows: list[dict], a100_hours: float | None, merge: str) -> str:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    lines = [SECTION, "", f"`make gpu-check{' TINY=1' if env['tiny'] else ''}` on {env['gpu']}, torch {env['torch']}"
             f" (CUDA {env['cuda_version']}), attention {env['attention']}, {env['date']}. Random "
             f"{'tiny' if env['tiny'] else 'Llama-3-8B-shaped'} model, synthetic rows; {env['steps']} steps per run, "
             "token rate = median of Axolotl's per-step rate after two warm-up steps (non-padding tokens); "
             "MFU = tokens/s x 4N / dense bf16 peak; peak = torch's max allocated.", "",
             "| run | what | micro batch x sequence_len | result | tokens/s | MFU (4N) | peak GiB | loss first -> last | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loss = f"{r['loss'][0]:.3f} -> {r['loss'][1]:.3f}" if r.get("loss") else "-"
        lines.append(f"| {r['name']} | {r['what']} | {r.get('batch', '-')} | {r['result']} | {fmt(r.get('tokens_per_s'), ',.0f')} | "
                     f"{fmt(r.get('mfu'), '.1%')} | {fmt(r.get('peak_gib'), '.1f')} | {loss} | {fmt(r.get('wall'), '.0f')} |")
    lines += ["", f"Merge: {merge}"]
    if a100_hours:
        lines.append(f"The card's run (3 epochs of {sum(s.expected_rows for s in SOURCES.values()):,} rows, micro batch 4, "
                     f"rows as long as this mix's {rows[0]['tokens_per_row']:.0f} tokens) at this card-recipe rate: {a100_hours:.1f} h on one A100 at the "
                     "same MFU (the card reports about 8 h).")
    return "\n".join(lines) + "\n"


def check(out: Path, tiny: bool, steps: int, timeout: int, only: list[str] | None = None) -> bool:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    env = {**environment(), "tiny": tiny, "steps": steps, "date": time.strftime("%Y-%m-%d")}
    if not tiny and not env["cuda"]:
        raise UserError("torch sees no CUDA GPU (a CPU wheel, or a driver older than the wheel's CUDA: "
                          "see README, 'Installing on a GPU box'); TINY=1 runs this check on the CPU")
    env["attention"] = "sdpa" if tiny or not env["flash_attn"] else "flash_attention_2"
    say(f"gpu-check: {env['gpu']}, torch {env['torch']}, flash_attn {env['flash_attn']}, "
        f"liger {env['liger_kernel']}, bitsandbytes {env['bitsandbytes']}")
    model, data = out / "model", out / "data"
    if not (model / "config.json").is_file():
        say(f"building a random {'tiny' if tiny else 'Llama-3-8B-shaped'} model in {model}/")
        build(model, **({} if tiny else {"shape": LLAMA3_8B, "device": "cuda"}))
        if env["cuda"]:
            torch.cuda.empty_cache()
    tok = AutoTokenizer.from_pretrained(model)
    ids = tok(" ".join(training_corpus()), add_special_tokens=False)["input_ids"]
    data.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(load(RECIPE)["datasets"]):
        rows = synthetic_rows(tok, ids, 60 if tiny else 240, 60 if tiny else 400, 400 if tiny else 3900, seed=i)
        write_atomic(data / Path(d["path"]).name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    arch = estimate.Arch.from_config(AutoConfig.from_pretrained(model))
    peak = next((v for k, v in PEAK_BF16.items() if k in env["gpu"]), None)
    rows = []
    for name, what, path, extra, needs in VARIANTS:
        row = {"name": name, "what": what}
        rows.append(row)
        missing = [n for n in needs if not (env["cuda"] if n == "cuda" else env[n])]
        if only and name not in only:
            row["result"] = "skipped: not in --only"
            continue
        if missing:
            row["result"] = f"skipped: needs {', '.join(missing)}"
            continue
        run = out / "runs" / name
        cfg = variant_config(path, extra, model, data, run, steps, tiny)
        row["batch"] = f"{cfg['micro_batch_size']} x {cfg['sequence_len']}"
        config = write_resolved(cfg, path, out / "configs" / f"{name}.yml")
        say(f"gpu-check: make train CONFIG={config}")
        rc, wall = make("train", config, out / f"{name}.log", timeout)
        logs = step_logs((out / f"{name}.log").read_text(errors="replace"))
        row.update(measure(logs, arch.matmul_params, peak, cfg["micro_batch_size"]), wall=wall)
        row["result"] = "ok" if rc == 0 and row["finite"] else f"FAILED (exit {rc}, see {out}/{name}.log)"
        (out / "table.md").write_text(table(env, rows, None, "not run yet"), encoding="utf-8")  # kept if cut short
    merge = f"not run (the card run: {rows[0]['result']})"
    if rows[0]["result"] == "ok":
        config = out / "configs" / "card.yml"
        rc, _ = make("merge", config, out / "merge.log", timeout)
        if rc:
            merge = f"FAILED (exit {rc}, see {out}/merge.log)"
        else:
            diff, effect = merge_distances(out / "runs" / "card", model, "cuda" if env["cuda"] else "cpu")
            ok = effect > 0 and diff < 0.5 * effect  # bf16 rounding of the merged weights stays well below the adapter's effect
            merge = (f"`make merge` ok; largest logit difference merged/ vs base + adapter {diff:.3g}, against "
                     f"{effect:.3g} for the base alone vs base + adapter ({'ok' if ok else 'MERGE LOST THE ADAPTER'})")
            rows[0]["merge_ok"] = ok
    a100, card = None, rows[0]
    if card.get("tokens_per_s") and card.get("tokens_per_row") and peak and not tiny:
        tokens = 3 * sum(s.expected_rows for s in SOURCES.values()) * card["tokens_per_row"]
        a100 = tokens / card["tokens_per_s"] * peak / PEAK_BF16["A100"] / 3600
    text = table(env, rows, a100, merge)
    print(text)
    (out / "table.md").write_text(text, encoding="utf-8")
    if not tiny:
        replace_section(BENCHMARKS, SECTION, text)
    merged = rows[0].get("merge_ok", False) or rows[0]["result"] != "ok"
    return all(r["result"] == "ok" or r["result"].startswith("skipped") for r in rows) and merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU, tiny model: the same script, so it cannot rot")
    p.add_argument("--out", type=Path, default=Path("outputs/gpu-check"))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--timeout", type=int, default=600, help="seconds per make train / make merge")
    p.add_argument("--only", help="comma-separated runs of " + ", ".join(v[0] for v in VARIANTS) + " (merge needs card)")
    args = p.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if only and set(only) - {v[0] for v in VARIANTS}:
        p.error(f"--only takes {', '.join(v[0] for v in VARIANTS)}")
    ok = []
    code = run_command(lambda: ok.append(check(args.out, args.tiny, args.steps, args.timeout, only)))
    return code or (0 if ok and ok[0] else 1)


if __name__ == "__main__":
    sys.exit(main())
