"""Axolotl configs: resolve ``extends``, check them, and write the CPU demo copy.

    python -m training.config check CONFIG [CONFIG ...]   schema + unknown-key check
    python -m training.config cpu CONFIG --model DIR --data-dir DIR --out DIR   CPU demo copy

An ablation YAML names its parent with ``extends: ../aog-lora.yml`` and sets only the keys it
changes (top-level keys replace the parent's). Axolotl itself always gets a resolved, complete
YAML: ``training.run`` writes it to ``<output_dir>/axolotl.yml``, the record of the run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import yaml

from common.errors import UserError, run_command
from common.files import write_atomic

EXTENDS = "extends"
RESOLVED_NAME = "axolotl.yml"
ADAPTER_FILE = "adapter_model.safetensors"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key given twice in one mapping is an error (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (only the last would count)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    """The complete config of ``path``, with its ``extends`` chain applied."""
    path = Path(path)
    if path.resolve() in _chain:
        raise UserError(f"{path}: `extends` loops back to a config already in the chain "
                          f"({' -> '.join(str(p) for p in _chain + (path.resolve(),))})")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise UserError(f"{path}: config not found") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of Axolotl options")
    parent = raw.pop(EXTENDS, None)
    if parent is None:
        return raw
    return {**load(path.parent / parent, _chain + (path.resolve(),)), **raw}


def _field_names(model) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names |= {name, field.alias}
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias)
    return names - {None}


def _nested_model(annotation):
    """The pydantic model a field holds (directly or as ``Model | None``), if any."""
    from typing import get_args

    from pydantic import BaseModel

    for t in (annotation, *get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _unknown_in(value: dict, model, where: str) -> list[str]:
    names, found = _field_names(model), []
    for key, v in value.items():
        if key not in names:
            found.append(f"{where}{key}")
            continue
        field = next((f for n, f in model.model_fields.items() if key in (n, f.alias)), None)
        inner = _nested_model(field.annotation) if field is not None else None
        if inner is not None and isinstance(v, dict):
            found += _unknown_in(v, inner, f"{where}{key}.")
    return found


def unknown_keys(cfg: dict) -> list[str]:
    """Keys Axolotl would silently drop (pydantic ``extra=ignore``), e.g. a typo like ``lora_rr``,
    at the top level and inside its option groups (``special_tokens.pad_tokn``)."""
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset, UserDefinedPrompterType

    if cfg.get("plugins"):  # a plugin's own options (liger_*, ...) join the schema once it is registered
        from axolotl.integrations.base import PluginManager
        from axolotl.integrations.config import merge_input_args
        from axolotl.utils.config import prepare_plugins
        from axolotl.utils.dict import DictDefault

        prepare_plugins(DictDefault(cfg))  # logs, and skips, a plugin it cannot import
        missing = [name for name in cfg["plugins"] if name not in PluginManager.get_instance().plugins]
        if missing:
            raise UserError(f"plugins: cannot load {', '.join(missing)} (check the module path)")
        schema = merge_input_args()[1]
    else:  # not the merged schema: the plugin registry is process-wide and may hold an earlier config's plugins
        schema = AxolotlInputConfig
    found = _unknown_in({k: v for k, v in cfg.items() if k != "datasets"}, schema, "")
    for i, d in enumerate(cfg.get("datasets") or []):
        found += _unknown_in({k: v for k, v in d.items() if k != "type"}, SFTDataset, f"datasets[{i}].")
        if isinstance(d.get("type"), dict):
            found += _unknown_in(d["type"], UserDefinedPrompterType, f"datasets[{i}].type.")
    return found


def builtin_dataset_types() -> set[str]:
    """The keys of Axolotl's ``DATASET_HANDLERS``, read from its source: importing that module loads
    every data loader, two thirds of a `make check`. A test compares the two."""
    import ast

    path = Path(importlib.util.find_spec("axolotl").submodule_search_locations[0]) / "utils" / "data" / "wrappers.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DATASET_HANDLERS" for t in node.targets):
            return {k.value for k in node.value.keys}
    raise RuntimeError(f"{path} no longer defines DATASET_HANDLERS; update training.config for this Axolotl")


def unknown_dataset_types(cfg: dict) -> list[str]:
    """Dataset ``type:`` strings Axolotl cannot resolve: its built-in handlers, a module of its
    prompt strategies, or an importable module of your own. Axolotl itself finds out only while
    tokenizing, after a GPU job has started."""
    builtin = builtin_dataset_types()
    bad = []
    for i, d in enumerate(cfg.get("datasets") or []):
        t = d.get("type")
        if not isinstance(t, str):
            continue
        base = t.split(":")[0]
        parts = base.split(".")
        module = ".".join(parts[:-1]) if len(parts) > 1 and parts[-1].startswith("load") else base
        if base in builtin or base == "messages" or base.startswith(("bradley_terry", "stepwise_supervised")):
            continue
        for candidate in (f"axolotl.prompt_strategies.{module}", module):
            try:
                if importlib.util.find_spec(candidate) is not None:
                    break
            except (ImportError, ValueError):
                pass
        else:
            bad.append(f"datasets[{i}].type: {t!r}")
    return bad


# ---- what runs on the GPU

FLASH = "flash_attention_2"
LORA_KERNELS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")
# `make check GPU=...`: the capabilities Axolotl's own probe reports on that card.
GPUS = {"a100": "sm_80", "h100": "sm_90"}


def importable(module: str) -> bool:
    """Whether ``module`` imports here (a flash_attn built for another torch is installed but fails)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or OSError for an undefined symbol in its CUDA extension
        return False
    return True


def usable_attention(cfg: dict) -> tuple[dict, str | None]:
    """The card's flash attention where the flash_attn package imports; otherwise torch's sdpa,
    which needs no extra package (Axolotl packs rows through torch's varlen attention with it).
    Without this, Axolotl rejects flash_attention_2 on a CUDA box that lacks flash-attn and the Hub."""
    wants_flash = cfg.get("attn_implementation") == FLASH or (
        cfg.get("flash_attention") and not cfg.get("attn_implementation"))
    if not wants_flash or importable("flash_attn"):
        return cfg, None
    cfg = {k: v for k, v in cfg.items() if k != "flash_attention"}
    return {**cfg, "attn_implementation": "sdpa"}, (
        "attention: sdpa instead of flash_attention_2 (the flash_attn package does not import here; "
        "`make flash-attn` installs it). The result is the same; only speed differs")


def zero_stage(cfg: dict) -> int | None:
    """The ZeRO stage of the config's DeepSpeed JSON, if it names one."""
    ds = cfg.get("deepspeed")
    if not ds:
        return None
    try:
        conf = ds if isinstance(ds, dict) else json.loads(Path(ds).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"DeepSpeed config not found: {ds}") from None
    except ValueError as e:
        raise UserError(f"{ds}: not valid JSON ({e})") from None
    return (conf.get("zero_optimization") or {}).get("stage")


def safe_kernels(cfg: dict) -> tuple[dict, str | None]:
    """Axolotl switches its fused Triton LoRA kernels on by itself. They read the base weights
    directly, which ZeRO-3 keeps sharded, and no multi-GPU run has proven them here: under ZeRO-3
    they stay off unless the config sets them."""
    if zero_stage(cfg) != 3 or any(cfg.get(k) is not None for k in LORA_KERNELS):
        return cfg, None
    return {**cfg, **dict.fromkeys(LORA_KERNELS, False)}, (
        "ZeRO-3: fused LoRA kernels off (unproven with sharded weights; set lora_*_kernel: true to force)")


def gpu_settings(cfg: dict, gpu: str, gpus: int = 1) -> list[str]:
    """What Axolotl switches on for ``cfg`` on ``gpus`` of ``gpu``: its own validation, given the
    capabilities its probe reports there."""
    import torch
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    if gpu not in GPUS:
        raise UserError(f"GPU must be one of {', '.join(GPUS)}, got {gpu!r}")
    caps = {"bf16": True, "tf32": True, "fp8": GPUS[gpu] >= "sm_90", "n_gpu": gpus, "compute_capability": GPUS[gpu]}
    v = validate_config(DictDefault(json.loads(json.dumps(cfg))), capabilities=caps,
                        env_capabilities={"torch_version": torch.__version__.split("+")[0]})
    attn = v.get("attn_implementation") or "eager"
    if not v.get("sample_packing"):
        packing = "off: each micro batch padded to its longest row"
    elif attn == "sdpa":
        packing = "on: rows packed into sequence_len, attention through torch's varlen kernel (sdpa_varlen)"
    else:
        packing = f"on: rows packed into sequence_len, attention through {attn}'s varlen path"
    kernels = [k for k in LORA_KERNELS if v.get(k)]
    lines = [f"attention: {attn}", f"sample packing {packing}",
             f"fused LoRA kernels (Triton): {', '.join(kernels) if kernels else 'off'}",
             f"precision: {'bf16' if v.get('bf16') else 'fp32'}{', tf32 matmuls' if v.get('tf32') else ''}"
             f"{', 4-bit base (bitsandbytes)' if v.get('load_in_4bit') else ''}",
             f"gradient checkpointing: {'on' if v.get('gradient_checkpointing') else 'off'}",
             f"batch: micro {v['micro_batch_size']} x accumulation {v['gradient_accumulation_steps']} x {gpus} GPU(s)"
             f" = {v['micro_batch_size'] * v['gradient_accumulation_steps'] * gpus} sequences per step"]
    if v.get("deepspeed"):
        lines.append(f"DeepSpeed ZeRO-{zero_stage(cfg)}: {cfg['deepspeed']}")
    if attn == "sdpa" and v.get("sample_packing") and GPUS[gpu] < "sm_90":
        lines.append("note: Axolotl warns that packing with sdpa in bf16 is untested below H100; "
                     "watch the first losses, or install flash-attn")
    return lines


def with_choices(cfg: dict) -> tuple[dict, list[str]]:
    """The config as `make train` runs it here: the attention this machine can run and the LoRA
    kernels the launch allows; and a note on each change."""
    notes = []
    for choose in (usable_attention, safe_kernels):
        cfg, note = choose(cfg)
        notes += [note] if note else []
    return cfg, notes


def check(path: Path, quiet: bool = False) -> dict:
    """Resolve ``path``, apply the attention and kernel choices ``make train`` makes, and run
    Axolotl's own validation plus the unknown-key check."""
    cfg, notes = with_choices(load(path))
    for note in notes if not quiet else ():
        print(f"{path}: {note}", file=sys.stderr)
    unknown = unknown_keys(cfg)
    if unknown:
        raise UserError(f"{path}: unknown Axolotl option(s): {', '.join(unknown)} "
                          "(Axolotl would ignore them silently; check the spelling)")
    types = unknown_dataset_types(cfg)
    if types:
        raise UserError(f"{path}: unknown dataset type(s): {', '.join(types)} (Axolotl knows e.g. alpaca, "
                          "chat_template, completion; see its dataset formats docs)")
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from pydantic import ValidationError

    try:
        validate_config(DictDefault(cfg))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        raise UserError(f"{path}: rejected by Axolotl: {problems}") from None
    except ValueError as e:
        raise UserError(f"{path}: rejected by Axolotl: {e}") from None
    return cfg


def write_resolved(cfg: dict, origin: Path, out: Path) -> Path:

    header = f"# Resolved from {origin} by training.config; edit that file, not this one.\n"
    asked = load(origin).get("attn_implementation")
    if asked and asked != cfg.get("attn_implementation"):
        header += f"# attn_implementation: {cfg.get('attn_implementation')} here, where {origin} asks {asked}\n"
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


def datasets_in(cfg: dict, data_dir: Path) -> list[dict]:
    """The config's dataset entries, each reading the file of the same name in ``data_dir``."""
    return [{**d, "path": str(Path(data_dir) / Path(d["path"]).name)} for d in cfg["datasets"]]


def cpu_copy(cfg: dict, model_dir: Path, data_dir: Path, out_dir: Path) -> dict:
    """The config with a tiny local model, local sample data and CPU-only settings."""
    derived = {**cfg, **CPU_OVERRIDES, "base_model": str(model_dir), "datasets": datasets_in(cfg, data_dir),
               "dataset_prepared_path": str(Path(out_dir) / "prepared"), "output_dir": str(Path(out_dir) / "lora")}
    derived.pop("deepspeed", None)
    return derived


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check Axolotl configs and write the CPU demo copy.")
    sub = p.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check")
    chk.add_argument("configs", nargs="+", type=Path)
    chk.add_argument("--gpu", choices=sorted(GPUS), help="also show what Axolotl switches on for this GPU")
    chk.add_argument("--gpus", type=int, default=1, help="with --gpu: how many of them")
    cpu = sub.add_parser("cpu")
    cpu.add_argument("config", type=Path)
    cpu.add_argument("--model", type=Path, required=True)
    cpu.add_argument("--data-dir", type=Path, required=True)
    cpu.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    def action():
        if args.cmd == "check":
            for path in args.configs:
                cfg = check(path)
                print(f"{path}: OK")
                if args.gpu:
                    print("".join(f"  {line}\n" for line in gpu_settings(cfg, args.gpu, args.gpus)), end="")
        else:
            cfg = cpu_copy(check(args.config), args.model, args.data_dir, args.out)
            print(write_resolved(cfg, args.config, args.out / RESOLVED_NAME))
    return run_command(action)


if __name__ == "__main__":
    sys.exit(main())
