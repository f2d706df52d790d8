"""kyujinpy/OpenOrca-KO -> Alpaca JSONL, unchanged field for field.

Columns: id, instruction, input, output. ``input`` may be empty; rows with an empty
instruction or output are dropped. No system instruction is added (the card: "변경사항 없음").

    python -m preprocess.openorca_ko [--input SRC] [--output PATH] [--seed N] [--system-rate P]
"""
import sys

from preprocess.pipeline import Dropped, RowContext, main
from preprocess.sources import OPENORCA_KO


def convert(row: dict, ctx: RowContext) -> dict:
    if not row["instruction"].strip() or not row["output"].strip():
        raise Dropped("empty_field")
    return {"instruction": row["instruction"], "input": row["input"], "output": row["output"]}


if __name__ == "__main__":
    sys.exit(main(OPENORCA_KO, convert, __doc__.splitlines()[0]))
