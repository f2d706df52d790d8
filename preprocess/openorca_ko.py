"""kyujinpy/OpenOrca-KO -> Alpaca JSONL, unchanged field for field.

Columns: id, instruction, input, output. ``input`` may be empty, null or missing (an empty
input, counted in the report's notes); rows with a blank instruction or output are dropped. No system instruction is added (the card: "변경사항 없음").

    python -m preprocess.openorca_ko [--input SRC] [--output PATH] [--seed N] [--system-rate P]
"""
import sys

from preprocess.convert import Dropped, RowContext, blank, converter_main
from preprocess.sources import OPENORCA_KO


def convert(row: dict, ctx: RowContext) -> dict:
    if blank(row["instruction"]) or blank(row["output"]):
        raise Dropped("empty_field")
    given = row.get("input")
    if given is None:
        ctx.note("input_null_or_missing")
    elif not isinstance(given, str):
        raise Dropped("wrong_type")
    return {"instruction": row["instruction"], "input": given or "", "output": row["output"]}


if __name__ == "__main__":
    sys.exit(converter_main(OPENORCA_KO, convert, __doc__.splitlines()[0]))
