"""Shared machinery of the per-source converters: reading, the system-instruction coin,
drop accounting, atomic writes and the command line every converter exposes.

A converter is ``convert(row, ctx) -> {"instruction", "input", "output"}``; it raises
``Dropped(reason)`` for a row it cannot use and asks ``ctx.coin(identity)`` whether to add the
system instruction.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from preprocess.prompts import DEFAULT_SYSTEM_RATE, SYSTEM_INSTRUCTION
from preprocess.sources import REPO_ROOT, Source

DEFAULT_SEED = 42
# Every reason a row can be dropped for, in the order reports list them.
DROP_REASONS = (
    "bad_json",  # unreadable JSON line (line numbers are kept)
    "wrong_type",  # a row that is not an object, or a required field that is not a string
    "empty_field",  # a required field missing, null or blank (for guanaco: a blank turn)
    "no_assistant_turn",  # guanaco: no assistant answer to target
    "broken_alternation",  # guanaco: turns do not alternate Human/Assistant from a Human turn
)
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_LISTED_BAD_LINES = 1000


class InputError(Exception):
    """Bad input or arguments: reported as one line, never as a traceback."""


class Dropped(Exception):
    def __init__(self, reason: str):
        assert reason in DROP_REASONS, reason
        super().__init__(reason)
        self.reason = reason


def system_coin(seed: int, source: str, identity: str, rate: float) -> bool:
    """True with probability ``rate``, as a pure function of (seed, source, row identity).

    The draw does not depend on row order or on how rows are split between workers, so a rerun
    with the same seed is byte-identical.
    """
    digest = hashlib.sha256(f"{seed}\x1f{source}\x1f{identity}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


class RowContext:
    def __init__(self, source: str, seed: int, rate: float):
        self.source, self.seed, self.rate = source, seed, rate
        self.notes: Counter[str] = Counter()

    def coin(self, identity: str) -> bool:
        return system_coin(self.seed, self.source, identity, self.rate)

    def note(self, key: str) -> None:
        self.notes[key] += 1


Converter = Callable[[dict, RowContext], dict]


def converter(name: str) -> Converter:
    """The ``convert`` function of ``preprocess/<name>.py``."""
    return importlib.import_module(f"preprocess.{name}").convert


# ---------------------------------------------------------------- reading

def _parse_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or ``Dropped``) for each non-blank line."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                yield lineno, Dropped("bad_json")


def read_local(path: Path) -> list[tuple[int, Any]]:
    """Rows of a local file as (row number, value); row numbers are 1-based lines for JSONL."""
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise InputError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(LOCAL_SUFFIXES)}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise InputError(f"{path}: not a readable parquet file ({e})") from None
        return list(enumerate(table.to_pylist(), start=1))
    if suffix == ".json":
        try:
            whole = json.loads(path.read_bytes())
        except ValueError:
            return list(_parse_json_lines(path))  # not one JSON document: JSON lines
        if isinstance(whole, list):
            return list(enumerate(whole, start=1))
        if isinstance(whole, dict):
            return [(1, whole)]
        raise InputError(f"{path}: expected a JSON array of objects or JSON lines")
    return list(_parse_json_lines(path))


def load_hub(source: Source) -> tuple[list[tuple[int, Any]], list[str], str | None]:
    """Rows, column names and resolved commit sha of the pinned Hub revision."""
    try:
        from datasets import load_dataset

        ds = load_dataset(source.hub_id, revision=source.revision, split=source.split)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        raise InputError(
            f"could not load {source.hub_id} (revision {source.revision}, split {source.split}) "
            f"from the Hugging Face Hub: {type(e).__name__}: {reason}\n"
            f"  Without Hub access, pass --input FILE (.jsonl/.json/.parquet in the source's own "
            f"columns) or build the bundled samples with `make data SOURCE=sample`."
        ) from None
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(source.hub_id, revision=source.revision).sha
    except Exception:
        sha = None
    return list(enumerate(ds.to_list(), start=1)), list(ds.column_names), sha


def check_columns(source: Source, columns: set[str], where: str) -> None:
    missing = [c for c in source.columns if c not in columns]
    if missing:
        found = ", ".join(sorted(columns)) or "none"
        raise InputError(
            f"{where}: required column '{missing[0]}' is missing (columns found: {found}). "
            f"The {source.name} converter reads {source.hub_id} rows with columns: "
            f"{', '.join(source.columns)}."
        )


# ---------------------------------------------------------------- converting and writing

def _convert_one(source: Source, value: Any, convert: Converter, ctx: RowContext) -> dict:
    if isinstance(value, Dropped):
        raise value
    if not isinstance(value, dict):
        raise Dropped("wrong_type")
    for col in source.columns:
        v = value.get(col)
        if v is None:
            raise Dropped("empty_field")
        if not isinstance(v, str):
            raise Dropped("wrong_type")
    return convert(value, ctx)


class _AtomicFile:
    """A text file written under a temporary name and renamed into place by ``commit``."""

    def __init__(self, path: Path, binary: bool = False):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        self.file = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write a whole file so that a failure leaves the previous version (or nothing) in place."""
    f = _AtomicFile(Path(path), binary=isinstance(content, bytes))
    try:
        f.file.write(content)
        f.commit()
    except BaseException:
        f.discard()
        raise


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _display_path(path: Path) -> str:
    """A path as reports show it: relative to the repo when inside it, so reports do not
    depend on where the repo was cloned."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def stats_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".jsonl") + ".stats.json")


def build(
    source: Source,
    convert: Converter,
    input_path: str | None = None,
    output: Path | None = None,
    seed: int = DEFAULT_SEED,
    system_rate: float | None = DEFAULT_SYSTEM_RATE,
    progress: bool = True,
) -> dict:
    """Convert one source to Alpaca JSONL plus a ``.stats.json`` report; returns the report.

    ``system_rate`` is ignored (reported as null) for a source that adds no system instruction.
    """
    if not source.adds_system_instruction:
        system_rate = None
    if system_rate is not None and not 0.0 <= system_rate <= 1.0:
        raise InputError(f"--system-rate must be between 0 and 1, got {system_rate}")
    output = Path(output) if output else source.output_path()
    if input_path:
        rows = read_local(Path(input_path))
        columns = {k for _, v in rows if isinstance(v, dict) for k in v}
        check_columns(source, columns, input_path)
        origin, revision = _display_path(Path(input_path)), None
    else:
        rows, column_list, revision = load_hub(source)
        check_columns(source, set(column_list), f"{source.hub_id}@{source.revision}")
        origin = f"hf://datasets/{source.hub_id}@{source.revision}/{source.split}"

    ctx = RowContext(source.name, seed, system_rate or 0.0)
    dropped = Counter({r: 0 for r in DROP_REASONS})
    bad_lines: list[int] = []
    written = with_system = 0
    out, report = _AtomicFile(output), _AtomicFile(stats_path(output))
    try:
        from tqdm import tqdm

        for rownum, value in tqdm(rows, desc=source.name, unit=" rows", disable=not progress,
                                  mininterval=0.5):
            try:
                row = _convert_one(source, value, convert, ctx)
            except Dropped as d:
                dropped[d.reason] += 1
                if d.reason == "bad_json":
                    bad_lines.append(rownum)
                continue
            row.update(source=source.name, source_row=rownum)  # provenance; Axolotl ignores extra keys
            out.file.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
            with_system += row["instruction"] == SYSTEM_INSTRUCTION
        if written == 0:
            raise InputError(f"{origin}: no usable rows ({_drop_summary(dropped)}); nothing written")
        stats = {
            "source": source.name,
            "input": origin,
            "resolved_revision": revision,
            "seed": seed,
            "system_rate": system_rate,
            "rows_read": len(rows),
            "rows_written": written,
            "rows_dropped": sum(dropped.values()),
            "dropped": dict(dropped),
            "bad_json_lines": bad_lines[:MAX_LISTED_BAD_LINES],
            "system_instruction_rows": with_system,
            "system_instruction_share": round(with_system / written, 6),
            "notes": dict(sorted(ctx.notes.items())),
            "output": output.name,
        }
        report.file.write(json.dumps(stats, ensure_ascii=False, indent=2) + "\n")
        out.commit()
        report.commit()
        return stats
    except BaseException:
        out.discard()
        report.discard()
        raise


def _drop_summary(dropped: Counter) -> str:
    parts = [f"{r}={n}" for r, n in dropped.items() if n]
    return "dropped " + (", ".join(parts) if parts else "none")


def summary_line(stats: dict) -> str:
    line = (f"{stats['source']}: {stats['rows_written']}/{stats['rows_read']} rows -> "
            f"{stats['output']}; {_drop_summary(Counter(stats['dropped']))}")
    if stats["bad_json_lines"]:
        shown = ", ".join(map(str, stats["bad_json_lines"][:10]))
        line += f" (bad JSON on line {shown}{', ...' if len(stats['bad_json_lines']) > 10 else ''})"
    if stats["notes"]:
        line += "; " + ", ".join(f"{k}={v}" for k, v in stats["notes"].items())
    if stats["system_rate"] is not None:
        line += (f"; system instruction on {stats['system_instruction_share']:.1%} "
                 f"(rate {stats['system_rate']:.0%})")
    return line


# ---------------------------------------------------------------- command line

def parser(description: str, uses_system_rate: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input", metavar="SRC",
                   help="local .jsonl/.json/.parquet in the source's own columns "
                        "(default: the pinned Hub revision)")
    p.add_argument("--output", metavar="PATH", type=Path,
                   help="output JSONL (default: data/processed/<source>.jsonl); "
                        "a <name>.stats.json report is written beside it")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the system-instruction coin")
    rate_help = ("probability of adding the system instruction" if uses_system_rate
                 else "accepted for a uniform interface; has no effect on this source")
    p.add_argument("--system-rate", type=float, default=DEFAULT_SYSTEM_RATE, metavar="P", help=rate_help)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(argv: list[str] | None, jobs: Callable[[argparse.Namespace], list[dict]], p: argparse.ArgumentParser) -> int:
    """Parse arguments, run ``jobs`` and turn expected failures into one-line errors."""
    args = p.parse_args(argv)
    try:
        for stats in jobs(args):
            print(summary_line(stats))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output was changed", file=sys.stderr)
        return 130
    return 0


def main(source: Source, convert: Converter, description: str, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m preprocess.<source>``."""
    def job(args):
        return [build(source, convert, args.input, args.output, args.seed, args.system_rate,
                      not args.no_progress)]

    return run(argv, job, parser(description, source.adds_system_instruction))
