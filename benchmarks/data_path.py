"""The data path a user waits for, on synthetic sources of the real sizes: conversion (`make data`),
tokenization (`axolotl preprocess`, as `make train` or `make preflight` runs it once) and preflight on
the tokenized set (what `make preflight` costs once the data is tokenized).

    python -m benchmarks.data_path [--scale 1.0] [--model DIR] [--write docs/benchmarks.md]   (make bench)

Each step runs as the user's command runs it, in its own process where the command starts one, so
start-up is included. The text is Korean-calibrated filler (benchmarks/synthetic.py); the tokenizer is
that of --model, by default the demo's tiny model built here (pass a folder with the Llama-3 tokenizer
and its config.json for the real one). Prints one table; --write puts it in docs/benchmarks.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.synthetic import REAL_SIZES, ROWS
from common.files import replace_section
from preprocess.convert import build, converter
from preprocess.sources import REPO_ROOT, SOURCES
from training.config import check, load
from training.run import ensure_prepared, prepared_dir

RECIPE = REPO_ROOT / "axolotl_configs" / "aog-lora.yml"
SECTION = "## Data path (make bench)"
TARGETS = {"conversion": 2, "tokenization": 45, "preflight": 10}  # seconds on 2 cores, full size


def timed(step, rows: int, fn) -> dict:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{step}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"step": step, "rows": rows, "seconds": seconds}


def measure(tmp: Path, scale: float, model: str | None) -> list[dict]:
    sources, outputs, n_source = {}, {}, 0
    for name in SOURCES:
        rows = ROWS[name](int(REAL_SIZES[name] * scale))
        n_source += len(rows)
        sources[name] = tmp / f"{name}.src.jsonl"
        sources[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        outputs[name] = tmp / "data" / f"{name}.jsonl"
    if model is None:
        from training.tiny_model import build as build_model

        model = str(tmp / "model")
        build_model(Path(model))
    written = []

    def convert():
        for name, source in SOURCES.items():
            written.append(build(source, converter(name), str(sources[name]), outputs[name], progress=False))

    results = [timed("conversion", n_source, convert)]
    n_rows = sum(stats["rows_written"] for stats in written)
    config = tmp / "bench.yml"
    config.write_text(yaml.safe_dump({
        "extends": str(RECIPE), "base_model": model, "dataset_prepared_path": str(tmp / "prepared"),
        "output_dir": str(tmp / "out"),
        "datasets": [{**d, "path": str(outputs[Path(d["path"]).stem])} for d in load(RECIPE)["datasets"]]}),
        encoding="utf-8")
    cfg = check(config, quiet=True)
    where = prepared_dir(cfg)
    results.append(timed("tokenization", n_rows,
                         lambda: ensure_prepared({**cfg, "dataset_prepared_path": str(where)}, where)))
    preflight = [sys.executable, "-m", "training.preflight", str(config), "--kobest-dir",
                 str(REPO_ROOT / "data" / "eval-sample" / "kobest"), "--out", str(tmp / "preflight")]
    results.append(timed("preflight", n_rows, lambda: subprocess.run(preflight, check=True, stdout=subprocess.DEVNULL, cwd=REPO_ROOT)))
    return results


def table(results: list[dict], scale: float, model: str | None) -> str:
    lines = [SECTION, "",
             f"`make bench` on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
             f"{time.strftime('%Y-%m-%d')}; synthetic sources at {scale:g} x the real sizes; tokenizer: "
             f"{'the demo tiny model' if model is None else model}. Targets are for the full size on 2 cores.", "",
             "| step | what a user runs | rows | seconds | rows/s | target |", "|---|---|---|---|---|---|"]
    what = {"conversion": "`make data` (three converters)",
            "tokenization": "`axolotl preprocess` (once, in `make preflight` or `make train`)",
            "preflight": "`make preflight` on the tokenized data"}
    for r in results:
        lines.append(f"| {r['step']} | {what[r['step']]} | {r['rows']:,} | {r['seconds']:.1f} | "
                     f"{r['rows'] / r['seconds']:,.0f} | ≤ {TARGETS[r['step']]} s |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the real row counts")
    p.add_argument("--model", help="a model folder whose tokenizer and config.json Axolotl loads "
                                   "(default: the demo's tiny model, built here)")
    p.add_argument("--write", type=Path, help="also replace this section of a markdown file (docs/benchmarks.md)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results = measure(Path(tmp), args.scale, args.model)
    text = table(results, args.scale, args.model)
    print(text, end="")
    if args.write:
        replace_section(args.write, SECTION, text)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
