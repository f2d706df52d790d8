"""KoBEST 5-shot accuracy with lm-evaluation-harness, next to the model card's table.

    python -m evaluation.harness [--config CONFIG] [--model M] [--adapter DIR] [--data-dir DIR] [--out DIR] [--limit N]

The harness's own task definitions (prompts, choices, metrics) are used unchanged. By default
they read ``skt/kobest_v1`` from the Hub; ``--data-dir DIR`` overrides only the data files with
local ``DIR/<task>/{train,test}.jsonl`` in KoBEST's columns (shots come from train). A LoRA
adapter is evaluated without merging (lm-eval's ``peft=``). Without ``--model``, the model is the run
of ``--config`` (its merged model, else base + adapter) and the results go to ``<output_dir>/eval/``.
Writes ``results.json`` (the raw harness output) and ``kobest.md`` (the card's table plus this run and
the difference to AOG).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.errors import UserError, run_command
from common.files import missing_local, write_atomic
from preprocess.contamination import KOBEST_TASKS
from training.run import adapter_digest, model_to_use

TASKS = KOBEST_TASKS
NUM_FEWSHOT = 5  # the card's "5shot kobest (Accuracy)"
# The card's table: 5-shot accuracy and stderr per task, by model, in the card's column order.
CARD = {
    "werty1248/Llama-3-Ko-8B-OpenOrca": {"boolq": (0.7158, 0.0120), "copa": (0.7620, 0.0135),
                                         "hellaswag": (0.4740, 0.0224), "sentineg": (0.9471, 0.0112),
                                         "wic": (0.6079, 0.0138)},
    "beomi/Llama-3-Open-Ko-8B": {"boolq": (0.7963, 0.0108), "copa": (0.8110, 0.0124),
                                 "hellaswag": (0.4780, 0.0224), "sentineg": (0.9622, 0.0096),
                                 "wic": (0.5778, 0.0139)},
    "werty1248/Llama-3-Ko-8B-Instruct-AOG": {"boolq": (0.8312, 0.0100), "copa": (0.8120, 0.0124),
                                             "hellaswag": (0.4700, 0.0223), "sentineg": (0.9647, 0.0093),
                                             "wic": (0.5937, 0.0138)},
}
REFERENCE = "werty1248/Llama-3-Ko-8B-Instruct-AOG"


def task_specs(data_dir: Path | None, tasks: tuple[str, ...] = TASKS) -> list:
    """Task names (Hub data) or per-task overrides of only the data source (local data)."""
    if data_dir is None:
        return [f"kobest_{t}" for t in tasks]
    specs = []
    for t in tasks:
        files = {split: Path(data_dir, t, f"{split}.jsonl").resolve() for split in ("train", "test")}
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            raise UserError(f"KoBEST data not found: {', '.join(missing)} "
                            f"(expected {data_dir}/<task>/train.jsonl and test.jsonl for {', '.join(TASKS)})")
        specs.append({"task": f"kobest_{t}", "dataset_path": "json", "dataset_name": None,
                      "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}}})
    return specs


def run(model: str, adapter: str | None = None, data_dir: Path | None = None, limit: int | None = None,
        batch_size: int | str = 8, device: str | None = None, log_samples: bool = False,
        tasks: tuple[str, ...] = TASKS) -> dict:
    """The harness's result dict for the KoBEST tasks (all five unless ``tasks`` says), 5-shot."""
    for name in filter(None, (model, adapter)):
        if missing_local(name):
            raise UserError(f"{name}: folder not found")
    if adapter and Path(adapter).is_dir() and not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: no adapter_config.json, so not a LoRA adapter folder (did training finish?)")
    specs = task_specs(data_dir, tasks)
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    model_args = {"pretrained": model, **({"peft": adapter} if adapter else {})}
    try:
        return lm_eval.simple_evaluate(
            model="hf", model_args=model_args, tasks=specs, num_fewshot=NUM_FEWSHOT, limit=limit,
            batch_size=batch_size, device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
            task_manager=TaskManager(), log_samples=log_samples)
    except ConnectionError as e:  # what `datasets` raises for an unreachable Hub
        raise UserError(f"{e}. Without Hub access, pass local KoBEST files with --data-dir "
                        f"(make eval KOBEST_DATA=DIR); data/kobest-sample/ shows the layout.") from None
    except OSError as e:  # transformers: an unknown Hub id, or one not in the cache when offline
        raise UserError(f"cannot load {model}: {str(e).splitlines()[0]}") from None


def markdown_table(results: dict, label: str) -> str:
    """The card's table with this run and its difference to AOG appended."""
    cols = list(CARD) + [label, f"Δ vs {REFERENCE.split('/')[1]}"]
    lines = ["| Tasks | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t in TASKS:
        r = results["results"][f"kobest_{t}"]
        acc, se = r["acc,none"], r["acc_stderr,none"]
        card = [f"{a:.4f}±{s:.4f}" for a, s in (CARD[m][t] for m in CARD)]
        lines.append(f"| kobest_{t} | " + " | ".join(card + [f"{acc:.4f}±{se:.4f}", f"{acc - CARD[REFERENCE][t][0]:+.4f}"]) + " |")
    n = {t: results["n-samples"][f"kobest_{t}"]["effective"] for t in TASKS}
    lines += ["", f"{NUM_FEWSHOT}-shot accuracy ± stderr; test docs per task: "
              + ", ".join(f"{t} {k}" for t, k in n.items()) + "."]
    return "\n".join(lines) + "\n"


def write(results: dict, label: str, out_dir: Path, adapter_sha256: str | None = None) -> tuple[Path, Path]:
    raw = {k: v for k, v in results.items() if k != "samples"}
    raw["recipe"] = {"adapter_sha256": adapter_sha256}  # which trained weights these numbers belong to
    json_path, md_path = out_dir / "results.json", out_dir / "kobest.md"
    write_atomic(json_path, json.dumps(raw, ensure_ascii=False, indent=2, default=str) + "\n")
    write_atomic(md_path, markdown_table(results, label))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="evaluate the run this Axolotl config trains")
    p.add_argument("--model", help="model folder or Hub id (base model when --adapter is given); overrides --config")
    p.add_argument("--adapter", help="LoRA adapter folder, evaluated without merging")
    p.add_argument("--data-dir", type=Path, help="local KoBEST data (default: skt/kobest_v1 from the Hub)")
    p.add_argument("--out", type=Path, help="output folder (default: outputs/eval/<adapter or model>)")
    p.add_argument("--limit", type=int, help="test docs per task (smoke runs only; not comparable to the card)")
    p.add_argument("--batch-size", default="8")
    p.add_argument("--device")
    args = p.parse_args(argv)

    def evaluate():
        model, adapter, out = model_to_use(args.config, args.model, args.adapter)
        label = adapter or model
        out = args.out or (out / "eval" if out else Path("outputs/eval") / label.strip("/").replace("/", "__"))
        results = run(model, adapter, args.data_dir, args.limit,
                      int(args.batch_size) if args.batch_size.isdigit() else args.batch_size, args.device)
        json_path, md_path = write(results, label, out, adapter_digest(model, adapter))
        print(md_path.read_text(encoding="utf-8"))
        print(f"wrote {json_path} and {md_path}")

    return run_command(evaluate)

if __name__ == "__main__":
    sys.exit(main())
