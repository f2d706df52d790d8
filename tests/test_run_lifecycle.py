"""The run lifecycle (training/run.py) as a user meets it after the demo: tokenized data keyed on
content, a folder never overwritten by accident, a killed run resumed, the card's batch on N GPUs,
one CONFIG from train to chat, and a merged model that stops at <|end_of_text|> on its own."""
import hashlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SAMPLE_COUNTS, SAMPLE_ROWS, load_prepared, read_jsonl, write_jsonl

from common.errors import UserError
from training import run
from training.config import ADAPTER_FILE, load

RECIPE = REPO / "axolotl_configs" / "aog-lora.yml"


def make(*args, timeout=600):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the batch on N GPUs

@pytest.mark.parametrize("config, gpus, expected", [
    (RECIPE, 1, 8), (RECIPE, 2, 4), (RECIPE, 4, 2), (RECIPE, 8, 1),
    (REPO / "axolotl_configs/ablations/qlora-24gb.yml", 4, 8),  # micro batch 1 x 32
])
def test_accumulation_keeps_the_cards_global_batch(config, gpus, expected, capsys):
    cfg = run.with_accumulation(load(config), gpus, keep=False)
    assert cfg["gradient_accumulation_steps"] == expected
    assert cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] * gpus == 32
    assert (f"gradient_accumulation_steps {32 // cfg['micro_batch_size']} -> {expected}" in capsys.readouterr().err) \
        == (gpus > 1)


def test_accumulation_that_does_not_divide_is_a_clear_error():
    with pytest.raises(UserError, match=r"3 GPUs cannot keep .* global batch of 32 .* NGPUS in \[1, 2, 4, 8\]"):
        run.with_accumulation(load(RECIPE), 3, keep=False)
    assert run.with_accumulation(load(RECIPE), 3, keep=True)["gradient_accumulation_steps"] == 8


def test_make_passes_the_launch_to_accelerate_and_the_record():
    r = make("-n", "train", "NGPUS=2", "NNODES=2", "NODE_RANK=1", "MAIN_ADDR=10.0.0.1", "RESUME=1", "TRACK=wandb")
    assert r.returncode == 0, r.stderr
    assert ("-m training.run train axolotl_configs/aog-lora.yml --gpus 4 --resume" in " ".join(r.stdout.split())
            and "--track wandb --deepspeed axolotl_configs/deepspeed/zero2.json --node-rank 1" in r.stdout)
    assert ("-- --num_processes 4 --multi_gpu --num_machines 2 --machine_rank 1 --main_process_ip 10.0.0.1 "
            "--main_process_port 29500;") in r.stdout
    one = make("-n", "train", "RESUME=0")
    assert "--resume" not in one.stdout and "-- --num_processes 1 ;" in " ".join(one.stdout.split())
    bad = make("-n", "train", "NGPUS=two")
    assert bad.returncode != 0 and "NGPUS and NNODES must be whole numbers >= 1" in bad.stderr


# ---- the content key

def test_prepared_key_follows_content_and_tokenization_not_training(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "질문", "input": "", "output": "답"}])
    cfg = {**load(RECIPE), "datasets": [{"path": str(data), "ds_type": "json", "type": "alpaca"}]}
    key = run.prepared_key(cfg)
    assert run.prepared_key(cfg) == key
    assert run.prepared_key({**cfg, "learning_rate": 1e-4, "num_epochs": 1, "output_dir": "x"}) == key
    for change in ({"sequence_len": 2048}, {"train_on_inputs": True}, {"sample_packing": True},
                   {"special_tokens": {"pad_token": "<|eot_id|>"}}, {"base_model": "other/model"}):
        assert run.prepared_key({**cfg, **change}) != key, change
    write_jsonl(data, [{"instruction": "질문", "input": "", "output": "다른 답"}])  # same path, new bytes
    assert run.prepared_key(cfg) != key


def test_prepared_dir_root(tmp_path):
    cfg = {**load(RECIPE), "datasets": []}
    key = run.prepared_key(cfg)
    assert run.prepared_dir(cfg) == Path("data/prepared") / key
    assert run.prepared_dir({**cfg, "dataset_prepared_path": str(tmp_path)}) == tmp_path / key
    # a record already names a keyed folder: the root is its parent, whatever key it had
    assert run.prepared_dir({**cfg, "dataset_prepared_path": str(tmp_path / "0123456789abcdef")}) == tmp_path / key


# ---- the output folder, before any training

def test_a_folder_with_a_run_is_refused_and_left_as_it_was(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)
    (out / ADAPTER_FILE).write_bytes(b"weights")
    (out / "axolotl.yml").write_text("the old run's record\n", encoding="utf-8")
    before = tree_digest(out)
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"extends": str(RECIPE), "output_dir": str(out)}), encoding="utf-8")
    assert run.main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out}/ already holds a run ({ADAPTER_FILE} and 1 checkpoint). Continue it with "
                   f"RESUME=1, delete it and start again with OVERWRITE=1, or set a new output_dir in {config}\n")
    assert run.main(["train", str(config), "--resume", "--overwrite"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert tree_digest(out) == before


def test_resume_of_an_empty_folder_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"extends": str(RECIPE), "output_dir": str(tmp_path / "out")}), encoding="utf-8")
    assert run.main(["train", str(config), "--resume"]) == 2
    assert "holds no run to resume; drop RESUME=1" in capsys.readouterr().err


def test_overwrite_never_deletes_the_repo(tmp_path):
    with pytest.raises(UserError, match="holds this repo"):
        run.remove_run(Path("."))


# ---- one CONFIG from train to chat

def test_model_to_use_follows_the_run_of_the_config(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"extends": str(RECIPE), "output_dir": str(out)}), encoding="utf-8")
    with pytest.raises(UserError, match=r"holds no trained model .* make train CONFIG="):
        run.model_to_use(config)
    out.mkdir()
    (out / ADAPTER_FILE).write_bytes(b"")
    assert run.model_to_use(config) == ("beomi/Llama-3-Open-Ko-8B", str(out), out)
    (out / "axolotl.yml").write_text(yaml.safe_dump({"base_model": "local/base", "output_dir": str(out)}))
    assert run.model_to_use(config) == ("local/base", str(out), out)  # the run's record names its base
    (out / "merged").mkdir()
    (out / "merged" / "config.json").write_text("{}")
    assert run.model_to_use(config) == ("local/base", str(out), out)  # a merge that never finished
    marker = out / "merged" / run.MERGE_MARKER
    marker.write_text(json.dumps({"adapter_sha256": hashlib.sha256(b"").hexdigest()}))
    assert run.model_to_use(config) == (str(out / "merged"), None, out)
    (out / ADAPTER_FILE).write_bytes(b"retrained")  # e.g. RESUME=1 after the merge: the merge is stale
    assert run.model_to_use(config) == ("local/base", str(out), out)
    (out / ADAPTER_FILE).write_bytes(b"")
    assert run.model_to_use(config, "some/model") == ("some/model", None, None)  # MODEL= overrides
    assert run.model_to_use(config, None, "other-adapter") == ("local/base", "other-adapter", None)


def test_eval_and_chat_without_a_trained_run_say_how_to_train(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"extends": str(RECIPE), "output_dir": str(tmp_path / "out")}), encoding="utf-8")
    for target in ("eval", "chat"):
        r = make(target, f"CONFIG={config}")
        assert r.returncode == 2, r.stderr
        assert f"error: {tmp_path}/out/ holds no trained model" in r.stderr and "make train CONFIG=" in r.stderr


# ---- the whole lifecycle on the tiny model

@pytest.fixture(scope="module")
def lifecycle_config(demo, tmp_path_factory):
    """The demo's CPU config over a copy of the sample data, one epoch, a checkpoint every step."""
    out, _ = demo
    tmp = tmp_path_factory.mktemp("lifecycle")
    data = tmp / "data"
    data.mkdir()
    demo_cfg = load(out / "axolotl.yml")
    datasets = []
    for d in demo_cfg["datasets"]:
        path = data / Path(d["path"]).name
        path.write_bytes(Path(d["path"]).read_bytes())
        datasets.append({**d, "path": str(path)})
    config = tmp / "run.yml"
    config.write_text(yaml.safe_dump({
        "extends": str(out / "axolotl.yml"), "datasets": datasets, "dataset_prepared_path": str(tmp / "prepared"),
        "output_dir": str(tmp / "run"), "max_steps": None, "num_epochs": 1, "saves_per_epoch": None,
        "save_steps": 1, "save_total_limit": 100}), encoding="utf-8")
    return config, tmp


def test_killed_run_resumes_and_changed_data_is_never_trained_on_stale(lifecycle_config):
    config, tmp = lifecycle_config
    out, record = tmp / "run", tmp / "run" / "axolotl.yml"

    # 1. a run killed right after its first checkpoint
    with open(tmp / "killed.log", "w") as log:
        p = subprocess.Popen(["make", "--no-print-directory", "train", f"CONFIG={config}"], cwd=REPO,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while not run.complete(out / "checkpoint-1"):
            assert p.poll() is None and time.time() < deadline, (tmp / "killed.log").read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert not (out / ADAPTER_FILE).exists()
    killed = {c.name: tree_digest(c) for c in run.checkpoints(out)}
    done = max(int(name.split("-")[1]) for name in killed)

    # 2. a plain rerun refuses, in one line, and changes nothing
    r = make("train", f"CONFIG={config}")
    assert r.returncode == 2 and r.stderr.startswith(f"error: {out}/ already holds a run (") and "RESUME=1" in r.stderr
    assert {c.name: tree_digest(c) for c in run.checkpoints(out)} == killed

    # 3. RESUME=1 finishes the run: the step count of an uninterrupted run, no checkpoint lost
    r = make("train", f"CONFIG={config}", "RESUME=1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = len(load_prepared(record))
    assert rows == SAMPLE_ROWS
    cfg = yaml.safe_load(record.read_text(encoding="utf-8"))
    steps = math.ceil(math.ceil(rows / cfg["micro_batch_size"]) / cfg["gradient_accumulation_steps"])  # one epoch
    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == state["max_steps"] == steps and (out / ADAPTER_FILE).is_file()
    assert (r.stdout + r.stderr).count("'loss': ") == steps - done  # only the steps after the checkpoint ran again
    assert cfg["resume_from_checkpoint"] == str(out / f"checkpoint-{done}")
    assert [c.name for c in run.checkpoints(out)] == [f"checkpoint-{i}" for i in range(1, steps + 1)]
    assert all(tree_digest(out / name) == digest for name, digest in killed.items())

    # 4. same path, fewer rows: resuming would mix data, so it is refused
    koalpaca = tmp / "data" / "koalpaca.jsonl"
    write_jsonl(koalpaca, read_jsonl(koalpaca)[:5])
    r = make("train", f"CONFIG={config}", "RESUME=1")
    assert r.returncode == 2 and "the training data or its tokenization changed" in r.stderr

    # 5. OVERWRITE=1 starts again on exactly the new rows
    config.write_text(config.read_text(encoding="utf-8").replace("max_steps: null", "max_steps: 1"), encoding="utf-8")
    old_prepared = cfg["dataset_prepared_path"]
    r = make("train", f"CONFIG={config}", "OVERWRITE=1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    new = yaml.safe_load(record.read_text(encoding="utf-8"))
    assert new["dataset_prepared_path"] != old_prepared and "resume_from_checkpoint" not in new
    assert len(load_prepared(record)) == SAMPLE_ROWS - SAMPLE_COUNTS["koalpaca"][1] + 5
    assert f"Loading prepared dataset from disk at {new['dataset_prepared_path']}/" in r.stdout + r.stderr
    assert [c.name for c in run.checkpoints(out)] == ["checkpoint-1"]

    # 6. merging uses the run's record and never rewrites it, even after the config changed
    config.write_text(config.read_text(encoding="utf-8") + "logging_steps: 5\n", encoding="utf-8")
    before = record.read_bytes()
    assert run.merge(config) == record and record.read_bytes() == before


def test_ngpus_sets_accumulation_in_the_record_and_tokenizes_once(lifecycle_config, capfd):
    config, tmp = lifecycle_config
    variant = tmp / "two-gpus.yml"
    variant.write_text(yaml.safe_dump({"extends": str(config), "output_dir": str(tmp / "two-gpus")}), encoding="utf-8")
    record = run.train(variant, gpus=2)
    assert "2 GPUs: gradient_accumulation_steps 2 -> 1, keeping the global batch of 4 sequences" \
        in capfd.readouterr().err
    cfg = yaml.safe_load(record.read_text(encoding="utf-8"))
    assert cfg["gradient_accumulation_steps"] == 1 and "extends" not in cfg
    # the folder holds no adapter or checkpoint yet, so preparing again is allowed; the data is reused
    assert yaml.safe_load(run.train(variant, gpus=1).read_text(encoding="utf-8"))["gradient_accumulation_steps"] == 2
    assert f"tokenized data: {cfg['dataset_prepared_path']} (matches the data and config; reused)" \
        in capfd.readouterr().err


# ---- a model that stops outside this repo

def generated_tokens(model_dir: Path) -> list[int]:
    """Greedy generation with no eos argument, where the third new token is forced to be
    <|end_of_text|>: only generation_config.json can tell generate() to stop there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("### Question:\n안녕하세요?\n\n### Response:\n", return_tensors="pt")
    n = ids.input_ids.shape[1]

    class ThirdTokenIsEos(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] == n + 2:
                scores[:] = -math.inf
                scores[:, tok.eos_token_id] = 0
            return scores

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False,
                             logits_processor=LogitsProcessorList([ThirdTokenIsEos()]))
    return out[0, n:].tolist()


def test_merged_model_stops_at_end_of_text_with_no_eos_argument(demo):
    from transformers import AutoTokenizer

    out, _ = demo
    merged = out / "lora" / "merged"
    eos = AutoTokenizer.from_pretrained(merged).eos_token_id
    new = generated_tokens(merged)
    assert len(new) == 3 and new[-1] == eos
    assert len(generated_tokens(out / "tiny-llama")) == 12  # the base's stale ids (eos 2) never stop


def test_adapter_and_merged_folders_carry_the_tokenizers_ids(demo):
    from transformers import AutoTokenizer

    out, _ = demo
    tok = AutoTokenizer.from_pretrained(out / "tiny-llama")
    for folder in (out / "lora", out / "lora" / "merged"):
        gen = json.loads((folder / "generation_config.json").read_text())
        assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == \
            (tok.bos_token_id, tok.eos_token_id, tok.eos_token_id), folder
    assert AutoTokenizer.from_pretrained(out / "lora" / "merged").pad_token == "<|end_of_text|>"


@pytest.mark.e2e  # imports Axolotl's data loaders (about 9 s)
def test_the_content_key_covers_axolotls_own_hash_fields():
    from axolotl.utils.data.shared import DATASET_HASH_CONFIG_EXTRA_FIELDS

    assert set(DATASET_HASH_CONFIG_EXTRA_FIELDS) <= set(run.TOKENIZATION_FIELDS)
