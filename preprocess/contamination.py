"""Word n-gram overlap between training rows and KoBEST test documents.

Texts are NFKC-normalised, lower-cased and stripped of punctuation, then split on whitespace
(Korean eojeol). A training row is flagged when it contains any n-gram (default 8 words) of a
KoBEST text; a KoBEST text shorter than n words counts as one n-gram of its own length, so a short
sentineg sentence or COPA alternative is flagged where a training row contains it whole (19% of
the KoBEST test texts, 57% of COPA's, are under 4 words). Used by `make preflight` (report) and
`make data DECONTAMINATE=1` (a filtered copy).
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

# The KoBEST fields that carry text, per task (columns of skt/kobest_v1).
TEXT_FIELDS = {
    "boolq": ("paragraph", "question"),
    "copa": ("premise", "alternative_1", "alternative_2"),
    "hellaswag": ("context", "ending_1", "ending_2", "ending_3", "ending_4"),
    "sentineg": ("sentence",),
    "wic": ("context_1", "context_2"),
}
_NON_WORD = re.compile(r"[^\w\s]+")


def words(text: str) -> list[str]:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()


def load_kobest(data_dir: Path | None) -> list[tuple[str, int, str]]:
    """(task, doc index, text) for every text field of every KoBEST test document."""
    docs = []
    for task, fields in TEXT_FIELDS.items():
        if data_dir is None:
            from datasets import load_dataset

            rows = load_dataset("skt/kobest_v1", task, split="test").to_list()
        else:
            path = Path(data_dir, task, "test.jsonl")
            if not path.is_file():
                raise ValueError(f"{path}: KoBEST {task} test file not found; every task is checked")
            try:
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except ValueError as e:
                raise ValueError(f"{path}: not JSON lines ({e})") from None
            if not rows:
                raise ValueError(f"{path}: no rows; a task without test texts would be skipped silently")
        for i, row in enumerate(rows):
            missing = [f for f in fields if not isinstance(row, dict) or not isinstance(row.get(f), str)]
            if missing:
                raise ValueError(f"KoBEST {task} test row {i + 1} has no text column {', '.join(missing)} "
                                 f"(expected {', '.join(fields)}, as in skt/kobest_v1)")
        docs += [(task, i, row[f]) for i, row in enumerate(rows) for f in fields if row[f].strip()]
    return docs


class NgramIndex:
    def __init__(self, docs: list[tuple[str, int, str]], n: int = 8, min_words: int = 1):
        self.grams: dict[tuple[str, ...], tuple[str, int]] = {}
        for task, doc, text in docs:
            w = words(text)
            if len(w) < min_words:
                continue
            k = min(n, len(w))
            for i in range(len(w) - k + 1):
                self.grams.setdefault(tuple(w[i:i + k]), (task, doc))
        self.sizes = sorted({len(g) for g in self.grams})

    def row_match(self, row: dict) -> tuple[tuple[str, ...], tuple[str, int]] | None:
        """``match`` over an Alpaca row's instruction, input and output."""
        return self.match(" ".join((row["instruction"], row.get("input") or "", row["output"])))

    def match(self, text: str) -> tuple[tuple[str, ...], tuple[str, int]] | None:
        """The first KoBEST n-gram found in ``text`` and its (task, doc), or None."""
        w = words(text)
        for k in self.sizes:
            for i in range(len(w) - k + 1):
                hit = self.grams.get(tuple(w[i:i + k]))
                if hit:
                    return tuple(w[i:i + k]), hit
        return None
