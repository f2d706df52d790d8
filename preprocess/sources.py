"""The training sources, defined once: Hub id, pinned revision, split and required columns.

Math/coding-heavy sets such as kyujinpy/KOpen-platypus are left out on purpose (model card).
"""
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESSED_DIR = REPO_ROOT / "data" / "processed"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_PROCESSED_DIR = REPO_ROOT / "data" / "processed-sample"


@dataclass(frozen=True)
class Source:
    name: str  # module name under preprocess/ and stem of every file this source produces
    hub_id: str
    revision: str  # full commit sha where one was verified; see README "Pinned revisions"
    split: str
    columns: tuple[str, ...]  # required, all strings
    adds_system_instruction: bool  # whether --system-rate applies (the card: not for OpenOrca-KO)
    rule: str  # the conversion, in a few words (model cards and reports)
    licence: str | None  # as declared on the dataset card; None where it declares none
    expected_rows: int  # rows of the pinned split, as the Hub's dataset viewer counts them
    data_files: str | None = None  # the one file to read where the revision holds stale copies
    common_values_of: str | None = None  # a column whose most common values a Hub load prints

    @property
    def sample_path(self) -> Path:
        return SAMPLE_DIR / f"{self.name}.jsonl"

    def output_path(self, out_dir: Path = PROCESSED_DIR) -> Path:
        return Path(out_dir) / f"{self.name}.jsonl"


KOALPACA = Source(
    name="koalpaca",
    hub_id="beomi/KoAlpaca-v1.1a",
    # No full commit sha of this repo could be verified offline; "main" has had one data
    # commit since 2023-05. The sha actually loaded is written to the .stats.json file.
    revision="main",
    split="train",
    columns=("instruction", "output"),
    adds_system_instruction=True,
    rule="the question becomes the Alpaca instruction",
    licence=None,
    expected_rows=21_155,
)
OPENORCA_KO = Source(
    name="openorca_ko",
    hub_id="kyujinpy/OpenOrca-KO",
    revision="7d2a8fda10e977fe4c137920b4a75aeeedfdda90",
    split="train",
    columns=("instruction", "output"),  # `input` may be null or missing: an empty input
    adds_system_instruction=False,
    rule="unchanged",
    licence="mit",
    expected_rows=21_632,
    # The pinned revision holds two uploads of the train file (c29a0cbb… 22.7 MB and the later
    # f62d5fce… 22.8 MB); without data_files `datasets` reads both, about twice the rows. The later
    # one is read; the row-count check says so loudly if that was the wrong choice.
    data_files="data/train-00000-of-00001-f62d5fce49611e85.parquet",
    # Whether `input` carries the original OpenOrca system prompt is settled by the first Hub load.
    common_values_of="input",
)
GUANACO_KO = Source(
    name="guanaco_ko",
    hub_id="nlpai-lab/openassistant-guanaco-ko",
    revision="ba76fac97845868dfbf30ebc12fc7739ea6643fb",
    split="train",
    columns=("text",),
    adds_system_instruction=True,
    rule="multi-turn: the last assistant answer is the target, earlier turns go into the prompt",
    licence="apache-2.0",
    expected_rows=9_846,
)

SOURCES = {s.name: s for s in (KOALPACA, OPENORCA_KO, GUANACO_KO)}
