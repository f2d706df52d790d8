"""Token lengths of Alpaca rows exactly as Axolotl's ``type: alpaca`` tokenizes them.

Axolotl renders the prompt with its AlpacaPrompter and tokenizes prompt and answer separately,
each truncated to ``sequence_len``; the answer gets EOS appended and its BOS stripped. Rows whose
total exceeds ``sequence_len`` are then handled by ``excess_length_strategy`` (default: dropped).
"""
from __future__ import annotations


def row_lengths(rows: list[dict], tokenizer, sequence_len: int, train_on_inputs: bool = False,
                batch: int = 1024) -> list[tuple[int, int]]:
    """(total tokens, supervised tokens) per row."""
    from axolotl.prompters import AlpacaPrompter

    prompter = AlpacaPrompter()
    out = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        prompts = [next(prompter.build_prompt(r["instruction"], r.get("input", ""))) for r in chunk]
        kw = dict(truncation=True, max_length=sequence_len, padding=False)
        prompt_ids = tokenizer(prompts, **kw)["input_ids"]
        answer_ids = tokenizer([r["output"] for r in chunk], **kw)["input_ids"]
        for p, a in zip(prompt_ids, answer_ids):
            n_answer = len(a)
            if a and a[-1] != tokenizer.eos_token_id and len(a) < sequence_len:
                n_answer += 1
            if a and a[0] == tokenizer.bos_token_id:
                n_answer -= 1
            total = len(p) + n_answer
            out.append((total, total if train_on_inputs else n_answer))
    return out
