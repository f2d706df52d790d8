"""The model card of a run, in the layout of the card this repo reproduces, from the files the run wrote.

    python -m publishing.card CONFIG [--merged]    -> <output_dir>/README.md (or merged/README.md)

Everything comes from those files: hyperparameters from the run's record (``axolotl.yml``), the
data mix from the converters' ``.stats.json`` reports, the prompt example from the first training
row rendered by chat's own code, the eval results (``eval/*.json``) beside the card's published
KoBEST columns, and sha256 hashes of the data and the weights. The YAML header is Hub metadata
(``base_model``, ``datasets``, ``model-index``) written with huggingface_hub's own ModelCardData.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.errors import UserError, run_command
from common.files import sha256_file, stats_path, write_atomic
from evaluation.harness import SHOTS
from evaluation.results import notes, read, table
from preprocess.contamination import KOBEST_TASKS
from preprocess.sources import SOURCES
from training.config import ADAPTER_FILE, RESOLVED_NAME, load
from training.run import MERGED, merged_model, output_dir, prepared_key

LICENSE_LINK = "https://llama.meta.com/llama3/license"  # the base model's licence, as the card states
# Record keys the card shows elsewhere (model, data, paths); every other key is a training setting.
NOT_HYPERPARAMETERS = {"base_model", "datasets", "output_dir", "dataset_prepared_path", "resume_from_checkpoint",
                       "tokenizer_type", "tokenizer_config"}


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_files(config: Path) -> tuple[dict, Path]:
    """The run's record and its folder; a run that was never trained has no card."""
    out = output_dir(load(config), config)
    record = out / RESOLVED_NAME
    if not record.is_file():
        raise UserError(f"{out}/ holds no trained run ({RESOLVED_NAME} missing): make train CONFIG={config} first")
    return load(record), out


def data_rows(cfg: dict) -> list[dict]:
    """One entry per dataset of the run: path, hash, and the converter's report (None if absent)."""
    rows = []
    for d in cfg["datasets"]:
        path = Path(d["path"])
        stats = _json(stats_path(path))
        source = SOURCES.get(stats["source"]) if stats else None
        rows.append({"path": path, "sha256": sha256_file(path) if path.is_file() else None,
                     "stats": stats, "source": source})
    return rows


def data_section(rows: list[dict]) -> list[str]:
    lines = ["| source | rule | rows kept | rows dropped (by reason) | system instruction (set / measured) | licence |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        s, src = r["stats"], r["source"]
        if s is None or src is None:
            lines.append(f"| `{r['path']}` | (no report of a known converter beside it) | | | | |")
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in s["dropped"].items() if v)
        system = (f"{s['system_rate']:.0%} / {s['system_instruction_share']:.1%}" if src.adds_system_instruction
                  else "none")
        lines.append(f"| `{src.hub_id}` | {src.rule} | {s['rows_written']:,} | {s['rows_dropped']:,}"
                     f"{f' ({reasons})' if reasons else ''} | {system} | {src.licence or 'none declared'} |")
    return lines


def prompt_example(rows: list[dict]) -> list[str]:
    """The first training row in the card's inference format, rendered by chat's own code."""
    from evaluation.chat import render
    from preprocess.prompts import SYSTEM_INSTRUCTION

    path = rows[0]["path"]
    if not path.is_file():
        return [f"(`{path}`, the first training file, is not here to show an example from.)"]
    with open(path, encoding="utf-8") as f:
        row = json.loads(f.readline())
    if row["instruction"] == SYSTEM_INSTRUCTION and row.get("input"):
        prompt = render(row["input"], instruction=row["instruction"])
    else:
        prompt = render(row["instruction"])
    return [f"The first training row of `{path}`, in the card's recommended format (`make chat` renders it "
            "this way):", "", "```text", prompt + row["output"] + "<|end_of_text|>", "```"]


def eval_section(found: dict[str, dict], label: str, config: Path, digest: str | None, old: bool) -> list[str]:
    if not found:
        return [f"Not evaluated yet: `make eval CONFIG={config}` writes the results here."
                + (" (`eval/results.json` is in the layout of an earlier version of this repo, one file per task "
                   "now.)" if old else "")]
    current = {t: r for t, r in found.items() if r["recipe"].get("adapter_sha256") == digest}
    if not current:
        return [f"The results in `eval/` belong to an earlier adapter; `make eval CONFIG={config}` evaluates this one."]
    lines = ["Benchmarks through lm-evaluation-harness and the behaviour task (`make eval`), beside the KoBEST "
             "columns of the card this recipe reproduces:", "", table({label: current}, delta=True).rstrip(), "",
             *notes(current)]
    stale = sorted(set(found) - set(current))
    return lines + ([f"- left out, scored on an earlier adapter: {', '.join(stale)}"] if stale else [])


def hub_kobest(found: dict[str, dict], digest: str | None) -> dict | None:
    """The KoBEST results the Hub metadata may claim: the full test sets from the Hub, on this adapter."""
    r = found.get("kobest")
    return r if r and r["recipe"].get("adapter_sha256") == digest and not r["recipe"].get("not_comparable") else None


def metadata(cfg: dict, rows: list[dict], results: dict | None, name: str, merged: bool):
    from huggingface_hub import EvalResult, ModelCardData

    shots = SHOTS["kobest"]
    evals = [EvalResult(task_type="multiple-choice", task_name=f"KoBEST {t} ({shots}-shot)",
                        dataset_type="skt/kobest_v1", dataset_name="KoBEST", dataset_config=t, dataset_split="test",
                        dataset_args={"num_few_shot": shots}, metric_type="accuracy", metric_name="accuracy",
                        metric_value=round(results["results"][f"kobest_{t}"]["acc,none"], 4))
             for t in KOBEST_TASKS] if results else None
    return ModelCardData(
        language=["ko"], license="llama3",
        library_name="transformers" if merged else "peft",
        base_model=None if Path(cfg["base_model"]).exists() else cfg["base_model"],  # the Hub links Hub ids only
        datasets=[r["source"].hub_id for r in rows if r["source"]] or None,
        tags=["axolotl", "lora", "llama-3", "korean"], pipeline_tag="text-generation",
        model_name=name, eval_results=evals)


def render(config: Path, merged: bool = False, name: str | None = None) -> str:
    from huggingface_hub import ModelCard

    cfg, out = run_files(config)
    rows = data_rows(cfg)
    found = read(out / "eval")
    adapter = out / ADAPTER_FILE
    digest = sha256_file(adapter) if adapter.is_file() else None
    name = name or out.name
    weights = out / MERGED if merged else out
    hashed = sorted(weights.glob("*.safetensors"))
    base = cfg["base_model"]
    base_link = f"`{base}`" if Path(base).exists() else f"[`{base}`](https://huggingface.co/{base})"
    same_data = Path(cfg.get("dataset_prepared_path", "")).name == prepared_key(cfg)
    body = [
        f"# {name}", "",
        f"LoRA instruction tuning of {base_link} with Axolotl, "
        "following the recipe of `werty1248/Llama-3-Ko-8B-Instruct-AOG`."
        + (" The adapter is merged into the base weights." if merged else " This repo holds the LoRA adapter."), "",
        "## Dataset", "", *data_section(rows), "",
        "Math- and coding-heavy sets such as `kyujinpy/KOpen-platypus` are left out on purpose.", "",
        "## Training details", "",
        *[f"- {k}: {v}" for k, v in cfg.items() if k not in NOT_HYPERPARAMETERS],
        f"- tokenized data: `{cfg.get('dataset_prepared_path')}`", "",
        "## Evaluation", "", *eval_section(found, name, config, digest, (out / "eval" / "results.json").is_file()), "",
        "## Format & Examples", "", *prompt_example(rows), "",
        "## Licence", "",
        f"The weights follow the base model's licence: [Llama 3]({LICENSE_LINK}). Dataset licences are in the "
        "table above; a set that declares none (KoAlpaca-v1.1a) needs checking before commercial use.", "",
        "## Provenance (sha256)", "",
        "The dataset files below are byte for byte the ones the run tokenized." if same_data else
        "**The dataset files below changed after training** (or the tokenization settings did); the run "
        f"trained on `{cfg.get('dataset_prepared_path')}`.", "",
        *[f"- `{r['path']}`: `{r['sha256']}`" for r in rows],
        *[f"- `{p.relative_to(out)}`: `{sha256_file(p)}`" for p in hashed],
        f"- `{RESOLVED_NAME}` (the resolved training config): `{sha256_file(out / RESOLVED_NAME)}`",
    ]
    data = metadata(cfg, rows, hub_kobest(found, digest), name, merged)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"))


def write(config: Path, merged: bool = False, name: str | None = None) -> Path:
    _, out = run_files(config)
    folder = out / MERGED if merged else out
    if merged and not merged_model(out):
        raise UserError(f"no merged model of the current adapter in {folder}/: make merge CONFIG={config} first")
    if not merged and not (out / ADAPTER_FILE).is_file():
        raise UserError(f"no adapter in {out}/ (the run has not finished): make train CONFIG={config} RESUME=1")
    path = folder / "README.md"
    write_atomic(path, render(config, merged, name))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("--merged", action="store_true", help="the card of the merged model (in merged/)")
    p.add_argument("--name", help="the model's name in the card (default: the output folder's name)")
    args = p.parse_args(argv)
    return run_command(lambda: print(f"wrote {write(args.config, args.merged, args.name)}"))


if __name__ == "__main__":
    sys.exit(main())
