"""Golden outputs of each conversion rule and edge case."""
import pytest
from helpers import SAMPLE_COUNTS, read_jsonl

from preprocess import guanaco_ko, koalpaca, openorca_ko
from preprocess.convert import build
from preprocess.prompts import SYSTEM_INSTRUCTION
from preprocess.sources import GUANACO_KO, KOALPACA, OPENORCA_KO

SYS = "당신은 인공지능 비서입니다. 사용자가 답을 이해하기 위해 외부에서 검색할 필요가 없도록 상세한 답변을 제공하세요."


def convert_rows(source, module, rows, jsonl, tmp_path, rate=0.8, seed=42):
    out = tmp_path / "out.jsonl"
    stats = build(source, module.convert, str(jsonl(rows)), out, seed=seed, system_rate=rate, progress=False)
    return read_jsonl(out), stats


def test_system_instruction_is_the_cards_sentence():
    assert SYSTEM_INSTRUCTION == SYS


def test_koalpaca_with_system_instruction(jsonl, tmp_path):
    rows, _ = convert_rows(KOALPACA, koalpaca, [{"instruction": " 김치는 어떻게 보관하나요? ", "output": "냉장 보관합니다.\n",
                                                 "url": "https://kin.naver.com/qna/detail.naver?docId=1"}],
                           jsonl, tmp_path, rate=1.0)
    assert rows == [{"instruction": SYS, "input": "김치는 어떻게 보관하나요?", "output": "냉장 보관합니다.",
                     "source": "koalpaca", "source_row": 1}]


def test_koalpaca_without_system_instruction(jsonl, tmp_path):
    rows, _ = convert_rows(KOALPACA, koalpaca, [{"instruction": "김치는 어떻게 보관하나요?", "output": "냉장 보관합니다.",
                                                 "url": ""}], jsonl, tmp_path, rate=0.0)
    assert rows == [{"instruction": "김치는 어떻게 보관하나요?", "input": "", "output": "냉장 보관합니다.",
                     "source": "koalpaca", "source_row": 1}]


def test_openorca_is_unchanged_field_for_field(jsonl, tmp_path):
    src = [{"id": "flan.1", "instruction": "  질문 그대로  ", "input": "", "output": "답 그대로\n"},
           {"id": "t0.2", "instruction": "두 번째", "input": SYS, "output": "둘"}]
    rows, stats = convert_rows(OPENORCA_KO, openorca_ko, src, jsonl, tmp_path, rate=1.0)
    assert rows == [{"instruction": "  질문 그대로  ", "input": "", "output": "답 그대로\n",
                     "source": "openorca_ko", "source_row": 1},
                    {"instruction": "두 번째", "input": SYS, "output": "둘", "source": "openorca_ko", "source_row": 2}]
    assert stats["system_rate"] is None  # the rate never applies to OpenOrca-KO


def test_guanaco_single_turn_is_like_koalpaca(jsonl, tmp_path):
    rows, _ = convert_rows(GUANACO_KO, guanaco_ko, [{"text": "### Human: 안녕?### Assistant: 안녕하세요!"}],
                           jsonl, tmp_path, rate=1.0)
    assert rows[0]["instruction"] == SYS and rows[0]["input"] == "안녕?" and rows[0]["output"] == "안녕하세요!"


def test_guanaco_multi_turn_renders_earlier_turns_with_card_markers(jsonl, tmp_path):
    text = ("### Human: 피보나치 수열이 뭐야?### Assistant: 앞의 두 수를 더해 만드는 수열입니다.\n\n예: 1, 1, 2"
            "### Human: 파이썬 코드는?### Assistant: def fibo(n): ..."
            "### Human: 더 빠른 방법은?### Assistant: 반복문을 쓰면 됩니다.")
    with_sys, _ = convert_rows(GUANACO_KO, guanaco_ko, [{"text": text}], jsonl, tmp_path, rate=1.0)
    user_text = ("피보나치 수열이 뭐야?\n### Response:\n앞의 두 수를 더해 만드는 수열입니다.\n\n예: 1, 1, 2\n"
                 "### Question:\n파이썬 코드는?\n### Response:\ndef fibo(n): ...\n"
                 "### Question:\n더 빠른 방법은?")
    assert with_sys == [{"instruction": SYS, "input": user_text, "output": "반복문을 쓰면 됩니다.",
                         "source": "guanaco_ko", "source_row": 1}]
    without, _ = convert_rows(GUANACO_KO, guanaco_ko, [{"text": text}], jsonl, tmp_path, rate=0.0)
    assert without[0]["instruction"] == user_text and without[0]["input"] == ""


def test_guanaco_trailing_human_turn_is_removed_and_counted(jsonl, tmp_path):
    rows, stats = convert_rows(GUANACO_KO, guanaco_ko,
                               [{"text": "### Human: 질문1### Assistant: 답1### Human: 답 없는 질문"}],
                               jsonl, tmp_path, rate=0.0)
    assert rows[0]["instruction"] == "질문1" and rows[0]["output"] == "답1"
    assert stats["notes"] == {"trailing_human_turn_removed": 1}


@pytest.mark.parametrize("text, reason", [
    ("### Human: 대답이 없습니다.", "no_assistant_turn"),
    ("표시가 없는 텍스트", "no_assistant_turn"),
    ("### Human: 하나### Human: 둘### Assistant: 답", "broken_alternation"),
    ("### Assistant: 비서가 먼저### Human: 질문", "broken_alternation"),
    ("### Human: 질문### Assistant: 답### Assistant: 또 답", "broken_alternation"),
    ("서두 텍스트### Human: 질문### Assistant: 답", "broken_alternation"),
    ("### Human: 질문### Assistant:   ", "empty_field"),
    ("### Human: ### Assistant: 답", "empty_field"),
])
def test_guanaco_drop_reasons(jsonl, tmp_path, text, reason):
    good = {"text": "### Human: 좋은 질문### Assistant: 좋은 답"}
    rows, stats = convert_rows(GUANACO_KO, guanaco_ko, [good, {"text": text}], jsonl, tmp_path)
    assert len(rows) == 1 and stats["rows_dropped"] == 1 and stats["dropped"][reason] == 1


@pytest.mark.parametrize("bad, reason", [
    ({"instruction": "  ", "output": "답", "url": ""}, "empty_field"),
    ({"instruction": "질문", "output": None, "url": ""}, "empty_field"),
    ({"instruction": "질문", "url": ""}, "empty_field"),
    ({"instruction": "질문", "output": 42, "url": ""}, "wrong_type"),
    ({"instruction": ["목록"], "output": "답", "url": ""}, "wrong_type"),
    ("[1, 2, 3]", "wrong_type"),
    ('{"instruction": "잘린 줄', "bad_json"),
])
def test_koalpaca_drop_reasons(jsonl, tmp_path, bad, reason):
    good = {"instruction": "질문", "output": "답", "url": ""}
    rows, stats = convert_rows(KOALPACA, koalpaca, [good, bad, good], jsonl, tmp_path)
    assert [r["source_row"] for r in rows] == [1, 3]
    assert stats["dropped"][reason] == 1 and stats["rows_dropped"] == 1
    assert stats["bad_json_lines"] == ([2] if reason == "bad_json" else [])


def test_openorca_drops_empty_output_but_keeps_empty_input(jsonl, tmp_path):
    src = [{"id": "a", "instruction": "질문", "input": "", "output": ""},
           {"id": "b", "instruction": "질문", "input": "", "output": "답"}]
    rows, stats = convert_rows(OPENORCA_KO, openorca_ko, src, jsonl, tmp_path)
    assert [r["source_row"] for r in rows] == [2] and stats["dropped"]["empty_field"] == 1


@pytest.mark.parametrize("name", SAMPLE_COUNTS)
def test_sample_build_counts(tmp_path, name):
    from preprocess.convert import converter
    from preprocess.sources import SOURCES
    source = SOURCES[name]
    read, written, dropped, bad_lines, notes = SAMPLE_COUNTS[name]
    stats = build(source, converter(name), str(source.sample_path),
                  tmp_path / f"{name}.jsonl", progress=False)
    assert (stats["rows_read"], stats["rows_written"]) == (read, written)
    assert {k: v for k, v in stats["dropped"].items() if v} == dropped
    assert stats["bad_json_lines"] == bad_lines and stats["notes"] == notes
    assert len(read_jsonl(tmp_path / f"{name}.jsonl")) == written
