"""Word n-gram overlap between training rows and KoBEST test documents.

Texts are NFKC-normalised, lower-cased and stripped of punctuation, then split on whitespace
(Korean eojeol). A training row is flagged when it contains any n-gram (default 8 words) of a
KoBEST text; a KoBEST text shorter than n words (but at least ``min_words``) counts as one
n-gram of its own length, so short sentineg/copa sentences are matched whole.
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
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        docs += [(task, i, row[f]) for i, row in enumerate(rows) for f in fields if row.get(f)]
    return docs


class NgramIndex:
    def __init__(self, docs: list[tuple[str, int, str]], n: int = 8, min_words: int = 4):
        self.grams: dict[tuple[str, ...], tuple[str, int]] = {}
        for task, doc, text in docs:
            w = words(text)
            if len(w) < min_words:
                continue
            k = min(n, len(w))
            for i in range(len(w) - k + 1):
                self.grams.setdefault(tuple(w[i:i + k]), (task, doc))
        self.sizes = sorted({len(g) for g in self.grams})

    def match(self, text: str) -> tuple[tuple[str, ...], tuple[str, int]] | None:
        """The first KoBEST n-gram found in ``text`` and its (task, doc), or None."""
        w = words(text)
        for k in self.sizes:
            for i in range(len(w) - k + 1):
                hit = self.grams.get(tuple(w[i:i + k]))
                if hit:
                    return tuple(w[i:i + k]), hit
        return None
