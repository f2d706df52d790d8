"""beomi/KoAlpaca-v1.1a -> Alpaca JSONL.

Columns: instruction (the question), output, url; there is no input column.
With probability P the system instruction is the ``instruction`` and the question the ``input``;
otherwise the question is the ``instruction`` and ``input`` is empty.

    python -m preprocess.koalpaca [--input SRC] [--output PATH] [--seed N] [--system-rate P]
"""
import sys

from preprocess.convert import Dropped, RowContext, blank, converter_main
from preprocess.prompts import alpaca_row
from preprocess.sources import KOALPACA


def convert(row: dict, ctx: RowContext) -> dict:
    question, answer = row["instruction"].strip(), row["output"].strip()
    if blank(question) or blank(answer):
        raise Dropped("empty_field")
    return alpaca_row(question, answer, ctx.coin(row["instruction"] + "\x1f" + row["output"]))


if __name__ == "__main__":
    sys.exit(converter_main(KOALPACA, convert, __doc__.splitlines()[0]))
