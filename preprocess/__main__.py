"""Build every source: ``python -m preprocess [--sample] [--output-dir DIR] [--seed N] [--system-rate P]
[--decontaminate [--kobest-dir DIR]]``.

Without --sample each source is loaded from its pinned Hub revision; with --sample from the
bundled rows in data/sample/ (offline). --decontaminate also writes a copy without the rows that
contain a KoBEST test text into ``<output dir>-decontaminated/`` (``kobest_overlap`` in its reports).
"""
import argparse
import sys
from pathlib import Path

from common.errors import UserError
from preprocess.convert import add_run_args, build, converter, run_cli
from preprocess.sources import PROCESSED_DIR, SAMPLE_PROCESSED_DIR, SOURCES


def build_all(args: argparse.Namespace) -> list[dict]:
    out_dir = Path(args.output_dir or (SAMPLE_PROCESSED_DIR if args.sample else PROCESSED_DIR))
    index = kobest_index(args.kobest_dir) if args.decontaminate else None
    results = []
    copies = [(out_dir, None)]
    if index is not None:
        copies.append((decontaminated_dir(out_dir), lambda row: index.row_match(row) is not None))
    for copy_dir, reject in copies:
        for name, source in SOURCES.items():
            results.append(build(
                source, converter(name),
                input_path=str(source.sample_path) if args.sample else None,
                output=source.output_path(copy_dir),
                seed=args.seed,
                system_rate=args.system_rate,
                progress=not args.no_progress,
                reject=reject,
            ))
    return results


def decontaminated_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + "-decontaminated")


def kobest_index(kobest_dir: Path | None):
    from preprocess import contamination

    try:
        return contamination.NgramIndex(contamination.load_kobest(kobest_dir))
    except (OSError, ConnectionError, UserError) as e:
        raise UserError(f"cannot read KoBEST for --decontaminate ({' '.join(str(e).split())}); without Hub access "
                         "pass local files with --kobest-dir DIR (make data KOBEST_DATA=DIR)") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", action="store_true", help="use the bundled samples in data/sample/")
    p.add_argument("--output-dir", type=Path, help="default: data/processed (data/processed-sample with --sample)")
    add_run_args(p)
    p.add_argument("--decontaminate", action="store_true",
                   help="also write <output dir>-decontaminated/ without rows that contain a KoBEST test text")
    p.add_argument("--kobest-dir", type=Path, help="local KoBEST <task>/test.jsonl (default: skt/kobest_v1 from the Hub)")
    return p


if __name__ == "__main__":
    sys.exit(run_cli(None, build_all, build_parser()))
