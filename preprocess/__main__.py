"""Build every source: ``python -m preprocess [--sample] [--output-dir DIR] [--seed N] [--system-rate P]``.

Without --sample each source is loaded from its pinned Hub revision; with --sample from the
bundled rows in data/sample/ (offline).
"""
import argparse
import sys
from pathlib import Path

from preprocess.pipeline import DEFAULT_SEED, build, converter, run
from preprocess.prompts import DEFAULT_SYSTEM_RATE
from preprocess.sources import PROCESSED_DIR, SAMPLE_PROCESSED_DIR, SOURCES


def jobs(args: argparse.Namespace) -> list[dict]:
    out_dir = args.output_dir or (SAMPLE_PROCESSED_DIR if args.sample else PROCESSED_DIR)
    results = []
    for name, source in SOURCES.items():
        results.append(build(
            source, converter(name),
            input_path=str(source.sample_path) if args.sample else None,
            output=source.output_path(out_dir),
            seed=args.seed,
            system_rate=args.system_rate,
            progress=not args.no_progress,
        ))
    return results


def cli() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", action="store_true", help="use the bundled samples in data/sample/")
    p.add_argument("--output-dir", type=Path, help="default: data/processed (data/processed-sample with --sample)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--system-rate", type=float, default=DEFAULT_SYSTEM_RATE, metavar="P")
    p.add_argument("--no-progress", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(run(None, jobs, cli()))
