"""The offline demo through the real Axolotl: `make demo` (sample data, tiny Llama, preprocess,
`make train`, `make merge`, chat, eval), then golden prompts, loss masks, loss and the merge."""
import glob
import json
import math

import pytest

from conftest import load_prepared

from preprocess.prompts import SYSTEM_INSTRUCTION

EOS = "<|end_of_text|>"
WITH_INPUT = ("<|begin_of_text|>Below is an instruction that describes a task, paired with an input that provides "
              "further context. Write a response that appropriately completes the request.\n\n"
              "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
NO_INPUT = ("<|begin_of_text|>Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")

GOLDEN = [  # (rendered prompt, trained text) of three bundled sample rows
    (WITH_INPUT.format(instruction=SYSTEM_INSTRUCTION, input="서울에서 부산까지 KTX로 얼마나 걸리나요?"),
     "KTX로 서울역에서 부산역까지는 보통 2시간 30분 정도 걸립니다. 정차역이 많은 열차는 3시간 가까이 걸리기도 합니다." + EOS),
    (NO_INPUT.format(instruction="한글은 누가 만들었나요?"),
     "한글은 조선의 세종대왕이 1443년에 창제하고 1446년에 훈민정음이라는 이름으로 반포했습니다." + EOS),
    (WITH_INPUT.format(instruction=SYSTEM_INSTRUCTION, input=(
        "자전거 체인에서 소리가 나면 어떻게 해야 하나요?\n### Response:\n체인이 말라 있거나 먼지가 많으면 소리가 납니다. "
        "마른 천으로 체인을 닦은 뒤 전용 윤활유를 한 방울씩 바르고, 남은 기름은 닦아 내면 됩니다.\n"
        "### Question:\n예를 하나만 더 들어 줄래?\n### Response:\n물론입니다. 비슷한 예로, 같은 원리가 일상에서도 자주 나타납니다.\n"
        "### Question:\n고마워. 주의할 점도 있을까?")),
     "무리하지 않는 것이 가장 중요합니다. 이상한 점이 느껴지면 전문가와 상담하세요." + EOS),
]


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
    assert len(ds) == 25 + 24 + 20  # rows written by `make data SOURCE=sample`; none over sequence_len


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
    [state] = glob.glob(f"{out}/lora/checkpoint-4/trainer_state.json")
    losses = [e["loss"] for e in json.load(open(state))["log_history"] if "loss" in e]
    assert len(losses) == 4 and all(math.isfinite(l) and l > 0 for l in losses)


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
    assert (out / "lora" / "eval" / "kobest.md").is_file() and "| kobest_wic |" in stdout
