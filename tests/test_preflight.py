"""Preflight numbers on a fixture whose answers are counted by hand: a whitespace word-level
tokenizer (one token per word), a 1-layer toy architecture, and two tiny sources."""
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SAMPLE_COUNTS, load_prepared, read_jsonl, write_jsonl

from common.errors import UserError
from preprocess.prompts import SYSTEM_INSTRUCTION
from preprocess.sources import SOURCES
from training import estimate
from training.preflight import main, run

LONG = " ".join(f"w{i}" for i in range(45))
A = [{"instruction": "하나 둘", "input": "", "output": "셋"},          # 21+2 prompt, 1+EOS answer = 25
     {"instruction": "하나 둘", "input": "", "output": "셋"},          # duplicate in source
     {"instruction": "가 나 다 라", "input": "", "output": LONG}]      # 25 + 46 = 71 > 64: dropped by Axolotl
B = [{"instruction": SYSTEM_INSTRUCTION, "input": "하나 둘", "output": "셋"},   # 31+14+2 + 2 = 49
     {"instruction": "하나 둘", "input": "", "output": "셋"},                    # 25, duplicates A[0]
     {"instruction": "일 이 삼 사 오 육 칠 팔", "input": "", "output": "끝"},    # 31, 8 words of a KoBEST text
     {"instruction": "일 이 삼 사 오 육 칠", "input": "", "output": "끝"},       # 30, only 7 words: clean
     {"instruction": "질문", "input": "", "output": "그 정말 좋은 영화 였다 !"}]  # 29, a whole short KoBEST text


@pytest.fixture(scope="module")
def preflight_run(tmp_path_factory):
    """Two hand-counted sources through the real preflight, and so through `axolotl preprocess`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("preflight")
    data = root / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", A)
    write_jsonl(data / "b.jsonl", B)
    (data / "a.stats.json").write_text(json.dumps({"dropped": {"bad_json": 2, "empty_field": 0}, "seed": 7}))
    kobest = root / "kobest"
    for task in ("boolq", "copa", "hellaswag", "sentineg", "wic"):
        (kobest / task).mkdir(parents=True)
    # texts no training row contains, for the tasks this preflight_run does not plant overlap in
    write_jsonl(kobest / "copa" / "test.jsonl", [{"premise": "갑 을", "alternative_1": "병", "alternative_2": "정 무"}])
    write_jsonl(kobest / "hellaswag" / "test.jsonl", [{"context": "기 경", "ending_1": "신", "ending_2": "임",
                                                       "ending_3": "계", "ending_4": "자 축"}])
    write_jsonl(kobest / "wic" / "test.jsonl", [{"context_1": "인 묘", "context_2": "진 사"}])
    write_jsonl(kobest / "boolq" / "test.jsonl", [{"paragraph": "일 이 삼 사 오 육 칠 팔 구", "question": "짧은 질문", "label": 1}])
    write_jsonl(kobest / "sentineg" / "test.jsonl", [{"sentence": "정말 좋은 영화 였다.", "label": 1}])

    from axolotl.prompters import AlpacaPrompter
    words = {w for r in A + B for v in r.values() for w in v.split()}
    words |= set(next(AlpacaPrompter().build_prompt("x", "y")).split()) | set(next(AlpacaPrompter().build_prompt("x")).split())
    vocab = {"<unk>": 0, "<|begin_of_text|>": 1, "<|end_of_text|>": 2, **{w: i + 3 for i, w in enumerate(sorted(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                            unk_token="<unk>", pad_token="<|end_of_text|>").save_pretrained(root / "tok")
    LlamaConfig(hidden_size=4, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=8, vocab_size=10, tie_word_embeddings=False).save_pretrained(root / "arch")
    cfg = {"extends": str(REPO / "axolotl_configs/aog-lora.yml"), "base_model": str(root / "arch"),
           "datasets": [{"path": str(data / f"{n}.jsonl"), "ds_type": "json", "type": "alpaca"} for n in "ab"],
           "sequence_len": 64, "micro_batch_size": 1, "gradient_accumulation_steps": 1, "num_epochs": 1,
           "gradient_checkpointing": False, "lora_r": 2, "output_dir": str(root / "out"),
           "tokenizer_config": str(root / "tok"), "dataset_prepared_path": str(root / "prepared")}
    config = root / "cfg.yml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    report = run(config, kobest_dir=kobest, out=root / "report")
    return root, report


def by_source(report):
    return {s["source"]: s for s in report["sources"]}


def test_per_source_numbers(preflight_run):
    _, report = preflight_run
    a, b = by_source(report)["a"], by_source(report)["b"]
    assert (a["rows"], a["tokens_p50"], a["tokens_p90"], a["tokens_max"], a["over_sequence_len"]) == (3, 25, 71, 71, 1)
    assert a["dropped_by_converter"] == {"bad_json": 2}
    assert a["supervised_share"] == round(4 / 50, 4) and a["tokens_trained"] == 50
    assert (a["duplicates_in_source"], a["duplicates_of_other_sources"], a["system_instruction_share"]) == (1, 0, 0)
    assert (b["rows"], b["tokens_p50"], b["tokens_p90"], b["tokens_max"], b["over_sequence_len"]) == (5, 30, 49, 49, 0)
    assert b["supervised_share"] == round(15 / 164, 4) and b["system_instruction_share"] == 0.2
    assert (b["duplicates_in_source"], b["duplicates_of_other_sources"]) == (0, 1)
    assert b["dropped_by_converter"] == {}


def test_kobest_overlap(preflight_run):
    root, report = preflight_run
    flagged = read_jsonl(root / "report" / "contamination.jsonl")
    assert report["kobest_texts"] == 13 and report["contaminated_rows"] == 2
    assert [(f["source"], f["row"], f["task"], f["kobest_doc"], f["ngram"]) for f in flagged] == [
        ("b", 3, "boolq", 0, "일 이 삼 사 오 육 칠 팔"), ("b", 5, "sentineg", 0, "정말 좋은 영화 였다")]


def test_flop_and_step_estimate(preflight_run):
    _, report = preflight_run
    arch = estimate.Arch(4, 1, 2, 1, 8, 10)
    assert (arch.matmul_params, arch.total_params, arch.lora_params(2)) == (184, 224, 128)
    rows = {(e["gpu"], e["packing"]): e for e in report["estimates"]}
    # kept lengths 25 25 49 25 31 30 29: 214 tokens, sum of squares 6978; per token 4*184 + 6*128 = 1504
    off, on = rows[("A100-80GB", False)], rows[("A100-80GB", True)]
    assert (off["positions_per_epoch"], off["optimizer_steps"], off["flops"]) == (214, 7, 214 * 1504 + 24 * 6978)
    assert (on["positions_per_epoch"], on["optimizer_steps"], on["flops"]) == (4 * 64, 4, 256 * 1504 + 24 * 6978)
    assert off["chosen"] and not on["chosen"]
    assert off["hours"] == pytest.approx(off["flops"] / (312e12 * 0.4) / 3600)
    assert rows[("H100-80GB", False)]["hours"] * 989 == pytest.approx(off["hours"] * 312)
    # 2*224 weights + 16*128 LoRA/Adam + 34*4*49 activations + 10*49*10 logits + 3 GB overhead
    assert off["peak_memory_gb"] == pytest.approx((448 + 2048 + 6664 + 4900 + 3e9) / 1e9)


def test_packing_is_best_fit_decreasing():
    assert estimate.packed_sequences([49, 31, 30, 29, 25, 25, 25], 64) == 4
    assert estimate.packed_sequences([32] * 4, 64) == 2
    assert estimate.padded_tokens([1, 2, 3, 4], micro_batch=4) == 16


def test_llama3_8b_shapes():
    arch = estimate.Arch(4096, 32, 32, 8, 14336, 128256)
    assert round(arch.matmul_params / 1e9, 2) == 7.50 and round(arch.total_params / 1e9, 2) == 8.03
    assert arch.lora_params(32) == 83_886_080


def test_manifest_hashes_every_input_and_output(preflight_run):
    root, _ = preflight_run
    manifest = json.loads((root / "report" / "manifest.json").read_text())
    expected_inputs = {root / "cfg.yml", root / "data/a.jsonl", root / "data/b.jsonl", root / "data/a.stats.json",
                       *(root / "kobest").rglob("*.jsonl")}
    assert set(manifest["inputs"]) == {str(p) for p in expected_inputs}
    for path, digest in {**manifest["inputs"], **manifest["outputs"]}.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
    assert set(manifest["outputs"]) == {str(root / "report" / n) for n in
                                        ("data_card.md", "lengths.png", "contamination.jsonl", "preflight.json")}
    assert manifest["resolved_config"]["lora_r"] == 2 and "extends" not in manifest["resolved_config"]
    assert manifest["packages"]["axolotl"] == "0.19.0" and manifest["seeds"] == {"training": 42, "data": {"a": 7}}
    assert len(manifest["git"]["commit"] or "") in (0, 40)


def test_data_card_and_plot(preflight_run):
    root, _ = preflight_run
    card = (root / "report" / "data_card.md").read_text(encoding="utf-8")
    assert "| a | 3 | bad_json 2 | 25 / 71 / 71 / 71 | 1 | 8.0% | 0.0% | 1 | 0 |" in card
    assert "2 training rows share a word n-gram with 13 KoBEST test texts" in card
    assert (root / "report" / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preflight_reads_axolotls_own_lengths_and_train_reuses_its_tokenization(demo):
    """On the demo: preflight tokenized once, the lengths it read are those of the rows Axolotl
    saved, and `make train` reused the folder instead of tokenizing again."""
    import pyarrow.parquet as pq

    out, log = demo
    prepared = load_prepared(out / "lora" / "axolotl.yml")
    folder = Path(yaml.safe_load((out / "lora" / "axolotl.yml").read_text())["dataset_prepared_path"])
    assert json.loads((out / "preflight" / "preflight.json").read_text())["prepared"] == str(folder)
    lengths = pq.read_table(folder / "lengths.parquet").to_pandas()
    assert lengths.groupby("dataset").size().tolist() == [SAMPLE_COUNTS[n][1] for n in SOURCES]
    kept = lengths[lengths["tokens"] <= 512]
    assert Counter(zip(kept["tokens"], kept["supervised"])) == Counter(
        (len(r["input_ids"]), sum(label != -100 for label in r["labels"])) for r in prepared)
    assert log.count("tokenizing the data once with `axolotl preprocess`") == 1
    assert f"tokenized data: {folder} (matches the data and config; reused)" in log


def test_a_tokenization_failure_is_one_line_and_keeps_nothing(preflight_run, capsys):
    root, _ = preflight_run
    cfg = yaml.safe_load((root / "cfg.yml").read_text())
    bad = root / "bad.yml"
    bad.write_text(yaml.safe_dump({**cfg, "tokenizer_config": str(root / "tok" / "tokenizer.json")}), encoding="utf-8")
    assert main([str(bad), "--kobest-dir", str(root / "kobest"), "--out", str(root / "bad-report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: `axolotl preprocess` failed") and not (root / "bad-report").exists()
    assert sorted(p.name for p in (root / "prepared").iterdir() if not p.name.startswith(".")) == [
        Path(json.loads((root / "report" / "preflight.json").read_text())["prepared"]).name]


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump({"extends": str(REPO / "axolotl_configs/aog-lora.yml"),
                                   "datasets": [{"path": str(tmp_path / "x.jsonl"), "ds_type": "json", "type": "alpaca"}]}))
    assert main([str(cfg)]) == 2
    assert "training data not found" in capsys.readouterr().err


def test_qlora_peak_counts_4bit_decoder_weights():
    arch = estimate.Arch(4096, 32, 32, 8, 14336, 128256)
    decoder = 6_979_321_856  # q,k,v,o,gate,up,down of 32 layers; embed and lm_head stay bf16
    bf16 = estimate.peak_memory(arch, 32, 1, 4096, True)
    nf4 = estimate.peak_memory(arch, 32, 1, 4096, True, four_bit=True)
    assert bf16["weights"] == 2 * arch.total_params == 2 * 8_029_995_008  # the norms' 266k weights ignored
    assert nf4["weights"] == pytest.approx(decoder * 4.127 / 8 + 2 * (arch.total_params - decoder))
    assert {k: v for k, v in nf4.items() if k not in ("weights", "total")} == \
        {k: v for k, v in bf16.items() if k not in ("weights", "total")}
    assert round(nf4["total"] / 1e9, 1) == 16.9  # research estimate for QLoRA 1 x 4096: 16-19 GB


def test_estimate_names_the_cards_and_the_micro_batch_of_the_peak():
    arch = estimate.Arch(4096, 32, 32, 8, 14336, 128256)
    card = {"lora_r": 32, "micro_batch_size": 4, "sequence_len": 4096, "gradient_checkpointing": True}
    lengths = [4000, 300, 1200, 900]
    fits = {(e["gpu"], e["packing"]): (e["fits"], e["peak_at"], e["weights"]) for e in estimate.estimate(lengths, arch, card)}
    assert sorted({g for g, _ in fits}) == ["A100-40GB", "A100-80GB", "H100-80GB", "L40S-48GB", "RTX-4090-24GB"]
    assert fits[("A100-80GB", False)] == (True, "4 x 4000", "bf16") and fits[("A100-40GB", True)] == (False, "4 x 4096", "bf16")
    qlora = {**card, "adapter": "qlora", "load_in_4bit": True, "micro_batch_size": 1}
    fits = {(e["gpu"], e["packing"]): (e["fits"], e["peak_at"], e["weights"]) for e in estimate.estimate(lengths, arch, qlora)}
    assert fits[("RTX-4090-24GB", True)] == (True, "1 x 4096", "4-bit")


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "copa" / "test.jsonl").unlink(), "copa/test.jsonl: KoBEST copa test file not found"),
    (lambda d: (d / "wic" / "test.jsonl").write_text("\n"), "wic/test.jsonl: no rows"),
    (lambda d: (d / "boolq" / "test.jsonl").write_text('{"paragraph": "p", "quesiton": "q"}\n'),
     "KoBEST boolq test row 1 has no text column question"),
])
def test_a_kobest_file_that_is_missing_empty_or_wrong_is_an_error(tmp_path, damage, needle):
    import shutil

    from preprocess import contamination

    shutil.copytree(REPO / "data" / "eval-sample" / "kobest", tmp_path / "kobest")
    assert len(contamination.load_kobest(tmp_path / "kobest")) > 0
    damage(tmp_path / "kobest")
    with pytest.raises(UserError, match=needle):
        contamination.load_kobest(tmp_path / "kobest")
