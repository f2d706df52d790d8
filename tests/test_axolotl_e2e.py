"""The offline demo through the real Axolotl: `make demo` (sample data, tiny Llama, preprocess,
`make train`, `make merge`, chat, eval), then golden prompts, loss masks, loss and the merge."""
import glob
import json
import math

import pytest
from helpers import GOLDEN, SAMPLE_ROWS, load_prepared

from preprocess.prompts import SYSTEM_INSTRUCTION
from training.config import CPU_OVERRIDES


@pytest.fixture(scope="module")
def prepared(demo):
    from transformers import AutoTokenizer

    out, _ = demo
    return load_prepared(out / "lora" / "axolotl.yml"), AutoTokenizer.from_pretrained(out / "tiny-llama")


def split_row(row):
    ids, labels = row["input_ids"], row["labels"]
    n = labels.index(next(l for l in labels if l != -100))
    return ids, labels, n


def test_every_sample_row_is_prepared(prepared):
    ds, _ = prepared
    assert len(ds) == SAMPLE_ROWS  # none is over sequence_len


def test_loss_mask_prompt_ignored_answer_and_eos_trained(prepared):
    ds, tok = prepared
    for row in ds:
        ids, labels, n = split_row(row)
        assert n > 0 and all(l == -100 for l in labels[:n])
        assert labels[n:] == ids[n:] and ids[-1] == tok.eos_token_id


def test_golden_rendered_prompts(prepared):
    ds, tok = prepared
    rendered = set()
    for row in ds:
        ids, _, n = split_row(row)
        rendered.add((tuple(ids[:n]), tok.decode(ids[n:])))
    for prompt, trained in GOLDEN:
        assert (tuple(tok(prompt, add_special_tokens=False).input_ids), trained) in rendered


def test_training_loss_is_finite(demo):
    out, _ = demo
    steps = CPU_OVERRIDES["max_steps"]
    [state] = glob.glob(f"{out}/lora/checkpoint-{steps}/trainer_state.json")
    losses = [e["loss"] for e in json.load(open(state))["log_history"] if "loss" in e]
    assert len(losses) == steps and all(math.isfinite(l) and l > 0 for l in losses)


def test_merged_model_equals_base_plus_adapter(demo):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = demo
    tok = AutoTokenizer.from_pretrained(out / "lora" / "merged")
    ids = tok("### Question:\n김치는 어떻게 보관하나요?\n\n### Response:\n", return_tensors="pt")
    load = lambda p: AutoModelForCausalLM.from_pretrained(p).eval()  # noqa: E731
    base_path = out / "tiny-llama"
    with torch.no_grad():
        merged = load(out / "lora" / "merged")(**ids).logits
        base = load(base_path)(**ids).logits
        adapted = PeftModel.from_pretrained(load(base_path), out / "lora").eval()(**ids).logits
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert (merged - base).abs().max() > 1e-4  # training really moved the adapter


def test_demo_chats_in_the_card_format_and_evaluates(demo):
    out, stdout = demo
    assert ("### Question:\n김치를 오래 보관하려면 어떻게 해야 하나요?\n\n### Instruction:\n"
            f"{SYSTEM_INSTRUCTION}\n\n### Response:\n") in stdout
    assert (out / "lora" / "eval" / "results.md").is_file() and "| kobest_wic | acc |" in stdout
