"""Preprocessing throughput on synthetic sources of the real sizes.

    python -m benchmarks.preprocess_throughput [--scale 1.0]

Prints rows/s per source and the total processing time (file writing included; synthetic data
generation excluded), then the time `make train` spends on the content key of the tokenized data
(sha256 of the three JSONL files plus the config fields). Targets on a 2-core machine: all three
sources in under 30 s; the key well under 1 s.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.synthetic import REAL_SIZES, ROWS
from preprocess.pipeline import build, converter
from preprocess.sources import SOURCES
from recipe.config import load
from recipe.run import prepared_key

RECIPE = Path(__file__).resolve().parent.parent / "axolotl_configs" / "aog-lora.yml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the real row counts")
    args = p.parse_args()
    total_rows, total_s = 0, 0.0
    print(f"{'source':<12} {'rows':>8} {'seconds':>8} {'rows/s':>9}  MB in")
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in SOURCES.items():
            n = int(REAL_SIZES[name] * args.scale)
            src = Path(tmp) / f"{name}.src.jsonl"
            src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS[name](n)),
                           encoding="utf-8")
            start = time.perf_counter()
            stats = build(source, converter(name), str(src), Path(tmp) / f"{name}.jsonl", progress=False)
            seconds = time.perf_counter() - start
            total_rows, total_s = total_rows + stats["rows_read"], total_s + seconds
            print(f"{name:<12} {stats['rows_read']:>8} {seconds:>8.2f} {stats['rows_read'] / seconds:>9.0f}"
                  f"  {src.stat().st_size / 1e6:.1f}")
        print(f"{'all three':<12} {total_rows:>8} {total_s:>8.2f} {total_rows / total_s:>9.0f}"
              f"  (target: < 30 s)")
        outputs = [Path(tmp) / f"{name}.jsonl" for name in SOURCES]
        # a local base model folder, so no Hub lookup for tokenizer files enters the timing
        cfg = {**load(RECIPE), "base_model": tmp,
               "datasets": [{"path": str(p), "ds_type": "json", "type": "alpaca"} for p in outputs]}
        prepared_key({**cfg, "datasets": []})  # imports Axolotl's hash fields outside the timing
        start = time.perf_counter()
        prepared_key(cfg)
        mb = sum(p.stat().st_size for p in outputs) / 1e6
        print(f"content key of the tokenized data: sha256 of {mb:.1f} MB in {time.perf_counter() - start:.2f} s"
              "  (target: well under 1 s)")


if __name__ == "__main__":
    main()
