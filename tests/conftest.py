import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# Nothing in the suite may reach the Hub.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")


def write_jsonl(path: Path, rows) -> Path:
    """Rows as JSONL; a str row is written verbatim (for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def jsonl(tmp_path):
    def make(rows, name="src.jsonl"):
        return write_jsonl(tmp_path / name, rows)
    return make
