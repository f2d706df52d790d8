"""Preflight: what a run would train on and what it will cost, found on a CPU before any GPU hour.

    python -m recipe.preflight CONFIG [--tokenizer DIR] [--kobest-dir DIR] [--out DIR] [--utilisation U]

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

from preprocess.pipeline import sha256_file, stats_path, write_atomic
from preprocess.prompts import SYSTEM_INSTRUCTION
from preprocess import contamination
from recipe import estimate
from recipe.config import ConfigError, check, missing_data
from recipe.tokens import row_lengths

PACKAGES = ("torch", "axolotl", "transformers", "peft", "datasets", "tokenizers", "lm_eval", "deepspeed")


class PreflightError(Exception):
    pass


def load_sources(cfg: dict) -> dict[str, tuple[Path, list[dict], dict | None]]:
    """source name -> (JSONL path, rows, the converter's .stats.json or None)."""
    missing = missing_data(cfg)
    if missing:
        raise PreflightError(f"training data not found: {', '.join(missing)}; build it first with `make data`")
    sources = {}
    for d in cfg["datasets"]:
        if d.get("type") != "alpaca":
            raise PreflightError(f"{d['path']}: preflight reads `type: alpaca` datasets only, got {d.get('type')!r}")
        path = Path(d["path"])
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        stats = stats_path(path)
        sources[path.name.removesuffix(".jsonl")] = (path, rows, json.loads(stats.read_text()) if stats.is_file() else None)
    return sources


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


def plot_lengths(df, sequence_len: int, out: Path) -> None:
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
    write_atomic(out, png.getvalue())


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
              estimates: list[dict] | str, utilisation: float, strategy: str) -> str:
    seq = cfg["sequence_len"]
    lines = [f"# Preflight: {config}", "",
             f"Tokenizer: `{tokenizer}`; sequence_len {seq}; rows longer than that are "
             f"{'dropped' if strategy == 'drop' else strategy + 'd'} by Axolotl (`excess_length_strategy: {strategy}`).", "",
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


def run(config: Path, tokenizer: str | None = None, kobest_dir: Path | None = None, out: Path | None = None,
        utilisation: float = estimate.DEFAULT_UTILISATION, ngram: int = 8) -> dict:
    cfg = check(config, quiet=True)
    sources = load_sources(cfg)
    from transformers import AutoConfig, AutoTokenizer

    tok_name = tokenizer or cfg.get("tokenizer_config") or cfg["base_model"]
    try:
        tok = AutoTokenizer.from_pretrained(tok_name)
    except (OSError, ValueError) as e:
        raise PreflightError(f"cannot load the tokenizer {tok_name} ({str(e).splitlines()[0]}); "
                             "pass a local one with --tokenizer DIR (make preflight TOKENIZER=DIR)") from None
    seq, strategy = cfg["sequence_len"], cfg.get("excess_length_strategy") or "drop"
    lengths = {name: row_lengths(rows, tok, seq, bool(cfg.get("train_on_inputs"))) for name, (_, rows, _) in sources.items()}
    summary, df = summarise(sources, lengths, seq, strategy)

    try:
        docs = contamination.load_kobest(kobest_dir)
    except (OSError, ConnectionError) as e:
        raise PreflightError(f"cannot read KoBEST ({e}); pass local files with --kobest-dir DIR "
                             "(make preflight KOBEST_DATA=DIR; data/kobest-sample/ shows the layout)") from None
    except ValueError as e:  # a local task file missing, empty or without its text columns
        raise PreflightError(f"{e}; data/kobest-sample/ shows the layout") from None
    index = contamination.NgramIndex(docs, n=ngram)
    flagged = []
    for name, (_, rows, _) in sources.items():
        for i, r in enumerate(rows, start=1):
            hit = index.row_match(r)
            if hit:
                flagged.append({"source": name, "row": i, "source_row": r.get("source_row"), "task": hit[1][0],
                                "kobest_doc": hit[1][1], "ngram": " ".join(hit[0])})

    kept = df.loc[~df["over"], "total"].tolist() if strategy == "drop" else df["total"].clip(upper=seq).tolist()
    try:
        arch = estimate.Arch.from_config(AutoConfig.from_pretrained(cfg["base_model"]))
        estimates = estimate.estimate(kept, arch, cfg, utilisation)
    except (OSError, ValueError) as e:
        estimates = f"cannot load the config of {cfg['base_model']} ({str(e).splitlines()[0]})"

    out = out or Path("outputs/preflight") / config.stem
    plot_lengths(df, seq, out / "lengths.png")
    write_atomic(out / "contamination.jsonl", "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in flagged))
    report = {"config": str(config), "sources": summary, "kobest_texts": len(docs), "contaminated_rows": len(flagged),
              "estimates": estimates, "utilisation": utilisation}
    write_atomic(out / "preflight.json", json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    write_atomic(out / "data_card.md", data_card(config, cfg, tok_name, summary, flagged, len(docs), estimates,
                                                 utilisation, strategy))
    inputs = [config] + [p for p, _, _ in sources.values()] + [stats_path(p) for p, _, _ in sources.values()
                                                              if stats_path(p).is_file()]
    if kobest_dir:
        inputs += sorted(Path(kobest_dir).rglob("*.jsonl"))
    manifest = {
        "config": str(config), "resolved_config": cfg, "git": git_commit(), "packages": packages(),
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
    p.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the config's base_model)")
    p.add_argument("--kobest-dir", type=Path, help="local KoBEST <task>/test.jsonl (default: skt/kobest_v1 from the Hub)")
    p.add_argument("--out", type=Path, help="default: outputs/preflight/<config name>")
    p.add_argument("--utilisation", type=float, default=estimate.DEFAULT_UTILISATION,
                   help="assumed fraction of the GPU's dense bf16 peak")
    p.add_argument("--ngram", type=int, default=8, help="words per n-gram for the KoBEST overlap")
    args = p.parse_args(argv)
    try:
        report = run(args.config, args.tokenizer, args.kobest_dir, args.out, args.utilisation, args.ngram)
    except (ConfigError, PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((report["out"] / "data_card.md").read_text(encoding="utf-8"))
    print(f"wrote {report['out']}/: data_card.md, lengths.png, contamination.jsonl, preflight.json, manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
