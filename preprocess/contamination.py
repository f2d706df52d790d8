"""Word n-gram overlap between training rows and KoBEST test documents.

Texts are NFKC-normalised, lower-cased and stripped of punctuation, then split on whitespace
(Korean eojeol). A training row is flagged when it contains any n-gram (default 8 words) of a
KoBEST text; a KoBEST text shorter than n words counts as one n-gram of its own length, so a short
sentineg sentence or COPA alternative is flagged where a training row contains it whole (19% of
the KoBEST test texts, 57% of COPA's, are under 4 words). Used by `make preflight` (report) and
`make data DECONTAMINATE=1` (a filtered copy).
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from common.errors import UserError
from common.files import read_jsonl

# The KoBEST fields that carry text, per task (columns of skt/kobest_v1).
TEXT_FIELDS = {
    "boolq": ("paragraph", "question"),
    "copa": ("premise", "alternative_1", "alternative_2"),
    "hellaswag": ("context", "ending_1", "ending_2", "ending_3", "ending_4"),
    "sentineg": ("sentence",),
    "wic": ("context_1", "context_2"),
}
KOBEST_TASKS = tuple(TEXT_FIELDS)
NGRAM = 8  # words per n-gram: preflight's report and the DECONTAMINATE=1 filter
LAYOUT = "data/eval-sample/kobest/ shows the layout"
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
                raise UserError(f"{path}: KoBEST {task} test file not found; every task is checked ({LAYOUT})")
            rows = read_jsonl(path)
            if not rows:
                raise UserError(f"{path}: no rows; a task without test texts would be skipped silently")
        for i, row in enumerate(rows):
            missing = [f for f in fields if not isinstance(row, dict) or not isinstance(row.get(f), str)]
            if missing:
                raise UserError(f"KoBEST {task} test row {i + 1} has no text column {', '.join(missing)} "
                                f"(expected {', '.join(fields)}, as in skt/kobest_v1; {LAYOUT})")
        docs += [(task, i, row[f]) for i, row in enumerate(rows) for f in fields if row[f].strip()]
    return docs


class NgramIndex:
    def __init__(self, docs: list[tuple[str, int, str]], n: int = NGRAM, min_words: int = 1):
        self.grams: dict[tuple[str, ...], tuple[str, int]] = {}
        for task, doc, text in docs:
            w = words(text)
            if len(w) < min_words:
                continue
            k = min(n, len(w))
            for i in range(len(w) - k + 1):
                self.grams.setdefault(tuple(w[i:i + k]), (task, doc))
        self.sizes = sorted({len(g) for g in self.grams})
        self._ids = {w: i for i, w in enumerate(sorted({w for g in self.grams for w in g}), start=1)}
        self._hashes = {k: _np().unique(_hash_rows([[self._ids[w] for w in g] for g in self.grams if len(g) == k]))
                        for k in self.sizes}

    def row_match(self, row: dict) -> tuple[tuple[str, ...], tuple[str, int]] | None:
        """``match`` over an Alpaca row's instruction, input and output."""
        return self.match(row_text(row))

    def match(self, text: str) -> tuple[tuple[str, ...], tuple[str, int]] | None:
        """The first KoBEST n-gram found in ``text`` (shortest size first, then leftmost) and its
        (task, doc), or None."""
        w = words(text)
        for k in self.sizes:
            for i in range(len(w) - k + 1):
                hit = self.grams.get(tuple(w[i:i + k]))
                if hit:
                    return tuple(w[i:i + k]), hit
        return None

    def matches(self, texts: list[str], chunk: int = 5000) -> list[tuple[tuple[str, ...], tuple[str, int]] | None]:
        """``match`` for many texts, the same answers about 20 times faster: every window of every
        text is hashed at once with numpy, and only hash hits are looked up in the n-gram table."""
        return [hit for start in range(0, len(texts), chunk) for hit in self._matches(texts[start:start + chunk])]

    def _matches(self, texts: list[str]) -> list:
        np = _np()
        split = [words(t) for t in texts]
        lengths = np.array([len(w) for w in split], dtype=np.int64)
        flat = np.fromiter((self._ids.get(x, 0) for w in split for x in w), dtype=np.uint64, count=int(lengths.sum()))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        row_of = np.repeat(np.arange(len(texts)), lengths)
        found: list = [None] * len(texts)
        for k in self.sizes:  # the order of `match`: shortest size first, then leftmost
            n = len(flat) - k + 1
            if n <= 0:
                continue
            known = np.ones(n, dtype=bool)
            h = np.zeros(n, dtype=np.uint64)
            for j in range(k):
                h = h * _BASE + flat[j:j + n]
                known &= flat[j:j + n] != 0
            inside = row_of[:n] == row_of[k - 1:k - 1 + n]  # the window lies within one text
            for p in np.flatnonzero(known & inside & np.isin(h, self._hashes[k])):
                r = row_of[p]
                if found[r] is None:
                    gram = tuple(split[r][p - starts[r]:p - starts[r] + k])
                    if gram in self.grams:  # not a hash collision
                        found[r] = (gram, self.grams[gram])
        return found


_BASE = 1_000_003  # multiplier of the polynomial window hash (mod 2**64, numpy's wrap-around)


def _np():
    import numpy

    return numpy


def _hash_rows(rows: list[list[int]]):
    np = _np()
    h = np.zeros(len(rows), dtype=np.uint64)
    if rows:
        ids = np.array(rows, dtype=np.uint64)
        for j in range(ids.shape[1]):
            h = h * _BASE + ids[:, j]
    return h


def row_text(row: dict) -> str:
    """The text of an Alpaca row that is checked: instruction, input and output."""
    return " ".join((row["instruction"], row.get("input") or "", row["output"]))
