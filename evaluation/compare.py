"""`make compare`: the eval results of several runs side by side, beside the card's columns.

    python -m evaluation.compare RUN [RUN ...] [--out outputs/compare]

Each RUN is an Axolotl config (its run's ``<output_dir>/eval/``) or an eval folder itself, such as
``outputs/eval/beomi__Llama-3-Open-Ko-8B`` from `make eval MODEL=...`. Reads the ``*.json`` results
`make eval` wrote there, prints one markdown table (runs as columns, with stderr) and writes it with a
bar chart to ``--out``.md / .png. A run without results is listed as missing, not dropped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import UserError, run_command
from common.files import sha256_file, write_atomic
from evaluation import results
from training.config import ADAPTER_FILE, load
from training.run import output_dir


def gather(paths: list[Path]) -> tuple[dict[str, dict | None], dict[str, str | None], list[str]]:
    """(label -> the run's results or None, label -> its adapter's sha256, notes), labelled by config
    or folder name (by path when names repeat)."""
    names = [p.stem if p.is_file() else p.name for p in paths]
    runs, digests, lines = {}, {}, []
    for path, name in zip(paths, names):
        if path.is_dir():
            folder, digest, how = path, None, "make eval MODEL=..."
        elif path.is_file():
            out = output_dir(load(path), path)
            adapter = out / ADAPTER_FILE
            folder, digest, how = out / "eval", sha256_file(adapter) if adapter.is_file() else None, \
                f"make eval CONFIG={path}"
        else:
            raise UserError(f"{path}: neither a config nor an eval folder")
        label = name if names.count(name) == 1 else str(path)
        found = results.read(folder)
        runs[label], digests[label] = found or None, digest
        lines += ["", f"**{label}** (`{folder}/`)" + ("" if found else f": missing, `{how}`"),
                  *results.notes(found, digest)]
    return runs, digests, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="Axolotl configs (their runs) or eval folders")
    p.add_argument("--out", type=Path, default=Path("outputs/compare"), help="writes OUT.md and OUT.png")
    args = p.parse_args(argv)

    def compare():
        runs, digests, lines = gather(args.runs)
        text = results.table(runs, digests=digests) + "\n".join(lines) + "\n"
        print(text)
        md = args.out.with_suffix(".md")
        write_atomic(md, text)
        if any(runs.values()):
            png = results.chart(runs, args.out.with_suffix(".png"), digests)
            print(f"wrote {md} and {png}")
        else:
            print(f"wrote {md}; no run has results, so no chart")

    return run_command(compare)


if __name__ == "__main__":
    sys.exit(main())
