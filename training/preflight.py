"""Preflight: what a run would train on and what it will cost, found on a CPU before any GPU hour.

    python -m training.preflight CONFIG [--kobest-dir DIR] [--out DIR] [--utilisation U]

Token counts are Axolotl's own: preflight builds (or reuses) the tokenized data `make train` uses,
keyed on its content (``training.run.ensure_prepared``), and reads the per-row lengths recorded
beside it (``training.prepare``). So `make preflight` then `make train` tokenizes the data once.

Writes to ``outputs/preflight/<config>/``: ``data_card.md`` (per-source rows, drops, token
lengths, rows over sequence_len, supervised-token and system-instruction shares, duplicates,
KoBEST overlap, time and memory estimate), ``lengths.png``, ``contamination.jsonl`` (flagged
rows), ``preflight.json`` (every number) and ``manifest.json`` (sha256 of inputs and outputs,
resolved config, package versions, git commit, seeds).
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from common.errors import UserError, run_command
from common.files import read_jsonl, sha256_file, stats_path, write_atomic
from preprocess import contamination
from preprocess.prompts import SYSTEM_INSTRUCTION
from training import estimate
from training.config import check, load, missing_data, with_choices
from training.prepare import LENGTHS
from training.run import ensure_prepared, prepared_dir

PACKAGES = ("torch", "axolotl", "transformers", "peft", "datasets", "tokenizers", "lm_eval", "deepspeed")


def load_sources(cfg: dict) -> dict[str, tuple[Path, list[dict], dict | None]]:
    """source name -> (JSONL path, rows, the converter's .stats.json or None)."""
    missing = missing_data(cfg)
    if missing:
        raise UserError(f"training data not found: {', '.join(missing)}; build it first with `make data`")
    sources = {}
    for d in cfg["datasets"]:
        if d.get("type") != "alpaca":
            raise UserError(f"{d['path']}: preflight reads `type: alpaca` datasets only, got {d.get('type')!r}")
        path = Path(d["path"])
        rows = read_jsonl(path)
        stats = stats_path(path)
        name = path.name.removesuffix(".jsonl")
        sources[d["path"] if name in sources else name] = (
            path, rows, json.loads(stats.read_text()) if stats.is_file() else None)
    return sources  # in the config's order, which is Axolotl's


def tokenized_lengths(cfg: dict, sources: dict, where: Path) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """(rows Axolotl kept, source -> (tokens, supervised tokens) per row) of the tokenized data in
    ``where``, built first if it is not there."""
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    ensure_prepared({**cfg, "dataset_prepared_path": str(where)}, where)
    if not (where / LENGTHS).is_file():
        raise UserError(f"{where}/ holds tokenized data without {LENGTHS} (made before preflight read it): "
                        f"delete that folder and run again")
    table = pq.read_table(where / LENGTHS).to_pandas()
    groups = dict(list(table.groupby("dataset", sort=True)))
    if sorted(groups) != list(range(len(sources))):
        raise UserError(f"{where / LENGTHS} records datasets {sorted(groups)}, the config has {len(sources)}; "
                        "delete that folder and run again")
    lengths = {}
    for (name, (_, rows, _)), group in zip(sources.items(), (groups[i] for i in range(len(sources)))):
        if len(group) != len(rows):
            raise UserError(f"{name}: Axolotl tokenized {len(group)} rows of {len(rows)}; preflight cannot "
                            "attribute lengths to rows (a dataset type that filters rows?)")
        lengths[name] = list(zip(group["tokens"].tolist(), group["supervised"].tolist()))
    saved = list(where.glob("*/dataset_info.json"))
    if len(saved) != 1:
        raise UserError(f"{where}/ holds {len(saved)} tokenized datasets, not one (test_datasets?); "
                        "preflight reads configs with training datasets only")
    return len(load_from_disk(str(saved[0].parent))), lengths


def summarise(sources: dict, lengths: dict, sequence_len: int, strategy: str) -> tuple[list[dict], "object"]:
    """Per-source numbers for the data card, and the row-level frame behind them."""
    import pandas as pd

    frames = []
    for name, (_, rows, _) in sources.items():
        frames.append(pd.DataFrame({
            "source": name, "row": range(1, len(rows) + 1),
            "total": [t for t, _ in lengths[name]], "supervised": [s for _, s in lengths[name]],
            "system": [r["instruction"] == SYSTEM_INSTRUCTION for r in rows],
            "key": [json.dumps([r["instruction"], r.get("input", ""), r["output"]], ensure_ascii=False) for r in rows]}))
    df = pd.concat(frames, ignore_index=True)
    df["dup_in_source"] = df.duplicated(["source", "key"])
    first_source = df.groupby("key")["source"].transform("first")
    df["dup_other_source"] = ~df["dup_in_source"] & df.duplicated("key") & (first_source != df["source"])
    df["over"] = df["total"] > sequence_len
    summary = []
    for name, g in df.groupby("source", sort=False):
        stats = sources[name][2]
        kept = g[~g["over"]] if strategy == "drop" else g
        summary.append({
            "source": name, "rows": len(g),
            "dropped_by_converter": {k: v for k, v in (stats or {}).get("dropped", {}).items() if v},
            "tokens_p50": int(g["total"].quantile(0.5, interpolation="nearest")),
            "tokens_p90": int(g["total"].quantile(0.9, interpolation="nearest")),
            "tokens_p99": int(g["total"].quantile(0.99, interpolation="nearest")),
            "tokens_max": int(g["total"].max()),
            "over_sequence_len": int(g["over"].sum()),
            "tokens_trained": int(kept["total"].clip(upper=sequence_len).sum()),
            "supervised_share": round(float(kept["supervised"].sum() / max(kept["total"].sum(), 1)), 4),
            "system_instruction_share": round(float(g["system"].mean()), 4),
            "duplicates_in_source": int(g["dup_in_source"].sum()),
            "duplicates_of_other_sources": int(g["dup_other_source"].sum()),
        })
    return summary, df


def plot_lengths(df, sequence_len: int) -> bytes:
    """A PNG histogram of tokens per row, one panel per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(df["source"]))
    top = max(sequence_len, int(df["total"].max())) * 1.02
    bins = [top * i / 60 for i in range(61)]  # one scale for every source
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.4 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        ax.hist(df.loc[df["source"] == name, "total"], bins=bins, color="tab:blue")
        ax.axvline(sequence_len, color="tab:red", linestyle="--", label=f"sequence_len {sequence_len}")
        ax.set_title(f"{name}: tokens per row", fontsize=10)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("tokens (prompt + answer + EOS)")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()


def git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def packages() -> dict:
    found = {}
    for p in PACKAGES:
        try:
            found[p] = version(p)
        except PackageNotFoundError:
            found[p] = None
    return found


def data_card(config: Path, cfg: dict, tokenizer: str, summary: list[dict], flagged: list[dict], n_kobest: int,
              estimates: list[dict] | str, utilisation: float, strategy: str, prepared: Path, rows_trained: int) -> str:
    seq = cfg["sequence_len"]
    lines = [f"# Preflight: {config}", "",
             f"Tokenizer: `{tokenizer}`; sequence_len {seq}; rows longer than that are "
             f"{'dropped' if strategy == 'drop' else strategy + 'd'} by Axolotl (`excess_length_strategy: {strategy}`).",
             f"Token counts are Axolotl's, from the tokenized data `make train` uses: `{prepared}/` "
             f"({rows_trained} rows trained on).", "",
             "| source | rows | dropped by converter | tokens p50 / p90 / p99 / max | over sequence_len | "
             "supervised share | system instr. | dup in source | dup of other source |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped_by_converter"].items()) or "none"
        lines.append(f"| {s['source']} | {s['rows']} | {dropped} | {s['tokens_p50']} / {s['tokens_p90']} / "
                     f"{s['tokens_p99']} / {s['tokens_max']} | {s['over_sequence_len']} | {s['supervised_share']:.1%} | "
                     f"{s['system_instruction_share']:.1%} | {s['duplicates_in_source']} | {s['duplicates_of_other_sources']} |")
    lines += ["", "![token lengths](lengths.png)", "", "## KoBEST overlap", "",
              f"{len(flagged)} training rows share a word n-gram with {n_kobest} KoBEST test texts "
              "(`contamination.jsonl` lists them)."]
    by = {}
    for f in flagged:
        by.setdefault((f["source"], f["task"]), 0)
        by[(f["source"], f["task"])] += 1
    lines += [f"- {src} × kobest_{task}: {n}" for (src, task), n in sorted(by.items())]
    lines += ["", "## Time and memory estimate", ""]
    if isinstance(estimates, str):
        lines.append(f"Skipped: {estimates}")
    else:
        lines += [f"Assumed utilisation {utilisation:.0%} of dense bf16 peak; "
                  f"{cfg.get('num_epochs', 1)} epochs; gradient checkpointing "
                  f"{'on' if cfg.get('gradient_checkpointing') else 'off'}. `*` marks this config's packing setting.", "",
                  f"Peak memory is for one micro batch (rows x tokens each) with {estimates[0]['weights']} base weights.", "",
                  "| GPU | packing | optimizer steps | positions / epoch | hours | peak memory (GB) | at micro batch | fits |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {e['gpu']} | {'on' if e['packing'] else 'off'}{' *' if e['chosen'] else ''} | "
                  f"{e['optimizer_steps']} | {e['positions_per_epoch']} | {e['hours']:.2f} | "
                  f"{e['peak_memory_gb']:.1f} | {e['peak_at']} | {'yes' if e['fits'] else 'no'} |" for e in estimates]
    return "\n".join(lines) + "\n"


def kobest_overlap(paths: dict[str, Path], kobest_dir: Path | None, ngram: int) -> tuple[list[dict], int]:
    """(the training rows that contain a KoBEST test n-gram, the number of KoBEST texts)."""
    try:
        docs = contamination.load_kobest(kobest_dir)
    except (OSError, ConnectionError) as e:
        raise UserError(f"cannot read KoBEST ({e}); pass local files with --kobest-dir DIR "
                        f"(make preflight KOBEST_DATA=DIR; {contamination.LAYOUT})") from None
    index = contamination.NgramIndex(docs, n=ngram)
    flagged = []
    for name, path in paths.items():
        rows = read_jsonl(path)
        for i, (r, hit) in enumerate(zip(rows, index.matches([contamination.row_text(r) for r in rows])), start=1):
            if hit:
                flagged.append({"source": name, "row": i, "source_row": r.get("source_row"), "task": hit[1][0],
                                "kobest_doc": hit[1][1], "ngram": " ".join(hit[0])})
    return flagged, len(docs)


def _ignore_ctrl_c() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent reports the interrupt, once


def run(config: Path, kobest_dir: Path | None = None, out: Path | None = None,
        utilisation: float = estimate.DEFAULT_UTILISATION, ngram: int = contamination.NGRAM) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    cfg, _ = with_choices(load(config))  # what check() returns, without the wait for Axolotl's import
    sources = load_sources(cfg)
    where = prepared_dir(cfg)  # the folder `make train` tokenizes into, keyed on the data's content
    # Axolotl's import and checks, and the KoBEST overlap (pure Python over every word), run in two
    # more processes beside the rest: on 2 cores that nearly halves what preflight costs once the
    # data is tokenized. A config error still comes before any tokenizing.
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_ctrl_c)
    try:
        checked = pool.submit(check, config, True)
        overlap = pool.submit(kobest_overlap, {name: path for name, (path, _, _) in sources.items()}, kobest_dir, ngram)
        if not where.is_dir():
            checked.result()
        from transformers import AutoConfig

        tok_name = cfg.get("tokenizer_config") or cfg["base_model"]
        seq, strategy = cfg["sequence_len"], cfg.get("excess_length_strategy") or "drop"
        rows_trained, lengths = tokenized_lengths(cfg, sources, where)
        summary, df = summarise(sources, lengths, seq, strategy)
        kept = df.loc[~df["over"], "total"].tolist() if strategy == "drop" else df["total"].clip(upper=seq).tolist()
        try:
            arch = estimate.Arch.from_config(AutoConfig.from_pretrained(cfg["base_model"]))
            estimates = estimate.estimate(kept, arch, cfg, utilisation)
        except (OSError, ValueError) as e:
            estimates = f"cannot load the config of {cfg['base_model']} ({str(e).splitlines()[0]})"
        png = plot_lengths(df, seq)
        cfg = checked.result()
        flagged, n_docs = overlap.result()
    except BaseException:  # an error or Ctrl-C: stop the other processes' work too, and say so now
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    out = out or Path("outputs/preflight") / config.stem
    write_atomic(out / "lengths.png", png)
    write_atomic(out / "contamination.jsonl", "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in flagged))
    report = {"config": str(config), "prepared": str(where), "rows_trained": rows_trained, "sources": summary,
              "kobest_texts": n_docs, "contaminated_rows": len(flagged), "estimates": estimates,
              "utilisation": utilisation}
    write_atomic(out / "preflight.json", json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    write_atomic(out / "data_card.md", data_card(config, cfg, tok_name, summary, flagged, n_docs, estimates,
                                                 utilisation, strategy, where, rows_trained))
    inputs = [config] + [p for p, _, _ in sources.values()] + [stats_path(p) for p, _, _ in sources.values()
                                                              if stats_path(p).is_file()]
    if kobest_dir:
        inputs += sorted(Path(kobest_dir).rglob("*.jsonl"))
    manifest = {
        "config": str(config), "resolved_config": cfg, "prepared": str(where), "git": git_commit(), "packages": packages(),
        "seeds": {"training": cfg.get("seed"),
                  "data": {n: s.get("seed") for n, (_, _, s) in sources.items() if s}},
        "data_inputs": {n: {"input": s.get("input"), "resolved_revision": s.get("resolved_revision")}
                        for n, (_, _, s) in sources.items() if s},
        "inputs": {str(p): sha256_file(p) for p in inputs},
        "outputs": {str(out / n): sha256_file(out / n) for n in ("data_card.md", "lengths.png", "contamination.jsonl",
                                                             "preflight.json")},
    }
    write_atomic(out / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return {"out": out, **report}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("--kobest-dir", type=Path, help="local KoBEST <task>/test.jsonl (default: skt/kobest_v1 from the Hub)")
    p.add_argument("--out", type=Path, help="default: outputs/preflight/<config name>")
    p.add_argument("--utilisation", type=float, default=estimate.DEFAULT_UTILISATION,
                   help="assumed fraction of the GPU's dense bf16 peak")
    p.add_argument("--ngram", type=int, default=contamination.NGRAM, help="words per n-gram for the KoBEST overlap")
    args = p.parse_args(argv)

    def preflight():
        report = run(args.config, args.kobest_dir, args.out, args.utilisation, args.ngram)
        print((report["out"] / "data_card.md").read_text(encoding="utf-8"))
        print(f"wrote {report['out']}/: data_card.md, lengths.png, contamination.jsonl, preflight.json, manifest.json")

    return run_command(preflight)

if __name__ == "__main__":
    sys.exit(main())
