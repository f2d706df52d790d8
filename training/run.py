"""The life of a training run: the data it tokenizes, the folder it owns, its batch on N GPUs, and
the model it hands on.

    python -m training.run train CONFIG [--gpus N] [--resume | --overwrite] [--keep-accumulation] [--track wandb|mlflow]
    python -m training.run finish-train RECORD     generation_config.json in the adapter folder
    python -m training.run merge CONFIG            the adapter is there and not empty -> prints the record
    python -m training.run finish-merge RECORD     training tokenizer + generation_config.json in merged/

``train`` checks CONFIG, tokenizes its data once into a folder named by the content of that data
(see ``prepared_dir``), refuses a folder that already holds a run unless told to resume or start
again, sets the accumulation for the GPU count, and writes the resolved config to
``<output_dir>/axolotl.yml``: the run's record, whose path it prints for ``axolotl train``.
Messages go to stderr; stdout carries only that path.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import yaml

from common.errors import UserError, run_command
from common.files import sha256_file, write_atomic
from preprocess.sources import REPO_ROOT
from training.config import ADAPTER_FILE, RESOLVED_NAME, check, load, missing_data, safe_kernels, write_resolved

PREPARED_ROOT = Path("data/prepared")  # where tokenized data lives when a config names no dataset_prepared_path
KEY = re.compile(r"[0-9a-f]{16}")
MERGED = "merged"
MERGE_MARKER = "merged_from.json"  # written last by finish-merge: the sha256 of the adapter merged
# Config fields that change what `axolotl preprocess` writes, Axolotl's own hash fields included
# (DATASET_HASH_CONFIG_EXTRA_FIELDS in utils/data/shared.py; a test checks they are all here). Its
# cache key covers a subset of these and never the file contents, so a rewritten JSONL at the same
# path would load stale tokens.
TOKENIZATION_FIELDS = (
    "base_model", "base_model_config", "tokenizer_config", "tokenizer_type", "tokenizer_use_fast",
    "tokenizer_legacy", "revision_of_model", "tokens", "datasets", "test_datasets", "sequence_len",
    "sample_packing", "eval_sample_packing", "pad_to_sequence_len", "group_by_length",
    "dataset_exact_deduplication", "excess_length_strategy", "min_sample_len", "seed",
    "shuffle_merged_datasets", "shuffle_before_merging_datasets", "val_set_size", "curriculum_sampling",
    "dataset_shard_num", "dataset_shard_idx", "skip_prepare_dataset", "kd_temperature", "eval_sequence_len",
    "rl", "reward_model", "process_reward_model", "trust_remote_code", "tokenizer_use_mistral_common",
    "use_pose", "pose_split_on_token_ids", "pose_max_context_len", "streaming", "pretraining_dataset",
    "added_tokens_overrides", "chat_template", "chat_template_jinja", "chat_template_kwargs", "default_system_message",
    "eot_tokens", "sample_packing_bin_size", "sample_packing_group_size", "sample_packing_sequentially",
    "special_tokens", "train_on_inputs",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")
RESUME_KEYS = ("resume_from_checkpoint", "auto_resume_from_checkpoints")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- tokenized data, keyed on content

def _local_files(entry: dict) -> list[Path]:
    """The local files a dataset entry reads (a file, every file of a folder, or its data_files)."""
    names = [entry.get("path")]
    files = entry.get("data_files")
    names += list(files.values()) if isinstance(files, dict) else ([files] if isinstance(files, str) else files or [])
    found = []
    for name in filter(None, names):
        path = Path(name)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
    return found  # a Hub dataset has none: its id and revision are in the entry itself


def _tokenizer_files(cfg: dict) -> dict[str, str]:
    """sha256 of the tokenizer's files: a local folder's, or a Hub model's (only its small
    tokenizer files are fetched, or read from the cache), so a re-uploaded tokenizer on `main`
    changes the key too. Without the Hub or a cache, the name and revision alone are keyed."""
    name = cfg.get("tokenizer_config") or cfg["base_model"]
    folder = Path(name)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name, revision=cfg.get("revision_of_model"),
                                            allow_patterns=list(TOKENIZER_FILES)))
        except Exception:  # noqa: BLE001 - offline and not cached: Axolotl will report it when it loads
            return {}
    return {n: sha256_file(folder / n) for n in TOKENIZER_FILES if (folder / n).is_file()}


def prepared_key(cfg: dict) -> str:
    """16 hex digits of the sha256 of every dataset file, the tokenizer files and every config
    field that changes tokenization (Axolotl's own hash fields included), and Axolotl's version."""
    fields = sorted(set(TOKENIZATION_FIELDS))
    files = [p for d in (cfg.get("datasets") or []) + (cfg.get("test_datasets") or []) for p in _local_files(d)]
    payload = {"axolotl": version("axolotl"),
               "config": {k: cfg[k] for k in fields if cfg.get(k) is not None},
               "files": {str(p): sha256_file(p) for p in files},
               "tokenizer": _tokenizer_files(cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepared_dir(cfg: dict) -> Path:
    """``<root>/<key>``. The root is the config's ``dataset_prepared_path`` (a resolved record
    already names its keyed folder; its parent is the root) or ``data/prepared``."""
    named = cfg.get("dataset_prepared_path")
    root = Path(named) if named else PREPARED_ROOT
    if KEY.fullmatch(root.name):
        root = root.parent
    return root / prepared_key(cfg)


def ensure_prepared(cfg: dict, where: Path) -> Path:
    """Run ``axolotl preprocess`` (through ``training.prepare``, which also records each row's
    lengths) into ``where`` unless it is already there. It writes to a temporary folder renamed into
    place on success, under a lock, so an interrupted or concurrent run never leaves a half-written
    folder under the final name."""
    from filelock import FileLock

    if where.is_dir():
        say(f"tokenized data: {where} (matches the data and config; reused)")
        return where
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {where.parent}/ for the tokenized data ({e.strerror}); "
                          "set dataset_prepared_path to a writable folder") from None
    with FileLock(str(where.parent / f".{where.name}.lock")):
        if where.is_dir():  # another run built it while this one waited
            return where
        for stale in where.parent.glob(f".{where.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = where.parent / f".{where.name}.tmp-{os.getpid()}"
        spec = {**cfg, "dataset_prepared_path": str(tmp / "data"), "output_dir": str(tmp / "log")}
        tmp.mkdir()
        (tmp / RESOLVED_NAME).write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        say(f"tokenizing the data once with `axolotl preprocess` into {where} ...")
        try:
            # Axolotl's tokenizing workers are forked: tokenizer threads off there, to avoid deadlocks.
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false",
                   "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))}
            rc = subprocess.run([sys.executable, "-m", "training.prepare", str(tmp / RESOLVED_NAME)], stdout=2,
                                env=env).returncode  # its log to stderr: stdout is the record path
        except KeyboardInterrupt:
            rc = 130
        if rc != 0 or not any((tmp / "data").glob("*/dataset_info.json")):
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"`axolotl preprocess` failed (exit {rc}) on the datasets of this config; "
                              "its log is above, and nothing was kept")
        os.replace(tmp / "data", where)
        shutil.rmtree(tmp, ignore_errors=True)
    return where


# ---- the output folder

def complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint killed while saving has none, or
    a truncated one, and is never resumed from."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(state.get("global_step")) == checkpoint.name.split("-")[-1]


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    found = [p for p in out.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and complete(p)]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def held_run(out: Path) -> str | None:
    """What of an earlier run ``out`` holds, or None."""
    held = [ADAPTER_FILE] if (out / ADAPTER_FILE).is_file() else []
    n = len(list(out.glob("checkpoint-*")))
    held += [f"{n} checkpoint{'s' * (n != 1)}"] if n else []
    return " and ".join(held) or None


def remove_run(out: Path) -> None:
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents or target == Path.home().resolve():
        raise UserError(f"OVERWRITE=1 would delete {out}/, which holds this repo or your home; "
                          "set output_dir to a folder of its own")
    shutil.rmtree(target)
    say(f"OVERWRITE=1: deleted the previous run in {out}/")


def output_dir(cfg: dict, config: Path) -> Path:
    if not cfg.get("output_dir"):
        raise UserError(f"{config}: set output_dir, the folder this run owns")
    return Path(cfg["output_dir"])


def changed_keys(record: dict, cfg: dict) -> list[str]:
    keys = (set(record) | set(cfg)) - set(RESUME_KEYS)
    return sorted(k for k in keys if record.get(k) != cfg.get(k))


def resume_point(out: Path, cfg: dict) -> Path:
    """The last complete checkpoint, after checking that the run's record matches ``cfg``."""
    found = checkpoints(out)
    if not found:
        raise UserError(f"RESUME=1: {out}/ has no complete checkpoint to resume from; "
                          "start again with OVERWRITE=1")
    record_path = out / RESOLVED_NAME
    if not record_path.is_file():
        raise UserError(f"RESUME=1: {record_path}, the record of the run to resume, is missing; "
                          "start again with OVERWRITE=1")
    try:
        record = load(record_path)
    except UserError:
        raise UserError(f"RESUME=1: {record_path}, the record of the run to resume, is not a config; "
                        "start again with OVERWRITE=1") from None
    changed = changed_keys(record, cfg)
    if "dataset_prepared_path" in changed:
        raise UserError(f"RESUME=1: the training data or its tokenization changed since the run in {out}/ "
                          "started, and resuming would mix two datasets; start again with OVERWRITE=1")
    if changed:
        raise UserError(f"RESUME=1: the config differs from the run in {out}/ in {', '.join(changed)}; "
                          f"undo the change (the run's settings are in {record_path}) or start again with OVERWRITE=1")
    return found[-1]


# ---- the batch on N GPUs

def with_accumulation(cfg: dict, gpus: int, keep: bool) -> dict:
    """Keep the YAML's global batch (micro batch x accumulation, written for one GPU) on ``gpus``."""
    if gpus < 1:
        raise UserError(f"NGPUS must be at least 1, got {gpus}")
    mb, ga = cfg.get("micro_batch_size") or 1, cfg.get("gradient_accumulation_steps") or 1
    if gpus == 1:
        return cfg
    if keep:
        say(f"KEEP_ACCUMULATION=1: {gpus} GPUs x micro batch {mb} x accumulation {ga} "
            f"= a global batch of {gpus * mb * ga} sequences")
        return cfg
    if ga % gpus:
        fits = [n for n in range(1, ga + 1) if ga % n == 0]
        raise UserError(f"{gpus} GPUs cannot keep the config's global batch of {mb * ga} sequences "
                          f"(micro batch {mb} x accumulation {ga}): {mb * ga} / ({mb} x {gpus}) is not a whole "
                          f"number. Use NGPUS in {fits}, or KEEP_ACCUMULATION=1 for accumulation {ga} per GPU "
                          f"(a global batch of {gpus * mb * ga})")
    say(f"{gpus} GPUs: gradient_accumulation_steps {ga} -> {ga // gpus}, keeping the global batch of "
        f"{mb * ga} sequences ({gpus} x micro batch {mb} x {ga // gpus})")
    return {**cfg, "gradient_accumulation_steps": ga // gpus}


# ---- tracking

TRACKERS = ("wandb", "mlflow")
PROJECT = "llama3-ko-aog"  # the wandb project / mlflow experiment when the config names none


def with_tracking(cfg: dict, track: str | None, out: Path) -> dict:
    """TensorBoard is the config's own (`use_tensorboard`); TRACK adds an account-based tracker."""
    if not track:
        return cfg
    if track == "wandb":
        return {**cfg, "use_wandb": True, "wandb_project": cfg.get("wandb_project") or PROJECT,
                "wandb_name": cfg.get("wandb_name") or out.name}
    if track == "mlflow":
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise UserError("TRACK=mlflow needs the mlflow package: .venv/bin/pip install mlflow")
        return {**cfg, "use_mlflow": True, "mlflow_experiment_name": cfg.get("mlflow_experiment_name") or PROJECT,
                "mlflow_run_name": cfg.get("mlflow_run_name") or out.name}
    raise UserError(f"TRACK must be one of {', '.join(TRACKERS)}, got {track!r} "
                      "(TensorBoard logs go to <output_dir>/runs/ without it)")


# ---- the stages

def train(config: Path, gpus: int = 1, resume: bool = False, overwrite: bool = False,
          keep_accumulation: bool = False, track: str | None = None, deepspeed: str | None = None,
          node_rank: int = 0) -> Path:
    """Everything before ``axolotl train``; returns the record it should run. Node 0 owns the
    output folder; another node of a multi-node run only prepares the data and gets its copy of
    the record in a temporary file."""
    if resume and overwrite:
        raise UserError("RESUME=1 and OVERWRITE=1 contradict each other; choose one")
    out = output_dir(load(config), config)  # the folder is checked before Axolotl is imported: a refusal is quick
    held = node_rank == 0 and out.is_dir() and held_run(out)
    if held and not (resume or overwrite):
        raise UserError(f"{out}/ already holds a run ({held}). Continue it with RESUME=1, delete it and "
                          f"start again with OVERWRITE=1, or set a new output_dir in {config}")
    if resume and not held and node_rank == 0:
        raise UserError(f"RESUME=1: {out}/ holds no run to resume; drop RESUME=1 to start one")
    cfg = check(config)
    missing = missing_data(cfg)
    if missing:
        raise UserError(f"{config}: training data not found: {', '.join(missing)}. "
                          "Build it first with `make data` (see the command at the top of the config).")
    for key in RESUME_KEYS:
        cfg.pop(key, None)  # resuming is RESUME=1's job, so a config cannot resume by accident
    cfg = {**with_tracking(with_accumulation(cfg, gpus, keep_accumulation), track, out),
           "dataset_prepared_path": str(prepared_dir(cfg))}
    if deepspeed:
        cfg["deepspeed"] = deepspeed  # in the record, so RESUME=1 sees a change of launch
        cfg, note = safe_kernels(cfg)
        if note:
            say(note)
    prepared = Path(cfg["dataset_prepared_path"]).resolve()
    if prepared.is_relative_to(out.resolve()):
        raise UserError(f"dataset_prepared_path ({prepared}) lies inside output_dir ({out}); "
                          "OVERWRITE=1 would delete it: put it elsewhere")
    if resume and node_rank == 0:
        cfg["resume_from_checkpoint"] = str(resume_point(out, cfg))
        say(f"RESUME=1: continuing from {cfg['resume_from_checkpoint']}")
    ensure_prepared(cfg, Path(cfg["dataset_prepared_path"]))
    if node_rank:
        import tempfile

        return write_resolved(cfg, config, Path(tempfile.mkdtemp(prefix="axolotl-node-")) / RESOLVED_NAME)
    if overwrite and held:
        remove_run(out)
    return write_resolved(cfg, config, out / RESOLVED_NAME)


def write_generation_config(folder: Path, tokenizer_dir: Path, source: str) -> None:
    """``generation_config.json`` in ``folder`` with the tokenizer's bos/eos/pad ids. Everything
    else comes from ``source`` (the published base files carry stale Llama-2 ids: eos 2, pad 2),
    so generate(), vLLM and Ollama stop at ``<|end_of_text|>`` without extra flags."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    try:
        gen = GenerationConfig.from_pretrained(source)
    except OSError:  # the source has none, or is a Hub id that is not in the local cache
        gen = GenerationConfig()
    gen.bos_token_id, gen.eos_token_id = tok.bos_token_id, tok.eos_token_id
    gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen.save_pretrained(folder)
    say(f"{folder}/generation_config.json: eos {gen.eos_token_id} ({tok.eos_token}), pad {gen.pad_token_id}")


def _record(path: Path) -> tuple[dict, Path]:
    cfg = load(path)
    return cfg, Path(cfg["output_dir"])


def finish_train(record: Path) -> None:
    cfg, out = _record(record)
    write_generation_config(out, out, cfg["base_model"])


def check_adapter(out: Path, config: Path) -> None:
    path = out / ADAPTER_FILE
    if not path.is_file():
        raise UserError(f"{config}: no LoRA adapter in {out}/ ({ADAPTER_FILE} missing). "
                          f"Train it first: make train CONFIG={config}")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        shapes = [f.get_slice(k).get_shape() for k in f.keys()]
    if not shapes or any(0 in s for s in shapes):
        raise UserError(f"{path} holds empty tensors (a DeepSpeed ZeRO-3 save without "
                          "stage3_gather_16bit_weights_on_model_save?); it cannot be merged")


def merge(config: Path) -> Path:
    """The config ``axolotl merge-lora`` should use: the run's own record, never rewritten. An
    adapter trained elsewhere (no record) is merged with CONFIG's settings in ``merge.yml``."""
    cfg = check(config, quiet=True)
    out = output_dir(cfg, config)
    check_adapter(out, config)
    if (out / MERGED).exists():  # a half-written or older merge must not outlive a new one
        shutil.rmtree(out / MERGED)
    record = out / RESOLVED_NAME
    return record if record.is_file() else write_resolved(cfg, config, out / "merge.yml")


def finish_merge(record: Path) -> None:
    from transformers import AutoTokenizer

    _, out = _record(record)
    merged = out / MERGED
    if (out / "tokenizer_config.json").is_file():  # Axolotl saved the training tokenizer beside the adapter
        AutoTokenizer.from_pretrained(out).save_pretrained(merged)  # the base's files lack its pad token
    write_generation_config(merged, merged, str(merged))
    write_atomic(merged / MERGE_MARKER, json.dumps({"adapter_sha256": sha256_file(out / ADAPTER_FILE)}) + "\n")


def adapter_digest(model: str, adapter: str | None) -> str | None:
    """The sha256 of the adapter behind a model: the adapter file itself, or the one a merged
    folder records. None for a model this repo did not train."""
    if adapter and (Path(adapter) / ADAPTER_FILE).is_file():
        return sha256_file(Path(adapter) / ADAPTER_FILE)
    try:
        return json.loads((Path(model) / MERGE_MARKER).read_text(encoding="utf-8"))["adapter_sha256"]
    except (OSError, ValueError, KeyError):
        return None


def merged_model(out: Path) -> Path | None:
    """``<out>/merged`` when `make merge` finished it from the adapter that is there now."""
    merged_from = adapter_digest(str(out / MERGED), None)
    adapter = out / ADAPTER_FILE
    return out / MERGED if merged_from and adapter.is_file() and merged_from == sha256_file(adapter) else None


def model_to_use(config: Path | None, model: str | None = None, adapter: str | None = None
                 ) -> tuple[str, str | None, Path | None]:
    """(model, adapter, run folder) for eval and chat. MODEL (with ADAPTER) is used as given;
    ADAPTER alone goes on the run's base model; otherwise it is the run CONFIG trains: its merged
    model when there is one, else the base model with the adapter."""
    if model:
        return model, adapter, None
    if config is None:
        raise UserError("name a model: CONFIG=<the config that trained it> or MODEL=<folder or Hub id>")
    cfg = load(config)
    out = output_dir(cfg, config)
    record = out / RESOLVED_NAME
    base = (load(record) if record.is_file() else cfg)["base_model"]
    if adapter:
        return base, adapter, None
    if merged_model(out):
        return str(out / MERGED), None, out
    if (out / ADAPTER_FILE).is_file():
        return base, str(out), out
    raise UserError(f"{out}/ holds no trained model (neither {MERGED}/ nor {ADAPTER_FILE}): train it with "
                      f"make train CONFIG={config}, or name one with MODEL=<folder or Hub id>")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The training run's lifecycle (used by make train and make merge).")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("config", type=Path)
    t.add_argument("--gpus", type=int, default=1, help="processes in all (GPUs per node x nodes)")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--keep-accumulation", action="store_true")
    t.add_argument("--track", help=f"also log to {' or '.join(TRACKERS)}")
    t.add_argument("--deepspeed", help="DeepSpeed JSON, kept in the record")
    t.add_argument("--node-rank", type=int, default=0)
    for name in ("finish-train", "merge", "finish-merge"):
        sub.add_parser(name).add_argument("config", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "train":
        return run_command(lambda: print(train(args.config, args.gpus, args.resume, args.overwrite, args.keep_accumulation,
                                          args.track, args.deepspeed, args.node_rank)))
    if args.cmd == "merge":
        return run_command(lambda: print(merge(args.config)))
    return run_command(lambda: (finish_train if args.cmd == "finish-train" else finish_merge)(args.config))


if __name__ == "__main__":
    sys.exit(main())
