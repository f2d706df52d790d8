"""Hostile and careless input to the converters (from a sweep of about 130 of them): each ends as a
counted drop or a one-line error, and nothing a user had is lost."""
import hashlib
import json
import subprocess
import sys
import unicodedata

import pytest
from helpers import REPO, read_jsonl, write_jsonl

from common.errors import UserError
from common.files import sha256_file
from preprocess import koalpaca
from preprocess.convert import _hub_checks, build, converter
from preprocess.sources import KOALPACA, OPENORCA_KO, SAMPLE_DIR, SOURCES


def cli(module, *args):
    return subprocess.run([sys.executable, "-m", f"preprocess{module}", *map(str, args), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True)


def one_line_error(r, *needles):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_the_bundled_samples_cannot_be_overwritten():
    before = {p.name: sha256_file(p) for p in SAMPLE_DIR.iterdir()}
    one_line_error(cli("", "--sample", "--output-dir", "data/sample"), "refusing to write into")
    one_line_error(cli(".koalpaca", "--input", KOALPACA.sample_path, "--output", KOALPACA.sample_path),
                   "refusing to write into")
    assert {p.name: sha256_file(p) for p in SAMPLE_DIR.iterdir()} == before


def test_input_that_is_the_output_or_our_own_output_is_refused(tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", [{"instruction": "질문", "output": "답"}])
    before = raw.read_bytes()
    one_line_error(cli(".koalpaca", "--input", raw, "--output", raw), "the input is also the output")
    assert raw.read_bytes() == before
    assert cli(".koalpaca", "--input", raw, "--output", tmp_path / "ours.jsonl").returncode == 0
    one_line_error(cli(".koalpaca", "--input", tmp_path / "ours.jsonl", "--output", tmp_path / "again.jsonl"),
                   "looks like converted output", "source and source_row")
    one_line_error(cli(".koalpaca", "--input", raw, "--output", tmp_path), "is a folder")


def test_unreadable_rows_are_counted_with_their_line_numbers(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"instruction": "q1", "output": "a1"}\n'
                    '{"instruction": "\\ud800", "output": "lone surrogate"}\n'
                    + "[" * 100_000 + "]" * 100_000 + "\n"
                    '{"instruction": "q4", "output": "a4"}\n', encoding="utf-8")
    stats = build(KOALPACA, koalpaca.convert, str(path), tmp_path / "o.jsonl", progress=False)
    assert (stats["rows_written"], stats["dropped"]["bad_json"], stats["bad_json_lines"]) == (2, 2, [2, 3])
    assert [r["source_row"] for r in read_jsonl(tmp_path / "o.jsonl")] == [1, 4]


@pytest.mark.parametrize("invisible", ["\u200b", "\u200f", "\ufeff ", " \u200b\u2060 "])
def test_fields_of_only_invisible_characters_are_blank(tmp_path, invisible):
    rows = [{"instruction": invisible, "output": "답"}, {"instruction": "질문", "output": invisible},
            {"id": "x", "instruction": "질문", "input": "", "output": invisible}]
    for name, batch in (("koalpaca", rows[:2]), ("openorca_ko", rows[2:]),
                        ("guanaco_ko", [{"text": f"### Human: 질문### Assistant: {invisible}"}])):
        with pytest.raises(UserError, match="no usable rows"):
            build(SOURCES[name], converter(name), str(write_jsonl(tmp_path / f"{name}.jsonl", batch)),
                  tmp_path / f"{name}-out.jsonl", progress=False)


def test_hangul_is_written_in_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "김치를 보관하려면?")
    assert nfd != "김치를 보관하려면?"
    stats = build(KOALPACA, koalpaca.convert, str(write_jsonl(tmp_path / "in.jsonl", [
        {"instruction": nfd, "output": "냉장고에"}, {"instruction": "그대로", "output": "둡니다"}])), tmp_path / "o.jsonl",
        system_rate=0.0, progress=False)
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert rows[0]["instruction"] == "김치를 보관하려면?" and stats["notes"] == {"nfc_normalized": 1}


@pytest.mark.parametrize("content, needle", [
    (b"", "the file is empty"),
    (b"\n\n  \n", "the file is empty"),
    ('{"instruction": "질문", "output": "답"}\n'.encode("utf-16"), "UTF-16 text, not UTF-8"),
    ('{"instruction": "질문", "output": "답"}\n'.encode("cp949"), "not UTF-8 text"),
])
def test_what_is_really_wrong_with_a_file(tmp_path, content, needle):
    (tmp_path / "in.jsonl").write_bytes(content)
    one_line_error(cli(".koalpaca", "--input", tmp_path / "in.jsonl", "--output", tmp_path / "o.jsonl"), needle)
    assert not (tmp_path / "o.jsonl").exists()


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    (tmp_path / "in.jsonl").write_bytes(b"\xef\xbb\xbf" + '{"instruction": "질문", "output": "답"}\n'.encode())
    assert build(KOALPACA, koalpaca.convert, str(tmp_path / "in.jsonl"), tmp_path / "o.jsonl", progress=False)["rows_written"] == 1


def test_stale_temp_files_are_swept_and_the_report_matches_the_jsonl(tmp_path):
    out = tmp_path / "koalpaca.jsonl"
    stale = [tmp_path / ".koalpaca.jsonl.abc123.tmp", tmp_path / ".koalpaca.stats.json.def456.tmp"]
    for s in stale:
        s.write_bytes(b"x" * 1000)
    stats = build(KOALPACA, koalpaca.convert, str(KOALPACA.sample_path), out, progress=False)
    assert not any(s.exists() for s in stale)
    assert stats["output_sha256"] == sha256_file(out)


def test_concurrent_conversions_leave_a_jsonl_and_report_of_the_same_run(tmp_path):
    out = tmp_path / "koalpaca.jsonl"
    procs = [subprocess.Popen([sys.executable, "-m", "preprocess.koalpaca", "--input", str(KOALPACA.sample_path),
                               "--output", str(out), "--seed", str(seed), "--no-progress"], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for seed in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    stats = json.loads((tmp_path / "koalpaca.stats.json").read_text(encoding="utf-8"))
    assert stats["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".koalpaca.jsonl.lock", "koalpaca.jsonl", "koalpaca.stats.json"]


def test_exact_duplicates_within_a_source_are_counted(tmp_path):
    rows = [{"instruction": "같은 질문", "output": "같은 답"}] * 3 + [{"instruction": "다른 질문", "output": "답"}]
    stats = build(KOALPACA, koalpaca.convert, str(write_jsonl(tmp_path / "in.jsonl", rows)), tmp_path / "o.jsonl",
                  system_rate=0.0, progress=False)
    assert (stats["rows_written"], stats["duplicates_in_source"]) == (4, 2)


def test_a_hub_load_checks_the_row_count_and_shows_the_common_inputs(capsys):
    rows = [(i, {"id": str(i), "instruction": "q", "input": "You are an AI assistant." if i % 3 else "", "output": "a"})
            for i in range(1, 21_633)]
    assert "row_count_warning" not in _hub_checks(OPENORCA_KO, rows)
    checks = _hub_checks(OPENORCA_KO, rows + rows)  # both train files read: twice the rows
    assert checks["row_count_warning"].startswith("read 43,264 rows from kyujinpy/OpenOrca-KO, but its pinned split has 21,632")
    assert checks["common_input_values"] == [["You are an AI assistant.", 28_844], ["", 14_420]]
    err = capsys.readouterr().err
    assert "WARNING: openorca_ko: read 43,264 rows" in err and "the 20 most common `input` values" in err
    assert _hub_checks(KOALPACA, [(i, {}) for i in range(21_000)]) == {"expected_rows": 21_155}  # within 1%
