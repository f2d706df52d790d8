"""Synthetic source rows in the real schemas and at the real sizes, for the rate test and the
preprocessing benchmark. Deterministic for a given seed; the text is filler, not data."""
import random

# Train-split sizes of the pinned revisions (shared/research/datasets.md).
REAL_SIZES = {"koalpaca": 21_155, "openorca_ko": 21_632, "guanaco_ko": 9_846}

_WORDS = ("오늘 내일 학교 회사 사람 질문 답변 방법 이유 설명 데이터 모델 한국 서울 음식 건강 "
          "운동 공부 시간 문제 결과 과정 생각 경우 정보 이용 사용 필요 가능 중요").split()


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))) + "."


def koalpaca_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"instruction": _text(rng, 5, 30) + f" ({i})", "output": _text(rng, 60, 300),
             "url": f"https://kin.naver.com/qna/detail.naver?docId={i}"} for i in range(n)]


def openorca_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    prefixes = ("flan", "t0", "niv", "cot", "KoCoT")
    return [{"id": f"{prefixes[i % 5]}.{i}", "instruction": _text(rng, 10, 120),
             "input": "" if i % 4 == 0 else _text(rng, 8, 20), "output": _text(rng, 5, 200)}
            for i in range(n)]


def guanaco_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        turns = rng.choice((2, 2, 2, 4, 4, 6, 3))  # 3: ends with an unanswered Human turn
        text = "".join(f"### {'Human' if t % 2 == 0 else 'Assistant'}: "
                       + (_text(rng, 5, 40) if t % 2 == 0 else _text(rng, 40, 250))
                       for t in range(turns))
        rows.append({"text": text + f" ({i})"})
    return rows


ROWS = {"koalpaca": koalpaca_rows, "openorca_ko": openorca_rows, "guanaco_ko": guanaco_rows}
