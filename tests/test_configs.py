"""The Axolotl configs: the card's values, ablation diffs, and the checks `make check` runs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from common.errors import UserError
from preprocess.sources import SOURCES
from training import run
from training.config import LORA_KERNELS, check, gpu_settings, load, usable_attention, write_resolved

RECIPE = Path("axolotl_configs/aog-lora.yml")
ABLATIONS = {  # ablation -> the keys it may change
    "openorca-only": {"datasets", "output_dir"},
    "no-guanaco": {"datasets", "output_dir"},
    "no-system": {"datasets", "output_dir"},
    "decontaminated": {"datasets", "output_dir"},
    "fast-packing": {"sample_packing", "pad_to_sequence_len", "output_dir"},
    "qlora-24gb": {"adapter", "load_in_4bit", "micro_batch_size", "gradient_accumulation_steps", "output_dir"},
}
ALL = [RECIPE] + [Path(f"axolotl_configs/ablations/{name}.yml") for name in ABLATIONS]


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_every_config_is_listed_here():
    assert sorted(map(str, ALL)) == sorted(str(p.relative_to(REPO)) for p in (REPO / "axolotl_configs").rglob("*.yml"))


@pytest.mark.parametrize("path", ALL, ids=str)
def test_config_passes_axolotl_validation_and_the_unknown_key_check(path):
    check(path)


@pytest.mark.parametrize("path", ALL, ids=str)
def test_config_opens_with_the_command_that_runs_it(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# make ") and f"make train CONFIG={path}" in first


def test_recipe_matches_the_model_card():
    cfg = load(RECIPE)
    card = {"base_model": "beomi/Llama-3-Open-Ko-8B", "adapter": "lora", "lora_r": 32, "lora_alpha": 32,
            "lora_dropout": 0.05, "gradient_accumulation_steps": 8, "micro_batch_size": 4, "num_epochs": 3,
            "learning_rate": 0.0002, "lr_scheduler": "cosine", "warmup_steps": 50, "sequence_len": 4096,
            "bf16": True, "attn_implementation": "flash_attention_2", "lora_target_linear": True,
            "train_on_inputs": False, "special_tokens": {"pad_token": "<|end_of_text|>"}}
    assert {k: cfg.get(k) for k in card} == card


def test_recipe_trains_on_exactly_the_files_make_data_writes():
    datasets = load(RECIPE)["datasets"]
    assert [d["path"] for d in datasets] == [str(s.output_path().relative_to(REPO)) for s in SOURCES.values()]
    assert all(d["type"] == "alpaca" and d["ds_type"] == "json" for d in datasets)


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_differs_from_the_recipe_only_where_its_name_says(name):
    base, ablation = load(RECIPE), load(Path(f"axolotl_configs/ablations/{name}.yml"))
    changed = {k for k in base.keys() | ablation.keys() if base.get(k) != ablation.get(k)}
    assert changed == ABLATIONS[name]
    assert ablation["output_dir"] == f"outputs/{name}"


def test_ablation_datasets():
    recipe = load(RECIPE)["datasets"]
    by_name = {Path(d["path"]).stem: d for d in recipe}
    assert load(Path("axolotl_configs/ablations/openorca-only.yml"))["datasets"] == [by_name["openorca_ko"]]
    assert load(Path("axolotl_configs/ablations/no-guanaco.yml"))["datasets"] == [by_name["koalpaca"], by_name["openorca_ko"]]
    nosys = load(Path("axolotl_configs/ablations/no-system.yml"))["datasets"]
    assert nosys == [{**d, "path": d["path"].replace("data/processed/", "data/processed-nosys/")} for d in recipe]
    clean = load(Path("axolotl_configs/ablations/decontaminated.yml"))["datasets"]
    assert clean == [{**d, "path": d["path"].replace("data/processed/", "data/processed-decontaminated/")} for d in recipe]


def test_qlora_keeps_the_effective_batch():
    q, base = load(Path("axolotl_configs/ablations/qlora-24gb.yml")), load(RECIPE)
    assert q["micro_batch_size"] * q["gradient_accumulation_steps"] == base["micro_batch_size"] * base["gradient_accumulation_steps"]


def overlay(tmp_path, **keys):
    path = tmp_path / "variant.yml"
    path.write_text(yaml.safe_dump({"extends": str(REPO / RECIPE), **keys}), encoding="utf-8")
    return path


@pytest.mark.parametrize("keys, needle", [
    ({"lora_rr": 8}, "unknown Axolotl option(s): lora_rr"),
    ({"micro_batchsize": 2}, "micro_batchsize"),
    ({"datasets": [{"path": "x.jsonl", "ds_typ": "json", "type": "alpaca"}]}, "datasets[0].ds_typ"),
    ({"datasets": [{"path": "x.jsonl", "ds_type": "json",
                    "type": {"field_instruction": "instruction", "no_input_fromat": "{instruction}"}}]},
     "datasets[0].type.no_input_fromat"),
    ({"micro_batch_size": "two"}, "rejected by Axolotl: micro_batch_size"),
    ({"adapter": "loraa"}, "rejected by Axolotl"),
])
def test_bad_configs_are_caught(tmp_path, keys, needle):
    with pytest.raises(UserError) as e:
        check(overlay(tmp_path, **keys))
    assert needle in str(e.value)


@pytest.mark.parametrize("ds", ["zero2", "zero3"])
def test_deepspeed_configs(tmp_path, ds):
    stage = json.loads((REPO / f"axolotl_configs/deepspeed/{ds}.json").read_text())["zero_optimization"]["stage"]
    assert stage == int(ds[-1])
    check(overlay(tmp_path, deepspeed=f"axolotl_configs/deepspeed/{ds}.json"))


def test_train_without_data_is_a_clear_error(tmp_path, capsys):
    path = overlay(tmp_path, datasets=[{"path": str(tmp_path / "nope.jsonl"), "ds_type": "json", "type": "alpaca"}],
                   output_dir=str(tmp_path / "out"))
    assert run.main(["train", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: ") and "training data not found" in err and "make data" in err
    assert not (tmp_path / "out").exists()


def test_merge_without_adapter_is_a_clear_error(tmp_path, capsys):
    path = overlay(tmp_path, output_dir=str(tmp_path / "out"))
    assert run.main(["merge", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no LoRA adapter" in err and f"make train CONFIG={path}" in err


# ---- what runs on the GPU

def test_flash_attention_falls_back_to_sdpa_without_flash_attn(capsys):
    import importlib.util

    assert importlib.util.find_spec("flash_attn") is None  # the premise: this venv has no flash-attn
    cfg = check(RECIPE)
    assert cfg["attn_implementation"] == "sdpa" and load(RECIPE)["attn_implementation"] == "flash_attention_2"
    err = [line for line in capsys.readouterr().err.splitlines() if "attention:" in line]
    assert err == [f"{RECIPE}: attention: sdpa instead of flash_attention_2 (the flash_attn package does not import here; "
                   "`make flash-attn` installs it). The result is the same; only speed differs"]


def test_flash_attention_is_kept_where_flash_attn_imports(tmp_path, monkeypatch):
    (tmp_path / "flash_attn").mkdir()
    (tmp_path / "flash_attn" / "__init__.py").write_text("")  # an importable stand-in
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg, note = usable_attention(load(RECIPE))
    assert cfg["attn_implementation"] == "flash_attention_2" and note is None
    legacy, note = usable_attention({"flash_attention": True})
    assert legacy == {"flash_attention": True} and note is None
    monkeypatch.undo()
    sys.modules.pop("flash_attn", None)  # the stand-in was imported; forget it
    legacy, note = usable_attention({"flash_attention": True})
    assert legacy == {"attn_implementation": "sdpa"} and note


def test_check_passes_on_a_cuda_box_without_flash_attn_or_the_hub(monkeypatch):
    """Axolotl's own validator rejects flash_attention_2 there; the fallback is what lets
    `make check`, `make demo` and `make test` run on such a box."""
    import torch
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="no flash-attn build is available"):
        validate_config(DictDefault(load(RECIPE)))
    for path in ALL:
        assert check(path, quiet=True)["attn_implementation"] == "sdpa"


def test_the_record_says_which_attention_ran(tmp_path):
    record = write_resolved(check(RECIPE, quiet=True), RECIPE, tmp_path / "axolotl.yml")
    lines = record.read_text(encoding="utf-8").splitlines()
    assert lines[1] == f"# attn_implementation: sdpa here, where {RECIPE} asks flash_attention_2"
    assert yaml.safe_load(record.read_text(encoding="utf-8"))["attn_implementation"] == "sdpa"


def test_zero3_turns_the_fused_lora_kernels_off(tmp_path, capsys):
    z3 = check(overlay(tmp_path, deepspeed="axolotl_configs/deepspeed/zero3.json"))
    assert [z3[k] for k in LORA_KERNELS] == [False] * 4
    assert "ZeRO-3: fused LoRA kernels off" in capsys.readouterr().err
    z2 = check(overlay(tmp_path, deepspeed="axolotl_configs/deepspeed/zero2.json"))
    assert all(k not in z2 for k in LORA_KERNELS)  # unset: Axolotl turns them on by itself
    forced = check(overlay(tmp_path, deepspeed="axolotl_configs/deepspeed/zero3.json", lora_mlp_kernel=True))
    assert forced["lora_mlp_kernel"] is True and "lora_o_kernel" not in forced


@pytest.mark.parametrize("path, gpu, gpus, expected", [
    (RECIPE, "a100", 1, ["attention: sdpa", "sample packing off: each micro batch padded to its longest row",
                         "fused LoRA kernels (Triton): lora_mlp_kernel, lora_qkv_kernel, lora_o_kernel, "
                         "lora_embedding_kernel", "precision: bf16, tf32 matmuls", "gradient checkpointing: on",
                         "batch: micro 4 x accumulation 8 x 1 GPU(s) = 32 sequences per step"]),
    (Path("axolotl_configs/ablations/fast-packing.yml"), "h100", 1,
     ["sample packing on: rows packed into sequence_len, attention through torch's varlen kernel (sdpa_varlen)"]),
    (Path("axolotl_configs/ablations/fast-packing.yml"), "a100", 1,
     ["note: Axolotl warns that packing with sdpa in bf16 is untested below H100; watch the first losses, "
      "or install flash-attn"]),
    (Path("axolotl_configs/ablations/qlora-24gb.yml"), "a100", 1, ["precision: bf16, tf32 matmuls, 4-bit base (bitsandbytes)",
                                                                   "batch: micro 1 x accumulation 32 x 1 GPU(s) = 32 sequences per step"]),
])
def test_make_check_shows_what_axolotl_switches_on_for_a_gpu(path, gpu, gpus, expected):
    lines = gpu_settings(check(path, quiet=True), gpu, gpus)
    assert set(expected) <= set(lines), lines


def test_gpu_settings_under_zero3_on_four_gpus(tmp_path):
    cfg = check(overlay(tmp_path, deepspeed="axolotl_configs/deepspeed/zero3.json", gradient_accumulation_steps=2),
                quiet=True)
    lines = gpu_settings(cfg, "h100", 4)
    assert "fused LoRA kernels (Triton): off" in lines
    assert "batch: micro 4 x accumulation 2 x 4 GPU(s) = 32 sequences per step" in lines
    assert "DeepSpeed ZeRO-3: axolotl_configs/deepspeed/zero3.json" in lines
    with pytest.raises(UserError, match="GPU must be one of a100, h100"):
        gpu_settings(cfg, "v100")


# ---- mistakes below the top level

@pytest.mark.parametrize("keys, needle", [
    ({"special_tokens": {"pad_tokn": "<|end_of_text|>"}}, "unknown Axolotl option(s): special_tokens.pad_tokn"),
    ({"datasets": [{"path": "x.jsonl", "ds_type": "json", "type": "alpacca"}]},
     "unknown dataset type(s): datasets[0].type: 'alpacca'"),
    ({"datasets": [{"path": "x.jsonl", "ds_type": "json", "type": "no_such_pkg.load_x"}]}, "'no_such_pkg.load_x'"),
])
def test_nested_typos_and_unknown_dataset_types_are_caught(tmp_path, keys, needle):
    with pytest.raises(UserError) as e:
        check(overlay(tmp_path, **keys))
    assert needle in str(e.value)


@pytest.mark.parametrize("dataset_type", ["alpaca", "alpaca:chat", "chat_template", "completion", "alpaca_chat.load_qa",
                                          {"field_instruction": "instruction", "format": "{instruction}"}])
def test_known_dataset_types_pass(tmp_path, dataset_type):
    check(overlay(tmp_path, datasets=[{"path": "x.jsonl", "ds_type": "json", "type": dataset_type}]), quiet=True)


def test_a_key_given_twice_is_an_error(tmp_path):
    path = tmp_path / "twice.yml"
    path.write_text(f"extends: {REPO / RECIPE}\nlora_r: 8\nlora_r: 64\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"the key 'lora_r' is given twice \(only the last would count\)"):
        load(path)
    nested = tmp_path / "nested.yml"
    nested.write_text("special_tokens:\n  pad_token: a\n  pad_token: b\n", encoding="utf-8")
    with pytest.raises(UserError, match="'pad_token' is given twice"):
        load(nested)


def test_an_extends_cycle_is_an_error_not_a_recursion(tmp_path):
    (tmp_path / "a.yml").write_text("extends: b.yml\nlora_r: 8\n", encoding="utf-8")
    (tmp_path / "b.yml").write_text("extends: a.yml\n", encoding="utf-8")
    with pytest.raises(UserError, match="`extends` loops back"):
        load(tmp_path / "a.yml")
    done = subprocess.run([sys.executable, "-m", "training.config", "check", str(tmp_path / "a.yml")], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "`extends` loops back" in done.stderr


def test_plugin_options_are_known_once_the_plugin_is(tmp_path):
    from training.gpu_check import LIGER

    cfg = check(overlay(tmp_path, sample_packing=True, pad_to_sequence_len=True, **LIGER), quiet=True)
    assert cfg["liger_fused_linear_cross_entropy"] is True
    assert "attention: sdpa" in gpu_settings(cfg, "h100")
    with pytest.raises(UserError, match="unknown Axolotl option"):
        check(overlay(tmp_path, liger_rope=True))  # without the plugin, Axolotl would drop it silently
    with pytest.raises(UserError, match="plugins: cannot load"):
        check(overlay(tmp_path, plugins=["axolotl.integrations.no_such.Plugin"]))


@pytest.mark.e2e  # imports every Axolotl data loader (about 9 s)
def test_builtin_dataset_types_read_from_source_are_axolotls():
    from axolotl.utils.data.wrappers import DATASET_HANDLERS

    from training.config import builtin_dataset_types

    assert builtin_dataset_types() == set(DATASET_HANDLERS) and "alpaca" in DATASET_HANDLERS
