import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# Nothing in the suite may reach the Hub, and its caches stay out of ~/.cache.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled",
                  HF_HOME=tempfile.mkdtemp(prefix="hf_home_"))


def write_jsonl(path: Path, rows) -> Path:
    """Rows as JSONL; a str row is written verbatim (for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def load_prepared(record: Path):
    """The tokenized dataset a run's record (<output_dir>/axolotl.yml) points Axolotl at."""
    import yaml
    from datasets import load_from_disk

    folder = yaml.safe_load(record.read_text(encoding="utf-8"))["dataset_prepared_path"]
    [info] = Path(folder).glob("*/dataset_info.json")
    return load_from_disk(str(info.parent))


@pytest.fixture
def jsonl(tmp_path):
    def make(rows, name="src.jsonl"):
        return write_jsonl(tmp_path / name, rows)
    return make


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """`make demo` into a temporary folder: (folder, stdout). Shared by the Axolotl, chat and eval tests."""
    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO={out}"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r.stdout
