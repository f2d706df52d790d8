"""The conversion engine behind every per-source converter: reading, the system-instruction
coin, drop accounting, the report beside each output, and the command line each converter exposes.

A converter is ``convert(row, ctx) -> {"instruction", "input", "output"}``; it raises
``Dropped(reason)`` for a row it cannot use and asks ``ctx.coin(identity)`` whether to add the
system instruction.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from common.errors import UserError, run_command
from common.files import AtomicFile, stats_path
from preprocess.prompts import DEFAULT_SYSTEM_RATE, SYSTEM_INSTRUCTION
from preprocess.sources import REPO_ROOT, Source

DEFAULT_SEED = 42
# Every reason a row can be dropped for, in the order reports list them.
DROP_REASONS = (
    "bad_json",  # unreadable JSON line, or text that is not Unicode (a lone surrogate); line numbers kept
    "wrong_type",  # a row that is not an object, or a required field that is not a string
    "empty_field",  # a required field missing, null or blank (`blank`; for guanaco: a blank turn)
    "no_assistant_turn",  # guanaco: no assistant answer to target
    "broken_alternation",  # guanaco: turns do not alternate Human/Assistant from a Human turn
    "kobest_overlap",  # the row contains a KoBEST test text (only in the DECONTAMINATE=1 copy)
)
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_LISTED_BAD_LINES = 1000


def blank(text: str) -> bool:
    """Empty once whitespace and invisible format characters (zero-width space, RTL mark, BOM:
    Unicode category Cf) are removed."""
    for c in text:  # stops at the first visible character, so a real answer costs almost nothing
        if not c.isspace() and unicodedata.category(c) != "Cf":
            return False
    return True


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
            if lineno == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, nesting too deep
                yield lineno, Dropped("bad_json")


def _check_text_file(path: Path, rows: list[tuple[int, Any]]) -> None:
    """Say what is really wrong with a file none of whose lines could be read."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise UserError(f"{path}: the file is empty")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
        raise UserError(f"{path}: UTF-16 text, not UTF-8: re-save it as UTF-8 (one JSON object per line)")
    if rows and all(isinstance(v, Dropped) for _, v in rows):
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte {e.start}; CP949/EUC-KR?): re-save it as UTF-8, "
                             "e.g. iconv -f cp949 -t utf-8") from None


def read_local(path: Path) -> list[tuple[int, Any]]:
    """Rows of a local file as (row number, value); row numbers are 1-based lines for JSONL."""
    if not path.is_file():
        raise UserError(f"{path}: input file not found")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise UserError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(LOCAL_SUFFIXES)}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise UserError(f"{path}: not a readable parquet file ({e})") from None
        return list(enumerate(table.to_pylist(), start=1))
    if suffix == ".json":
        try:
            whole = json.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
        except (ValueError, RecursionError):
            rows = list(_parse_json_lines(path))  # not one JSON document: JSON lines
            _check_text_file(path, rows)
            return rows
        if isinstance(whole, list):
            return list(enumerate(whole, start=1))
        if isinstance(whole, dict):
            return [(1, whole)]
        raise UserError(f"{path}: expected a JSON array of objects or JSON lines")
    rows = list(_parse_json_lines(path))
    _check_text_file(path, rows)
    return rows


def load_hub(source: Source) -> tuple[list[tuple[int, Any]], list[str], str | None]:
    """Rows, column names and resolved commit sha of the pinned Hub revision."""
    try:
        from datasets import load_dataset

        ds = load_dataset(source.hub_id, revision=source.revision, split=source.split, data_files=source.data_files)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        raise UserError(
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
        raise UserError(
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
    value, changed = dict(value), False
    for col in source.columns:
        v = value.get(col)
        if v is None:
            raise Dropped("empty_field")
        if not isinstance(v, str):
            raise Dropped("wrong_type")
        nfc = unicodedata.normalize("NFC", v)  # Hangul as precomposed syllables, as the tokenizer saw it
        if nfc != v:
            value[col], changed = nfc, True
    if changed:
        ctx.note("nfc_normalized")
    try:
        return convert(value, ctx)
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" (valid JSON, not text) met the coin's hash
        raise Dropped("bad_json") from None


def _display_path(path: Path) -> str:
    """A path as reports show it: relative to the repo when inside it, so reports do not
    depend on where the repo was cloned."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


PROVENANCE = ("source", "source_row")  # columns every converted row carries; no source dataset has them


def _refuse_unsafe_paths(input_path: Path | None, output: Path) -> None:
    from preprocess.sources import SAMPLE_DIR

    if output.resolve().is_relative_to(SAMPLE_DIR.resolve()):
        raise UserError(f"{output}: refusing to write into {SAMPLE_DIR} (the bundled samples); "
                         "choose another --output / DATA_DIR")
    if output.is_dir():
        raise UserError(f"{output}: is a folder; --output names the JSONL file to write")
    if input_path is not None and input_path.resolve() in (output.resolve(), stats_path(output).resolve()):
        raise UserError(f"{input_path}: the input is also the output; choose another --output")


def _sweep_stale_temps(output: Path) -> None:
    """Temporary files an interrupted run left beside ``output`` (called under the output's lock,
    so no live writer owns them)."""
    for name in (output.name, stats_path(output).name):
        for tmp in output.parent.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def build(
    source: Source,
    convert: Converter,
    input_path: str | None = None,
    output: Path | None = None,
    seed: int = DEFAULT_SEED,
    system_rate: float | None = DEFAULT_SYSTEM_RATE,
    progress: bool = True,
    reject: Callable[[dict], bool] | None = None,
) -> dict:
    """Convert one source to Alpaca JSONL plus a ``.stats.json`` report; returns the report.

    ``system_rate`` is ignored (reported as null) for a source that adds no system instruction.
    A converted row for which ``reject`` is true is dropped as ``kobest_overlap``.
    """
    if not source.adds_system_instruction:
        system_rate = None
    if system_rate is not None and not 0.0 <= system_rate <= 1.0:
        raise UserError(f"--system-rate must be between 0 and 1, got {system_rate}")
    output = Path(output) if output else source.output_path()
    _refuse_unsafe_paths(Path(input_path) if input_path else None, output)
    if input_path:
        rows = read_local(Path(input_path))
        columns = {k for _, v in rows if isinstance(v, dict) for k in v}
        if set(PROVENANCE) <= columns and not set(PROVENANCE) & set(source.columns):
            raise UserError(f"{input_path}: looks like converted output (it has the {' and '.join(PROVENANCE)} "
                             f"columns that {source.name} writes); give the original {source.hub_id} rows")
        check_columns(source, columns, input_path)
        origin, revision = _display_path(Path(input_path)), None
    else:
        rows, column_list, revision = load_hub(source)
        check_columns(source, set(column_list), f"{source.hub_id}@{source.revision}")
        origin = f"hf://datasets/{source.hub_id}@{source.revision}/{source.split}"

    from filelock import FileLock

    output.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(output.with_name(f".{output.name}.lock"))):  # one writer per output: JSONL and report agree
        _sweep_stale_temps(output)
        return _write(source, convert, rows, output, origin, revision, seed, system_rate, progress, reject)


def _write(source: Source, convert: Converter, rows: list, output: Path, origin: str, revision: str | None,
           seed: int, system_rate: float | None, progress: bool, reject: Callable[[dict], bool] | None = None) -> dict:
    ctx = RowContext(source.name, seed, system_rate or 0.0)
    dropped = Counter({r: 0 for r in DROP_REASONS})
    bad_lines: list[int] = []
    written = with_system = 0
    digest = hashlib.sha256()
    seen: set[bytes] = set()
    duplicates = 0
    out, report = AtomicFile(output, binary=True), AtomicFile(stats_path(output))
    try:
        from tqdm import tqdm

        for rownum, value in tqdm(rows, desc=source.name, unit=" rows", disable=not progress,
                                  mininterval=0.5):
            try:
                row = _convert_one(source, value, convert, ctx)
                if reject is not None and reject(row):
                    raise Dropped("kobest_overlap")
            except Dropped as d:
                dropped[d.reason] += 1
                if d.reason == "bad_json":
                    bad_lines.append(rownum)
                continue
            try:
                body = json.dumps(row, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate such as "\ud800": valid JSON, not text
                dropped["bad_json"] += 1
                bad_lines.append(rownum)
                continue
            key = hashlib.sha1(body).digest()
            duplicates += key in seen
            seen.add(key)
            # provenance, appended to the row's own JSON; Axolotl ignores extra keys
            line = body[:-1] + f', "source": "{source.name}", "source_row": {rownum}}}\n'.encode("utf-8")
            out.file.write(line)
            digest.update(line)
            written += 1
            with_system += row["instruction"] == SYSTEM_INSTRUCTION
        if written == 0:
            raise UserError(f"{origin}: no usable rows ({_drop_summary(dropped)}); nothing written")
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
            "duplicates_in_source": duplicates,
            "notes": dict(sorted(ctx.notes.items())),
            "output": output.name,
            "output_sha256": digest.hexdigest(),
        }
        if origin.startswith("hf://"):
            stats.update(_hub_checks(source, rows))
        report.file.write(json.dumps(stats, ensure_ascii=False, indent=2) + "\n")
        out.commit()
        report.commit()
        return stats
    except BaseException:
        out.discard()
        report.discard()
        raise


def _hub_checks(source: Source, rows: list) -> dict:
    """What only the real Hub rows can settle: the row count against the pinned split's, and the
    most common values of a column whose meaning is in doubt. Printed, and kept in the report."""
    found, expected = len(rows), source.expected_rows
    checks = {"expected_rows": expected}
    if abs(found - expected) > 0.01 * expected:
        checks["row_count_warning"] = (f"read {found:,} rows from {source.hub_id}, but its pinned split has "
                                       f"{expected:,}: check the revision and data files in preprocess/sources.py")
        print(f"WARNING: {source.name}: {checks['row_count_warning']}", file=sys.stderr)
    if source.common_values_of:
        counts = Counter(v.get(source.common_values_of) for _, v in rows if isinstance(v, dict))
        checks[f"common_{source.common_values_of}_values"] = [[value, n] for value, n in counts.most_common(20)]
        print(f"{source.name}: the 20 most common `{source.common_values_of}` values (count, value):", file=sys.stderr)
        for value, n in counts.most_common(20):
            print(f"  {n:>7,}  {str(value)[:100]!r}", file=sys.stderr)
    return checks


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

def add_run_args(p: argparse.ArgumentParser, uses_system_rate: bool = True) -> argparse.ArgumentParser:
    """The options every build command shares; their defaults are defined here and nowhere else."""
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the system-instruction coin")
    rate_help = ("probability of adding the system instruction" if uses_system_rate
                 else "accepted for a uniform interface; has no effect on this source")
    p.add_argument("--system-rate", type=float, default=DEFAULT_SYSTEM_RATE, metavar="P", help=rate_help)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def parser(description: str, uses_system_rate: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input", metavar="SRC",
                   help="local .jsonl/.json/.parquet in the source's own columns "
                        "(default: the pinned Hub revision)")
    p.add_argument("--output", metavar="PATH", type=Path,
                   help="output JSONL (default: data/processed/<source>.jsonl); "
                        "a <name>.stats.json report is written beside it")
    return add_run_args(p, uses_system_rate)


def run_cli(argv: list[str] | None, build_all: Callable[[argparse.Namespace], list[dict]],
            p: argparse.ArgumentParser) -> int:
    """Parse arguments, build, and print one summary line per output written."""
    args = p.parse_args(argv)
    return run_command(lambda: [print(summary_line(stats)) for stats in build_all(args)])


def converter_main(source: Source, convert: Converter, description: str, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m preprocess.<source>``."""
    def build_one(args):
        return [build(source, convert, args.input, args.output, args.seed, args.system_rate,
                      not args.no_progress)]

    return run_cli(argv, build_one, parser(description, source.adds_system_instruction))
