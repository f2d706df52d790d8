"""Axolotl configs: resolve ``extends``, check them, and write the CPU demo copy.

    python -m recipe.config check CONFIG [CONFIG ...]   schema + unknown-key check
    python -m recipe.config cpu CONFIG --model DIR --data-dir DIR --out DIR   CPU demo copy

An ablation YAML names its parent with ``extends: ../aog-lora.yml`` and sets only the keys it
changes (top-level keys replace the parent's). Axolotl itself always gets a resolved, complete
YAML: ``recipe.run`` writes it to ``<output_dir>/axolotl.yml``, the record of the run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

EXTENDS = "extends"
RESOLVED_NAME = "axolotl.yml"
ADAPTER_FILE = "adapter_model.safetensors"


class ConfigError(Exception):
    """A config or run that cannot go on; reported as one message, never a traceback."""


def report(action) -> int:
    """A command's body, run: exit status 0, or one ``error: ...`` line and 2 for a ConfigError
    and for a file it cannot read or write (OSError) or parse (broken YAML)."""
    try:
        action()
    except (ConfigError, OSError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def load(path: Path) -> dict:
    """The complete config of ``path``, with its ``extends`` chain applied."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of Axolotl options")
    parent = raw.pop(EXTENDS, None)
    if parent is None:
        return raw
    return {**load(path.parent / parent), **raw}


def _field_names(model) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names |= {name, field.alias}
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias)
    return names - {None}


def unknown_keys(cfg: dict) -> list[str]:
    """Keys Axolotl would silently drop (pydantic ``extra=ignore``), e.g. a typo like ``lora_rr``."""
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset, UserDefinedPrompterType

    top, ds, user = (_field_names(m) for m in (AxolotlInputConfig, SFTDataset, UserDefinedPrompterType))
    found = [k for k in cfg if k not in top]
    for i, d in enumerate(cfg.get("datasets") or []):
        found += [f"datasets[{i}].{k}" for k in d if k not in ds]
        if isinstance(d.get("type"), dict):
            found += [f"datasets[{i}].type.{k}" for k in d["type"] if k not in user]
    return found


def check(path: Path) -> dict:
    """Resolve ``path`` and run Axolotl's own validation plus the unknown-key check."""
    cfg = load(path)
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(f"{path}: unknown Axolotl option(s): {', '.join(unknown)} "
                          "(Axolotl would ignore them silently; check the spelling)")
    from pydantic import ValidationError

    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    try:
        validate_config(DictDefault(cfg))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{path}: rejected by Axolotl: {problems}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: rejected by Axolotl: {e}") from None
    return cfg


def write_resolved(cfg: dict, origin: Path, out: Path) -> Path:
    from preprocess.pipeline import write_atomic

    header = f"# Resolved from {origin} by recipe.config; edit that file, not this one.\n"
    write_atomic(out, header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return out


def missing_data(cfg: dict) -> list[str]:
    """Local JSONL datasets of ``cfg`` that do not exist yet."""
    return [d["path"] for d in cfg["datasets"] if d.get("ds_type") == "json" and not Path(d["path"]).is_file()]


# Settings the CPU demo changes; everything else (dataset type, LoRA, packing, masking) is kept.
CPU_OVERRIDES = {
    "attn_implementation": "sdpa",  # flash-attn is CUDA-only
    "bf16": False,  # CPU has no bf16 AMP; Axolotl/transformers refuse bf16/tf32 there
    "tf32": False,
    "gradient_checkpointing": False,
    "lora_mlp_kernel": False,  # Axolotl auto-enables fused Triton LoRA kernels that allocate on CUDA
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "sequence_len": 512,
    "micro_batch_size": 2,
    "gradient_accumulation_steps": 2,
    "max_steps": 4,
    "warmup_steps": 1,
    "logging_steps": 1,
}


def cpu_copy(cfg: dict, model_dir: Path, data_dir: Path, out_dir: Path) -> dict:
    """The config with a tiny local model, local sample data and CPU-only settings."""
    datasets = [{**d, "path": str(Path(data_dir) / Path(d["path"]).name)} for d in cfg["datasets"]]
    derived = {**cfg, **CPU_OVERRIDES, "base_model": str(model_dir), "datasets": datasets,
               "dataset_prepared_path": str(Path(out_dir) / "prepared"), "output_dir": str(Path(out_dir) / "lora")}
    derived.pop("deepspeed", None)
    return derived


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check Axolotl configs and write the CPU demo copy.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check").add_argument("configs", nargs="+", type=Path)
    cpu = sub.add_parser("cpu")
    cpu.add_argument("config", type=Path)
    cpu.add_argument("--model", type=Path, required=True)
    cpu.add_argument("--data-dir", type=Path, required=True)
    cpu.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    def action():
        if args.cmd == "check":
            for path in args.configs:
                check(path)
                print(f"{path}: OK")
        else:
            cfg = cpu_copy(check(args.config), args.model, args.data_dir, args.out)
            print(write_resolved(cfg, args.config, args.out / RESOLVED_NAME))
    return report(action)


if __name__ == "__main__":
    sys.exit(main())
