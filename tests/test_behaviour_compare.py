"""The behaviour task's scores on hand-made answers, its prompts, chat's batched generation and its
eos detection on the tiny model, and `make compare` over the demo's eval results."""
import json
import math
import shutil
import subprocess

import pytest
import yaml
from helpers import REPO

from common.errors import UserError
from evaluation import behaviour, compare, results
from evaluation.behaviour import hangul_share, load_prompts, repeated_ngram_rate, scores, summary
from evaluation.chat import Chat, render


def test_scores_of_hand_made_answers():
    assert hangul_share("김치는 발효 음식입니다.") == 1.0
    assert hangul_share("Python은 언어") == pytest.approx(3 / 9)  # P y t h o n 은 언 어
    assert hangul_share("123 !!") == hangul_share("") == 0.0  # no letters: not a Korean answer
    assert hangul_share("ㅋㅋ 네") == 1.0  # compatibility jamo count as Hangul
    assert repeated_ngram_rate("a b c d a b c d") == pytest.approx(1 / 5)  # abcd bcda cdab dabc abcd
    assert repeated_ngram_rate("네 네 네 네 네 네") == pytest.approx(2 / 3)
    assert repeated_ngram_rate("하나 둘 셋") == 0.0  # shorter than one 4-gram
    assert repeated_ngram_rate("하나 둘 셋 넷 다섯") == 0.0
    assert scores("안녕", True) == {"stopped": 1.0, "hangul": 1.0, "repeated_4grams": 0.0, "chars": 2.0}
    assert scores("", False)["stopped"] == 0.0


def test_summary_is_mean_and_standard_error():
    per = [scores(t, s) for t, s in (("가" * 10, True), ("a" * 20, False), ("가" * 30, True), ("a" * 40, False))]
    got = summary(per)
    assert got["stopped,none"] == 0.5 and got["stopped_stderr,none"] == pytest.approx(math.sqrt(1 / 3 / 4))
    assert got["hangul,none"] == 0.5 and got["chars,none"] == 25.0
    assert got["chars_stderr,none"] == pytest.approx(math.sqrt((225 + 25 + 25 + 225) / 3 / 4))
    assert summary(per[:1])["chars_stderr,none"] == 0.0


def test_shipped_prompts_are_thirty_in_three_kinds():
    prompts = load_prompts()
    kinds = [p["kind"] for p in prompts]
    assert len(prompts) == 30 and (kinds.count("single"), kinds.count("multi"), kinds.count("long")) == (16, 8, 6)
    assert all(p["history"] for p in prompts if p["kind"] == "multi")
    assert not any(p["history"] for p in prompts if p["kind"] != "multi")


@pytest.mark.parametrize("line, needle", [
    ('{"id": "a", "kind": "chat", "history": [], "question": "q"}', ":1: expected"),
    ('{"id": "a", "kind": "multi", "history": [["q"]], "question": "q"}', ":1: expected"),
    ('{"id": "a", "kind": "single", "history": [], "question": " "}', ":1: expected"),
    ('{"id": "a", "kind": "single", "history": [], "question": "q"}\n'
     '{"id": "a", "kind": "single", "history": [], "question": "r"}', ":2: id 'a' appears twice"),
    ("", "no prompts"),
])
def test_bad_prompt_files_are_clear_errors(tmp_path, line, needle):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n" if line else "", encoding="utf-8")
    with pytest.raises(UserError, match=needle):
        load_prompts(path)


def test_generation_stops_at_eos_and_batching_changes_no_answer(demo):
    out, _ = demo
    chat = Chat(str(out / "tiny-llama"), max_new_tokens=12)
    prompts = [render("김치를 오래 보관하려면?"), render("서울에서 부산까지 기차로 얼마나 걸리나요? 자세히 알려 주세요.")]
    alone = [chat.complete([p])[0] for p in prompts]
    assert chat.complete(prompts) == alone  # left padding changes nothing for greedy answers
    assert [(a.stopped, a.tokens) for a in alone] == [(False, 12)] * 2  # the random model never stops
    ids = chat.tok(prompts[0], return_tensors="pt")
    generated = chat.model.generate(**ids, max_new_tokens=12, do_sample=False,
                                    pad_token_id=chat.tok.eos_token_id)[0, ids.input_ids.shape[1]:].tolist()
    chat.tok.eos_token = chat.tok.convert_ids_to_tokens(generated[3])  # make its 4th token the eos
    stop = generated.index(generated[3])
    got = chat.complete([prompts[0]])[0]
    assert (got.stopped, got.tokens) == (True, stop)
    assert got.text == chat.tok.decode(generated[:stop], skip_special_tokens=True).strip()
    # in a batch, the row that stops is cut at its eos while the others go on: same answers as alone
    batch = chat.complete([prompts[1], prompts[0]])
    assert batch == [chat.complete([prompts[1]])[0], got]


def test_demo_behaviour_records_each_answer_and_its_scores(demo):
    out, _ = demo
    records = [json.loads(l) for l in (out / "lora" / "eval" / "behaviour-answers.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [p["id"] for p in load_prompts()]
    for r in records:
        assert {k: r[k] for k in behaviour.METRICS} == scores(r["answer"], bool(r["stopped"]))
        assert r["tokens"] < 128 if r["stopped"] else r["tokens"] == 128  # the demo's token limit
    saved = results.read(out / "lora" / "eval")["behaviour"]
    assert saved["results"]["behaviour"] == {"alias": "behaviour", **summary(records)}
    assert saved["n-samples"]["behaviour"]["effective"] == 30


def test_compare_lists_runs_side_by_side_and_a_run_without_results_as_missing(demo, tmp_path, capsys):
    out, _ = demo
    configs = []
    for name in ("full", "ablation"):
        run = tmp_path / name
        (run / "eval").mkdir(parents=True)
        config = tmp_path / f"{name}.yml"
        config.write_text(yaml.safe_dump({"extends": str(REPO / "axolotl_configs" / "aog-lora.yml"),
                                          "output_dir": str(run)}), encoding="utf-8")
        configs.append(config)
    for f in (out / "lora" / "eval").glob("*.json"):
        shutil.copy(f, tmp_path / "full" / "eval" / f.name)
    shutil.copy(out / "lora" / "adapter_model.safetensors", tmp_path / "full")  # the adapter they scored
    assert compare.main([*map(str, configs), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    table = printed.split("\n\n")[0].splitlines()
    assert table[0].endswith("| werty1248/Llama-3-Ko-8B-Instruct-AOG | full | ablation |")
    kobest = json.loads((tmp_path / "full" / "eval" / "kobest.json").read_text())["results"]["kobest_copa"]
    copa = next(l for l in table if l.startswith("| kobest_copa |"))
    assert copa.endswith(f"| {kobest['acc,none']:.4f}±{kobest['acc_stderr,none']:.4f} | missing |")
    assert f"**ablation** (`{tmp_path}/ablation/eval/`): missing, `make eval CONFIG={configs[1]}`" in printed
    assert f"**full** (`{tmp_path}/full/eval/`)" in printed
    assert "- kobest: 5-shot, 26 test documents; **not comparable: local files (data/eval-sample)**" in printed
    assert "earlier adapter" not in printed
    assert (tmp_path / "cmp.md").read_text(encoding="utf-8") == printed.split("wrote ")[0].rstrip("\n") + "\n"
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "full" / "adapter_model.safetensors").write_bytes(b"trained further")
    assert compare.main([*map(str, configs), "--out", str(tmp_path / "cmp")]) == 0
    assert "local files (data/eval-sample), scored an earlier adapter**" in capsys.readouterr().out
    # an eval folder of `make eval MODEL=...` (a base model) is a column too, named after the folder
    base = tmp_path / "outputs" / "eval" / "beomi__Llama-3-Open-Ko-8B"
    shutil.copytree(out / "lora" / "eval", base)
    assert compare.main([str(base), str(configs[0]), "--out", str(tmp_path / "cmp")]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(" | beomi__Llama-3-Open-Ko-8B | full |")


def test_make_compare_needs_configs():
    r = subprocess.run(["make", "--no-print-directory", "compare"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: set CONFIGS=")
