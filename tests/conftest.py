import os
import subprocess
import tempfile

import pytest
from helpers import REPO, write_jsonl

# Nothing in the suite may reach the Hub, and its caches stay out of ~/.cache.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled",
                  HF_HOME=tempfile.mkdtemp(prefix="hf_home_"))


@pytest.fixture
def jsonl(tmp_path):
    def make(rows, name="src.jsonl"):
        return write_jsonl(tmp_path / name, rows)
    return make


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """`make demo` into a temporary folder: (folder, its output: stdout then stderr). Shared by the
    Axolotl, chat, eval and preflight tests."""
    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO={out}"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r.stdout + r.stderr


# Fixtures that run Axolotl end to end (minutes): a test that uses one, directly or through another
# fixture, is an e2e test.
E2E_FIXTURES = {"demo", "preflight_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
