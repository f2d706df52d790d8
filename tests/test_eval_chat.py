"""`make chat` prompts (golden, shared with preprocessing and Axolotl) and `make eval` through the
real lm-evaluation-harness on the tiny demo model and our sample files in the benchmarks' schemas."""
import copy
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
from helpers import GOLDEN, REPO

from common.errors import UserError
from evaluation import harness, results
from evaluation.chat import render
from evaluation.harness import SHOTS, evaluate, load_data, plan, task_manager
from preprocess import guanaco_ko
from preprocess.contamination import KOBEST_TASKS
from preprocess.convert import RowContext
from preprocess.prompts import SYSTEM_INSTRUCTION as SYS

SAMPLE = REPO / "data" / "eval-sample"

# The card's own examples (Format & Examples), verbatim.
CARD_Q = "피보나치 수열이 뭐야? 그리고 피보나치 수열에 대해 파이썬 코드를 짜줘볼래?"
CARD_I = "친절한 챗봇으로서 상대방의 요청에 최대한 자세하고 친절하게 답하자."
CARD_A = ("피보나치 수열은 1차와 2차 수를 사용해 다음 수를 구하는 방식으로 만들어지는 순열입니다. 예를들면 피보나치 수열의 "
          "처음 7개 요소는 1, 1, 2, 3, 5, 8, 13입니다. 피보나치 수열의 각 위치에서 2개 이전 위치의 수를 더하여 새로운 요소가 "
          "계산됩니다.\n\nPython 코드는 다음과 같습니다.\n\ndef fibo(n):\n    if n<2:\n         return n\n    else:\n"
          "         return fibo(n-1)+fibo(n-2)\n\n이렇게 작성함으로써 피보나치 수열의 위치 0부터 n까지 각 요소가 계산됩니다. "
          "6이라는 위치로 계산하는 경우 다음과 같은 출력이 나타납니다:\n\nprint(fibo(6))\n\nfibonacci(6)==> 8")


def test_one_turn_prompt_is_the_cards_example():
    assert render(CARD_Q, instruction=CARD_I) == (
        "### Question:\n피보나치 수열이 뭐야? 그리고 피보나치 수열에 대해 파이썬 코드를 짜줘볼래?\n\n"
        "### Instruction:\n친절한 챗봇으로서 상대방의 요청에 최대한 자세하고 친절하게 답하자.\n\n### Response:\n")


def test_multi_turn_prompt_is_the_cards_multi_turn_example():
    assert render("더 빠른 알고리즘은 없을까?", [(CARD_Q, CARD_A)], instruction=CARD_I) == (
        f"### Question:\n{CARD_Q}\n### Response:\n{CARD_A}\n### Question:\n더 빠른 알고리즘은 없을까?\n\n"
        f"### Instruction:\n{CARD_I}\n\n### Response:\n")


def test_three_turn_prompt_matches_what_preprocessing_renders_for_guanaco():
    text = "### Human: 질문1### Assistant: 답1### Human: 질문2### Assistant: 답2### Human: 질문3### Assistant: 답3"
    row = guanaco_ko.convert({"text": text}, RowContext("guanaco_ko", 42, 1.0))
    prompt = render("질문3", [("질문1", "답1"), ("질문2", "답2")])
    assert prompt == "### Question:\n질문1\n### Response:\n답1\n### Question:\n질문2\n### Response:\n답2\n" \
                     f"### Question:\n질문3\n\n### Instruction:\n{SYS}\n\n### Response:\n"
    assert prompt == f"### Question:\n{row['input']}\n\n### Instruction:\n{row['instruction']}\n\n### Response:\n"


def test_alpaca_format_is_exactly_what_axolotl_trained_on():
    history = [("자전거 체인에서 소리가 나면 어떻게 해야 하나요?",
                "체인이 말라 있거나 먼지가 많으면 소리가 납니다. 마른 천으로 체인을 닦은 뒤 전용 윤활유를 한 방울씩 바르고, "
                "남은 기름은 닦아 내면 됩니다."),
               ("예를 하나만 더 들어 줄래?", "물론입니다. 비슷한 예로, 같은 원리가 일상에서도 자주 나타납니다.")]
    prompt = render("고마워. 주의할 점도 있을까?", history, fmt="alpaca")
    assert "<|begin_of_text|>" + prompt == GOLDEN[2][0]  # the golden checked against Axolotl's prepared rows


def chat(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "evaluation.chat", *map(str, args)], cwd=REPO, input=stdin,
                          capture_output=True, text=True)


def test_interactive_chat_keeps_history_until_reset(demo):
    out, _ = demo
    r = chat(out / "tiny-llama", "--adapter", out / "lora", "--max-new-tokens", "3", "--show-prompt",
             stdin="첫 질문\n두 번째 질문\n/reset\n세 번째 질문\n/exit\n")
    assert r.returncode == 0, r.stderr
    prompts = r.stdout.split("### Question:\n")
    assert prompts[1].startswith("첫 질문\n\n### Instruction:")
    assert prompts[2].startswith("첫 질문\n### Response:\n") and prompts[3].startswith("두 번째 질문\n\n")
    assert prompts[4].startswith("세 번째 질문\n\n### Instruction:") and len(prompts) == 5


def test_chat_with_a_missing_model_is_a_clear_error(tmp_path):
    r = chat(tmp_path / "no-model", "--question", "x")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def eval_runs(demo):
    """One task, three ways: the property is equality of scores, not coverage (the demo ran all five)."""
    out, _ = demo
    tiny, lora, merged = str(out / "tiny-llama"), str(out / "lora"), str(out / "lora" / "merged")
    kw = dict(data_dir=SAMPLE, batch_size=4, log_samples=True, tasks=["kobest_boolq"])
    return {k: evaluate(*m, **kw)["kobest_boolq"] for k, m in
            (("adapter", (tiny, lora)), ("merged", (merged,)), ("base", (tiny,)))}


@pytest.fixture(scope="module")
def demo_eval(demo):
    """What the demo's `evaluation.harness` run (adapter on the tiny model) wrote, by task."""
    out, _ = demo
    return results.read(out / "lora" / "eval")


@pytest.fixture(scope="module")
def tm():
    return task_manager()


def loglikelihoods(res, task):
    samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
    return [float(r[0]) for s in samples for r in s["filtered_resps"]]  # one per (doc, choice)


def lines(path):
    return len(path.read_text(encoding="utf-8").splitlines())


def test_demo_ran_each_benchmark_with_its_shots_on_local_data(demo_eval):
    assert list(demo_eval) == ["kobest", "kmmlu_humss", "haerae", "behaviour"]
    kobest, kmmlu, haerae = demo_eval["kobest"], demo_eval["kmmlu_humss"], demo_eval["haerae"]
    for t in KOBEST_TASKS:
        assert kobest["n-shot"][f"kobest_{t}"] == SHOTS["kobest"] == 5
        assert kobest["n-samples"][f"kobest_{t}"]["effective"] == lines(SAMPLE / "kobest" / t / "test.jsonl")
        assert 0 <= kobest["results"][f"kobest_{t}"]["acc,none"] <= 1
    # the harness's own prompt and group average were used, only the data source changed
    assert kobest["configs"]["kobest_boolq"]["doc_to_text"] == "{{paragraph}} 질문: {{question}} 답변: "
    assert kobest["configs"]["kobest_boolq"]["dataset_path"] == "json"
    assert kobest["group_subtasks"]["kobest"] == [f"kobest_{t}" for t in KOBEST_TASKS]
    subjects = sorted(p.name for p in (SAMPLE / "kmmlu").iterdir())
    assert len(subjects) == 11 and set(kmmlu["n-shot"].values()) == {5}
    assert sum(v["effective"] for v in kmmlu["n-samples"].values()) == 2 * len(subjects)
    assert kmmlu["configs"]["kmmlu_korean_history"]["doc_to_text"].endswith("\n정답：")
    assert set(haerae["n-shot"].values()) == {SHOTS["haerae"]} == {0}
    assert len(haerae["group_subtasks"]["haerae"]) == 5 and haerae["results"]["haerae"]["acc,none"] >= 0
    # the group's accuracy is the harness's size-weighted mean of its tasks
    n = {t: kobest["n-samples"][f"kobest_{t}"]["effective"] for t in KOBEST_TASKS}
    mean = sum(kobest["results"][f"kobest_{t}"]["acc,none"] * n[t] for t in KOBEST_TASKS) / sum(n.values())
    assert kobest["results"]["kobest"]["acc,none"] == pytest.approx(mean)


def test_adapter_without_merging_scores_like_the_merged_model(eval_runs):
    a, m, b = (loglikelihoods(eval_runs[k], "kobest_boolq") for k in ("adapter", "merged", "base"))
    assert len(a) == len(m) == len(b) == 2 * lines(SAMPLE / "kobest" / "boolq" / "test.jsonl")
    adapter_vs_merged = max(abs(x - y) for x, y in zip(a, m))
    adapter_vs_base = max(abs(x - y) for x, y in zip(a, b))
    assert adapter_vs_merged < 1e-4  # float noise only
    assert adapter_vs_base > 100 * adapter_vs_merged  # the adapter really changes the scores


def test_table_has_the_cards_columns_and_the_difference(demo_eval):
    table = results.table({"my-run": demo_eval}, delta=True).splitlines()
    assert table[0] == ("| Task | Metric | werty1248/Llama-3-Ko-8B-OpenOrca | beomi/Llama-3-Open-Ko-8B | "
                        "werty1248/Llama-3-Ko-8B-Instruct-AOG | my-run | Δ vs Llama-3-Ko-8B-Instruct-AOG |")
    boolq = next(l for l in table if l.startswith("| kobest_boolq |"))
    acc = demo_eval["kobest"]["results"]["kobest_boolq"]["acc,none"]
    assert "| acc | 0.7158±0.0120 | 0.7963±0.0108 | 0.8312±0.0100 |" in boolq
    assert boolq.endswith(f"| {acc - 0.8312:+.4f} |")
    # rows: each task and its direct subtasks; behaviour's four scores
    assert [l.split(" | ")[0][2:] for l in table[2:]] == [
        "kobest", *(f"kobest_{t}" for t in KOBEST_TASKS), "kmmlu_humss",
        *demo_eval["kmmlu_humss"]["group_subtasks"]["kmmlu_humss"], "haerae",
        *demo_eval["haerae"]["group_subtasks"]["haerae"], *["behaviour"] * 4]
    assert results.CARD["werty1248/Llama-3-Ko-8B-Instruct-AOG"]["hellaswag"] == (0.4700, 0.0223)


def test_a_row_shows_the_current_adapters_result_and_marks_an_earlier_one(demo_eval):
    stale = copy.deepcopy(demo_eval["kobest"])
    stale["recipe"]["adapter_sha256"] = "earlier"
    stale["results"]["kobest_copa"]["acc,none"] = 0.1234
    current = demo_eval["kobest"]["recipe"]["adapter_sha256"]
    alone = {k: v for k, v in demo_eval["kobest"].items() if k != "group_subtasks"}  # kobest_copa run alone
    alone["results"] = {"kobest_copa": demo_eval["kobest"]["results"]["kobest_copa"]}
    table = results.table({"run": {"kobest": stale, "kobest_copa": alone}}, delta=True, digests={"run": current})
    copa = next(l for l in table.splitlines() if l.startswith("| kobest_copa |"))
    boolq = next(l for l in table.splitlines() if l.startswith("| kobest_boolq |"))
    assert "0.1234" not in copa and "†" not in copa  # the current result, not the stale one
    assert boolq.split(" | ")[5].endswith("†") and table.rstrip().endswith("rerun `make eval` for it.")


def test_demo_wrote_one_file_per_task_and_the_table(demo, demo_eval):
    out, _ = demo
    raw = demo_eval["kobest"]
    assert "samples" not in raw and raw["recipe"]["not_comparable"] == ["local files (data/eval-sample)"]
    adapter = (out / "lora" / "adapter_model.safetensors").read_bytes()
    assert {r["recipe"]["adapter_sha256"] for r in demo_eval.values()} == {hashlib.sha256(adapter).hexdigest()}
    md = (out / "lora" / "eval" / "results.md").read_text(encoding="utf-8")
    assert md.count("| kobest_") == 5 and md.count("| behaviour |") == 4
    assert "- behaviour: 30 prompts, greedy, 128 new tokens at most; **not comparable: token limit 128**" in md


def test_unknown_task_or_missing_local_files_are_clear_errors_before_loading(tm, tmp_path, capsys):
    with pytest.raises(UserError, match=r"unknown task 'kmmlu_stem_tasks'.*kobest, kmmlu, haerae, behaviour"):
        plan(["kmmlu_stem_tasks"], None, tm)  # a tag, not a group: the harness would not average it
    with pytest.raises(UserError, match=r"10 local eval file\(s\) not found, e.g. .*/kobest/boolq/test.jsonl"):
        plan(["kobest"], tmp_path, tm)
    # the sample holds one KMMLU category: the whole benchmark lacks the other 34 subjects' dev and test
    with pytest.raises(UserError, match=r"^68 local eval file\(s\) not found"):
        plan(["kmmlu"], SAMPLE, tm)
    assert harness.main(["--model", "x", "--tasks", "kobest,kobst"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'kobst'") and len(err.splitlines()) == 1


def test_a_malformed_local_file_or_bad_option_is_one_line_before_the_model_loads(tm, tmp_path, capsys):
    shutil.copytree(SAMPLE / "kobest", tmp_path / "kobest")
    with (tmp_path / "kobest" / "copa" / "test.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"premise": "끝나지 않은 줄\n')
    with pytest.raises(UserError, match=r"^kobest_copa: cannot load its data \(DatasetGenerationError: .*JSON parse error.*\)\. Check the files under .*/kobest/$"):
        load_data(tm, plan(["kobest_copa"], tmp_path, tm)[1], tmp_path)
    for option, value in (("--limit", "0"), ("--batch-size", "abc"), ("--max-new-tokens", "-5")):
        with pytest.raises(SystemExit) as e:
            harness.main(["--model", "x", option, value])
        assert e.value.code == 2 and f"{option}: expected a whole number of 1 or more" in capsys.readouterr().err


def test_local_data_keeps_the_harness_groups(tm, tmp_path):
    """KMMLU's tree (4 categories, each averaging its tagged subjects) rebuilt over local files."""
    from lm_eval import utils

    leaves = {}
    for name, entry in tm.task_index.items():
        if name.startswith("kmmlu_") and entry["type"] == "task" and "kmmlu/default/" in entry["yaml_path"]:
            leaves[name] = utils.load_yaml_config(entry["yaml_path"], mode="full")["dataset_name"]
    assert len(leaves) == 45
    for config in leaves.values():
        (tmp_path / "kmmlu" / config).mkdir(parents=True)
        for split in ("dev", "test"):
            (tmp_path / "kmmlu" / config / f"{split}.jsonl").touch()
    _, specs = plan(["kmmlu", "haerae"], None, tm)
    assert specs == {"kmmlu": ("kmmlu", "kmmlu"), "haerae": ("haerae", "haerae")}  # the Hub: the names as they are
    _, specs = plan(["kmmlu"], tmp_path, tm)
    top = specs["kmmlu"][1]
    assert top["group"] == "kmmlu" and top["aggregate_metric_list"][0]["weight_by_size"] is True
    assert [g["group"] for g in top["task"]] == ["kmmlu_stem", "kmmlu_other", "kmmlu_applied_science", "kmmlu_humss"]
    got = {t["task"]: t for g in top["task"] for t in g["task"]}
    assert set(got) == set(leaves)
    assert got["kmmlu_korean_history"]["dataset_kwargs"]["data_files"] == {
        s: str(tmp_path / "kmmlu" / "Korean-History" / f"{s}.jsonl") for s in ("dev", "test")}


def test_make_chat_passes_the_question_as_text(tmp_path):
    """Quotes, backticks and $(...) in Q reach Python unchanged and run nothing."""
    show = tmp_path / "show-args"
    show.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    show.chmod(0o755)
    question = 'say "hi" `touch %s/a` $(touch %s/b) $HOME \'x\'' % (tmp_path, tmp_path)
    done = subprocess.run(["make", "--no-print-directory", "chat", f"PY={show}", "MODEL=m", f"Q={question}"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    args = done.stdout.splitlines()
    assert args[args.index("--question") + 1] == question
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.e2e  # imports lm-eval and transformers in two subprocesses
def test_eval_of_an_empty_adapter_folder_or_unknown_model_is_one_line(tmp_path):
    (tmp_path / "adapter").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for args, needle in (([ "--model", "no-such-org/no-such-model"], "cannot load no-such-org/no-such-model"),
                         (["--model", "no-such-org/m", "--adapter", str(tmp_path / "adapter")], "no adapter_config.json")):
        done = subprocess.run([sys.executable, "-m", "evaluation.harness", *args, "--data-dir", "data/eval-sample",
                               "--out", str(tmp_path / "eval"), "--limit", "1"], cwd=REPO, capture_output=True,
                              text=True, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1].startswith("error: ") and needle in done.stderr
