"""`axolotl preprocess`, plus a record of every row's token counts as Axolotl produced them.

    python -m training.prepare RESOLVED_CONFIG       (run by training.run for make train and make preflight)

Axolotl tokenizes each dataset of a config, concatenates and shuffles them, drops rows longer than
``sequence_len`` and saves the result, which no longer says which dataset a row came from. This
runs the same command in-process and, at the moment Axolotl merges the tokenized datasets, writes
``lengths.parquet`` beside its output: for each dataset in config order, each row's tokens and
supervised tokens (labels that are not -100). Preflight reads that file instead of tokenizing again,
so its numbers are Axolotl's by construction and the data is tokenized once.
"""
import sys
from pathlib import Path

LENGTHS = "lengths.parquet"


def token_counts(dataset):
    """(tokens, supervised tokens) per row of a tokenized dataset, as two numpy arrays."""
    import numpy as np
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    ids, labels = table.column("input_ids").combine_chunks(), table.column("labels").combine_chunks()
    total = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    trained = pc.not_equal(pc.list_flatten(labels), -100).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(labels).to_numpy(zero_copy_only=False)
    supervised = np.bincount(parents[trained], minlength=len(total))
    return total, supervised


def write_lengths(datasets: list, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"dataset": [], "row": [], "tokens": [], "supervised": []}
    for i, ds in enumerate(datasets):
        total, supervised = token_counts(ds)
        columns["dataset"] += [i] * len(total)
        columns["row"] += range(1, len(total) + 1)
        columns["tokens"] += total.tolist()
        columns["supervised"] += supervised.tolist()
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), out)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    import axolotl.utils.data.sft as sft

    merge = sft.merge_datasets  # the one step where every dataset is tokenized and still apart

    def recording_merge(datasets, cfg):
        out = Path(cfg.dataset_prepared_path) / LENGTHS
        # the train split comes first (a test split would call again); only SFT rows have labels
        if not out.exists() and all({"input_ids", "labels"} <= set(ds.column_names) for ds in datasets):
            try:
                write_lengths(datasets, out)
            except Exception as e:  # noqa: BLE001 - a record for preflight never stops tokenization
                print(f"WARNING: {out} not written ({type(e).__name__}: {e}); preflight will ask for a rebuild",
                      file=sys.stderr)
        return merge(datasets, cfg)

    sft.merge_datasets = recording_merge
    from axolotl.cli.main import cli

    cli(["preprocess", *args, "--no-download"])  # click exits with Axolotl's status


if __name__ == "__main__":
    main()
