"""What several test modules share: the repo path, JSONL files, a run's prepared data, and the
golden prompts of three bundled sample rows as Axolotl's `type: alpaca` renders them."""
import json
from pathlib import Path

from common.files import read_jsonl  # noqa: F401 - one JSONL reader, re-exported for the tests
from preprocess.prompts import SYSTEM_INSTRUCTION

REPO = Path(__file__).resolve().parent.parent

# The bundled samples cover every edge case of the converters; their exact counts are part of the spec:
# (rows read, rows written, drops by reason, bad JSON lines, notes).
SAMPLE_COUNTS = {
    "koalpaca": (29, 25, {"bad_json": 1, "wrong_type": 1, "empty_field": 2}, [22], {}),
    "openorca_ko": (27, 24, {"wrong_type": 2, "empty_field": 1}, [], {}),
    "guanaco_ko": (26, 20, {"empty_field": 2, "no_assistant_turn": 2, "broken_alternation": 2}, [],
                   {"trailing_human_turn_removed": 7}),
}


SAMPLE_ROWS = sum(written for _, written, *_ in SAMPLE_COUNTS.values())  # what `make data SOURCE=sample` writes


def write_jsonl(path: Path, rows) -> Path:
    """Rows as JSONL; a str row is written verbatim (for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def load_prepared(record: Path):
    """The tokenized dataset a run's record (<output_dir>/axolotl.yml) points Axolotl at."""
    import yaml
    from datasets import load_from_disk

    folder = yaml.safe_load(record.read_text(encoding="utf-8"))["dataset_prepared_path"]
    [info] = Path(folder).glob("*/dataset_info.json")
    return load_from_disk(str(info.parent))


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
