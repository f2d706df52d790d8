"""Reruns, the system-instruction rate, input formats, bad input and atomic writes."""
import json
import os
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO, read_jsonl, write_jsonl

from benchmarks.synthetic import REAL_SIZES, ROWS
from common.errors import UserError
from preprocess import guanaco_ko, koalpaca
from preprocess.convert import build, converter, system_coin
from preprocess.prompts import SYSTEM_INSTRUCTION
from preprocess.sources import GUANACO_KO, KOALPACA, SOURCES


def cli(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", f"preprocess{module}", *map(str, args), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, env=env)


def strip_provenance(rows):
    return [{k: r[k] for k in ("instruction", "input", "output")} for r in rows]


def test_rerun_is_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert cli("", "--sample", "--output-dir", out).returncode == 0
    for name in SOURCES:
        for suffix in (".jsonl", ".stats.json"):
            assert (a / f"{name}{suffix}").read_bytes() == (b / f"{name}{suffix}").read_bytes()


def test_coin_does_not_depend_on_row_order(tmp_path):
    rows = ROWS["guanaco_ko"](500, seed=1)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    outs = []
    for i, src in enumerate((rows, shuffled)):
        build(GUANACO_KO, guanaco_ko.convert, str(write_jsonl(tmp_path / f"s{i}.jsonl", src)),
              tmp_path / f"o{i}.jsonl", progress=False)
        outs.append(strip_provenance(read_jsonl(tmp_path / f"o{i}.jsonl")))
    key = lambda r: r["output"]  # noqa: E731 - outputs are unique in the synthetic set
    assert sorted(outs[0], key=key) == sorted(outs[1], key=key)


def test_coin_depends_on_seed_source_and_identity_and_nothing_else():
    def draws(seed=42, source="koalpaca", rate=0.5):
        return [system_coin(seed, source, f"row {i}", rate) for i in range(2000)]

    base = draws()
    assert base == draws()  # a pure function: the same inputs draw the same coins
    assert draws(seed=43) != base  # each input on its own changes the draws
    assert draws(source="guanaco_ko") != base
    assert [system_coin(42, "koalpaca", f"row {i}!", 0.5) for i in range(2000)] != base
    assert all(draws(rate=1.0)) and not any(draws(rate=0.0))


@pytest.mark.parametrize("rate", [0.8, 0.3])
@pytest.mark.parametrize("source", ["koalpaca", "guanaco_ko"])
def test_share_is_within_one_point_of_the_rate_at_the_real_size(source, rate):
    # the coin alone, on as many identities as the real set has rows
    draws = [system_coin(42, source, f"row {i}", rate) for i in range(REAL_SIZES[source])]
    assert abs(sum(draws) / len(draws) - rate) <= 0.01


def test_the_report_counts_the_system_instruction_rows_written(tmp_path):
    src = write_jsonl(tmp_path / "src.jsonl", ROWS["koalpaca"](1000))
    stats = build(KOALPACA, koalpaca.convert, str(src), tmp_path / "o.jsonl", progress=False)
    with_system = [r for r in read_jsonl(tmp_path / "o.jsonl") if r["instruction"] == SYSTEM_INSTRUCTION]
    assert stats["rows_written"] == 1000 and stats["system_rate"] == 0.8
    assert stats["system_instruction_rows"] == len(with_system)
    assert stats["system_instruction_share"] == round(len(with_system) / 1000, 6)
    assert abs(stats["system_instruction_share"] - 0.8) <= 0.05


def test_system_rate_zero_and_one(tmp_path):
    src = str(KOALPACA.sample_path)
    assert build(KOALPACA, koalpaca.convert, src, tmp_path / "a.jsonl", system_rate=0.0,
                 progress=False)["system_instruction_rows"] == 0
    all_rows = build(KOALPACA, koalpaca.convert, src, tmp_path / "b.jsonl", system_rate=1.0, progress=False)
    assert all_rows["system_instruction_rows"] == all_rows["rows_written"] == 25


def test_json_array_and_parquet_give_the_same_rows(tmp_path):
    rows = [{"instruction": f"질문 {i}", "output": f"답 {i}", "url": ""} for i in range(20)]
    (tmp_path / "a.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    outs = []
    for src in (write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "a.json", tmp_path / "a.parquet"):
        build(KOALPACA, koalpaca.convert, str(src), tmp_path / "o.jsonl", progress=False)
        outs.append((tmp_path / "o.jsonl").read_bytes())
    assert outs[0] == outs[1] == outs[2] and len(outs[0].splitlines()) == 20


def test_each_converter_runs_alone_with_the_same_interface(tmp_path):
    for name, source in SOURCES.items():
        out = tmp_path / f"{name}.jsonl"
        r = cli(f".{name}", "--input", source.sample_path, "--output", out, "--seed", 3, "--system-rate", 0.5)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{name}: ") and out.exists() and (tmp_path / f"{name}.stats.json").exists()
        assert json.loads((tmp_path / f"{name}.stats.json").read_text())["seed"] == 3


def assert_clean_error(r, *needles):
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    for n in needles:
        assert n in r.stderr, r.stderr


def test_missing_required_column_is_one_clear_error(tmp_path):
    src = write_jsonl(tmp_path / "noout.jsonl", [{"instruction": "질문", "url": ""}] * 3)
    out = tmp_path / "o.jsonl"
    r = cli(".koalpaca", "--input", src, "--output", out)
    assert_clean_error(r, str(src), "'output'", "columns found: instruction, url")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and os.listdir(tmp_path) == ["noout.jsonl"]


def test_missing_column_in_parquet(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"id": "x", "instruction": "q", "input": "i"}]), tmp_path / "o.parquet")
    assert_clean_error(cli(".openorca_ko", "--input", tmp_path / "o.parquet", "--output", tmp_path / "o.jsonl"),
                       "'output'")


def test_openorca_null_or_missing_input_is_an_empty_input(tmp_path):
    rows = [{"id": "a", "instruction": "q1", "input": None, "output": "a1"}, {"id": "b", "instruction": "q2", "output": "a2"},
            {"id": "c", "instruction": "q3", "input": "맥락", "output": "a3"}, {"id": "d", "instruction": "q4", "input": 7, "output": "a4"}]
    stats = build(SOURCES["openorca_ko"], converter("openorca_ko"), str(write_jsonl(tmp_path / "in.jsonl", rows)),
                  tmp_path / "o.jsonl", progress=False)
    assert [r["input"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["", "", "맥락"]
    assert stats["notes"] == {"input_null_or_missing": 2} and stats["dropped"]["wrong_type"] == 1


@pytest.mark.parametrize("args, needle", [
    (["--input", "does/not/exist.jsonl"], "input file not found"),
    (["--input", "requirements.txt"], "unsupported file type '.txt'"),
    (["--system-rate", "1.5", "--input", "data/sample/koalpaca.jsonl"], "between 0 and 1"),
])
def test_bad_arguments(tmp_path, args, needle):
    assert_clean_error(cli(".koalpaca", *args, "--output", tmp_path / "o.jsonl"), needle)
    assert not (tmp_path / "o.jsonl").exists()


def test_file_with_no_usable_row_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "bad.jsonl", ["not json", {"text": "### Human: 답이 없음"}])
    r = cli(".guanaco_ko", "--input", src, "--output", tmp_path / "o.jsonl")
    assert_clean_error(r, "no usable rows", "bad_json=1", "no_assistant_turn=1")
    assert not (tmp_path / "o.jsonl").exists()


def test_hub_unreachable_is_a_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    r = cli(".openorca_ko", "--output", tmp_path / "o.jsonl", env=env)
    assert_clean_error(r, "kyujinpy/OpenOrca-KO", "--input", "make data SOURCE=sample")
    assert not (tmp_path / "o.jsonl").exists()


def test_failure_mid_write_keeps_the_previous_output(tmp_path):
    out = tmp_path / "koalpaca.jsonl"
    build(KOALPACA, koalpaca.convert, str(KOALPACA.sample_path), out, progress=False)
    before = out.read_bytes(), (tmp_path / "koalpaca.stats.json").read_bytes()
    calls = []

    def failing(row, ctx):
        calls.append(row)
        if len(calls) == 10:
            raise RuntimeError("disk full")
        return koalpaca.convert(row, ctx)

    with pytest.raises(RuntimeError):
        build(KOALPACA, failing, str(KOALPACA.sample_path), out, system_rate=0.0, progress=False)
    assert (out.read_bytes(), (tmp_path / "koalpaca.stats.json").read_bytes()) == before
    # no temp files left; the lock file stays (filelock keeps it so that waiting writers share one inode)
    assert sorted(os.listdir(tmp_path)) == [".koalpaca.jsonl.lock", "koalpaca.jsonl", "koalpaca.stats.json"]


def test_input_error_is_raised_before_any_file_is_created(tmp_path):
    with pytest.raises(UserError):
        build(KOALPACA, koalpaca.convert, str(tmp_path / "missing.jsonl"), tmp_path / "sub" / "o.jsonl")
    assert not (tmp_path / "sub").exists()


def test_system_instruction_is_defined_in_one_module_only():
    holders = [p.relative_to(REPO) for d in ("common", "preprocess", "training", "evaluation", "publishing",
                                             "benchmarks", "axolotl_configs", "data")
               for p in (REPO / d).rglob("*") if p.is_file() and p.suffix in (".py", ".yml", ".yaml")
               and "상세한 답변을 제공하세요" in p.read_text(encoding="utf-8")]
    assert [str(p) for p in holders] == ["preprocess/prompts.py"]
    assert SYSTEM_INSTRUCTION.endswith("상세한 답변을 제공하세요.")


# ---- decontamination (make data DECONTAMINATE=1)

def test_short_kobest_texts_are_matched_whole():
    from preprocess.contamination import NgramIndex

    index = NgramIndex([("copa", 0, "비가 왔다."), ("sentineg", 1, "정말 좋은 영화 였다 최고")])
    assert index.match("어제는 비가 왔다 그래서") == (("비가", "왔다"), ("copa", 0))
    assert index.match("비가 많이 왔다") is None  # whole and contiguous only
    assert index.row_match({"instruction": "정말 좋은", "input": None, "output": "영화 였다 최고"})[1] == ("sentineg", 1)


def test_make_data_decontaminate_writes_a_filtered_copy(tmp_path):
    import shutil

    kobest = tmp_path / "kobest"
    shutil.copytree(REPO / "data" / "eval-sample" / "kobest", kobest)
    planted = read_jsonl(REPO / "data" / "sample" / "openorca_ko.jsonl")[0]["output"]
    copa = read_jsonl(kobest / "copa" / "test.jsonl")
    copa[0]["alternative_1"] = " ".join(planted.split()[:3])  # a 3-word KoBEST text inside a training answer
    write_jsonl(kobest / "copa" / "test.jsonl", copa)
    out = tmp_path / "processed"
    r = cli("", "--sample", "--output-dir", out, "--decontaminate", "--kobest-dir", kobest)
    assert r.returncode == 0, r.stderr
    clean = tmp_path / "processed-decontaminated"
    for name in SOURCES:
        full, kept = read_jsonl(out / f"{name}.jsonl"), read_jsonl(clean / f"{name}.jsonl")
        stats = json.loads((clean / f"{name}.stats.json").read_text(encoding="utf-8"))
        assert len(full) - len(kept) == stats["dropped"]["kobest_overlap"]
        assert all(row in full for row in kept)
    assert json.loads((clean / "openorca_ko.stats.json").read_text())["dropped"]["kobest_overlap"] >= 1
    bad = cli("", "--sample", "--output-dir", tmp_path / "x", "--decontaminate", "--kobest-dir", tmp_path / "nope")
    assert bad.returncode == 2 and "test file not found" in bad.stderr
    assert bad.stderr.startswith("error: cannot read KoBEST for --decontaminate") and not (tmp_path / "x").exists()


def test_the_fast_batch_match_gives_the_answers_of_match():
    from preprocess.contamination import NgramIndex, load_kobest

    docs = load_kobest(REPO / "data" / "eval-sample" / "kobest") + [("copa", 99, "비가 왔다."), ("wic", 98, "그 사람은 좋다")]
    index = NgramIndex(docs)
    assert len(index.sizes) > 2  # whole short texts of several lengths, and 8-grams
    rng = random.Random(3)
    texts = [row["output"] for row in ROWS["koalpaca"](300, seed=5)]
    for i in range(0, 300, 7):  # plant KoBEST texts, whole or cut, at random places
        text = rng.choice(docs)[2]
        words = text.split()
        cut = " ".join(words[:rng.randint(1, len(words))])
        texts[i] = f"{texts[i][:50]} {rng.choice((text, cut))} {texts[i][50:]}"
    texts += ["", "비가", "어제는 비가 왔다 그래서", "그 사람은 좋다 비가 왔다"]
    expected = [index.match(t) for t in texts]
    assert index.matches(texts, chunk=64) == expected
    assert sum(e is not None for e in expected) > 20 and expected[-2] == (("비가", "왔다"), ("copa", 99))
