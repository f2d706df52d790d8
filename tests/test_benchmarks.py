"""The synthetic text behind `make bench` (and the converters' tests) tokenizes like Korean."""
import random

from helpers import REPO, read_jsonl

from benchmarks import synthetic
from training.tiny_model import tokenizer

# Recorded with the real Llama-3 tokenizer (Meta's llama3 tokenizer.model through tiktoken), on the
# texts below: synthetic 0.674 tokens per character (3.00 per word), data/eval-sample/kobest 0.731, a ratio of
# 0.922 (the real KoBEST test sets give 0.65-0.72 tokens per character and 2.83 per word). The demo tokenizer gave 0.924.
# The 30-noun filler this generator replaced gave 0.36 tokens per character with Llama-3: a ratio of 0.49.
REFERENCE_RATIO = 0.922


def tokens_per_char(tok, texts):
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) / sum(map(len, texts))


def test_synthetic_text_tokenizes_like_korean_within_ten_percent():
    rng = random.Random(0)
    synth = [synthetic.text(rng, 20, 60) for _ in range(1000)]
    korean = [v for p in sorted((REPO / "data" / "eval-sample" / "kobest").glob("*/*.jsonl")) for row in read_jsonl(p)
              for v in row.values() if isinstance(v, str) and len(v) > 3]
    tok = tokenizer()
    ratio = tokens_per_char(tok, synth) / tokens_per_char(tok, korean)
    assert abs(ratio / REFERENCE_RATIO - 1) < 0.10, ratio


def test_synthetic_rows_have_the_real_sizes_and_shapes():
    for name, make in synthetic.ROWS.items():
        assert make(50) == make(50) and make(50) != make(50, seed=1)  # deterministic per seed
    alpaca = synthetic.koalpaca_rows(500)
    orca = synthetic.openorca_rows(500)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    assert median([len(r["output"]) for r in alpaca]) > 2 * median([len(r["output"]) for r in orca])  # long answers
    turns = [r["text"].count("### Assistant:") for r in synthetic.guanaco_rows(500)]
    assert max(turns) == 4 and sum(t > 1 for t in turns) > 0.3 * len(turns)  # multi-turn tails
    assert set(synthetic.REAL_SIZES) == set(synthetic.ROWS)
