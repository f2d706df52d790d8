"""Publishing a run (publishing/card.py, publishing/publish.py) on the demo's real run: the loss curve and
TensorBoard logs, a model card golden against the files it is built from, the Hub push dry run and
its clear errors, and the Ollama Modelfile in the card's prompt format."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from common.errors import UserError
from evaluation.chat import render
from preprocess.prompts import SYSTEM_INSTRUCTION
from publishing import card, publish
from training import run
from training.config import CPU_OVERRIDES


def copy_run(demo_out: Path, tmp: Path) -> Path:
    """The demo's run and its data under ``tmp``, as if it had trained there, so a test can change any
    input; returns its config."""
    record = yaml.safe_load((demo_out / "lora" / "axolotl.yml").read_text(encoding="utf-8"))
    datasets = []
    for d in record["datasets"]:
        src = Path(d["path"])
        (tmp / "data").mkdir(exist_ok=True)
        for f in (src, src.with_name(src.stem + ".stats.json")):
            shutil.copy(f, tmp / "data" / f.name)
        datasets.append({**d, "path": str(tmp / "data" / src.name)})
    record["datasets"] = datasets
    # the record of a run that trained on these copies: its tokenized data is keyed on them
    record["dataset_prepared_path"] = str(Path(record["dataset_prepared_path"]).parent / run.prepared_key(record))
    out = tmp / "run"
    shutil.copytree(demo_out / "lora", out)
    record["output_dir"] = str(out)
    (out / "axolotl.yml").write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True), encoding="utf-8")
    config = tmp / "run.yml"
    config.write_text(yaml.safe_dump({"extends": str(demo_out / "axolotl.yml"), "output_dir": str(out),
                                      "datasets": datasets}), encoding="utf-8")
    return config


@pytest.fixture
def run_copy(demo, tmp_path, monkeypatch):
    out, _ = demo
    config = copy_run(out, tmp_path)
    monkeypatch.chdir(tmp_path)
    return config


# ---- watching a run

def test_train_leaves_a_loss_curve_and_tensorboard_logs(demo):
    out, _ = demo
    lora = out / "lora"
    assert (lora / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = CPU_OVERRIDES["max_steps"]
    state = json.loads((lora / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert publish.training_log(lora) == [e for e in state["log_history"] if "loss" in e]
    assert [e["step"] for e in publish.training_log(lora)] == list(range(1, steps + 1))
    assert list((lora / "runs").rglob("events.out.tfevents.*"))


def test_loss_curve_of_a_killed_run_comes_from_its_newest_checkpoint(run_copy):
    out = run_copy.parent / "run"
    shutil.rmtree(out / f"checkpoint-{CPU_OVERRIDES['max_steps']}")
    (out / "loss.png").unlink()
    assert publish.main(["loss", str(run_copy)]) == 0
    assert [e["step"] for e in publish.training_log(out)] == [1, 2]
    assert (out / "loss.png").is_file()


def test_no_checkpoint_is_one_line(tmp_path, capsys):
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path)}))
    assert publish.main(["loss", str(config)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/ has no checkpoint with a training log yet\n"


# ---- the model card

def test_card_is_built_from_the_runs_files(run_copy):
    from huggingface_hub import ModelCard

    out = run_copy.parent / "run"
    path = card.write(run_copy)
    text = path.read_text(encoding="utf-8")
    stats = json.loads((run_copy.parent / "data" / "koalpaca.stats.json").read_text())
    assert (f"| `beomi/KoAlpaca-v1.1a` | the question becomes the Alpaca instruction | {stats['rows_written']} | "
            f"{stats['rows_dropped']} (bad_json 1, wrong_type 1, empty_field 2) | 80% / 96.0% | none declared |") in text
    assert "| `kyujinpy/OpenOrca-KO` | unchanged | 24 | 3 (wrong_type 2, empty_field 1) | none | mit |" in text
    record = yaml.safe_load((out / "axolotl.yml").read_text())
    for key in ("lora_r", "lora_alpha", "lora_dropout", "learning_rate", "num_epochs", "sequence_len"):
        assert f"- {key}: {record[key]}\n" in text
    assert "The dataset files below are byte for byte the ones the run tokenized." in text
    assert f"### Question:\n김치를 오래 보관하려면 어떻게 해야 하나요?\n\n### Instruction:\n{SYSTEM_INSTRUCTION}" in text
    assert "- kobest: 5-shot, 26 test documents; **not comparable: local files (data/eval-sample)**" in text
    assert "| kobest_boolq | acc | 0.7158±0.0120 | 0.7963±0.0108 | 0.8312±0.0100 | " in text
    assert "| behaviour | stopped |" in text and "| haerae | acc |" in text  # every task the demo evaluated

    parsed = ModelCard.load(path).data
    assert parsed.eval_results is None  # sample files are never claimed as KoBEST results on the Hub
    assert parsed.datasets == ["beomi/KoAlpaca-v1.1a", "kyujinpy/OpenOrca-KO", "nlpai-lab/openassistant-guanaco-ko"]
    assert parsed.library_name == "peft" and parsed.base_model is None  # a local base is not a Hub link
    assert parsed.license == "llama3"

    # change one input: the card changes with it
    stats["rows_written"], stats["system_instruction_share"] = 7, 0.5
    (run_copy.parent / "data" / "koalpaca.stats.json").write_text(json.dumps(stats))
    changed = card.render(run_copy)
    assert "| 7 | 4 (bad_json 1, wrong_type 1, empty_field 2) | 80% / 50.0% |" in changed
    # and data rewritten after training is flagged
    (run_copy.parent / "data" / "koalpaca.jsonl").write_text('{"instruction": "x", "input": "", "output": "y"}\n')
    assert "**The dataset files below changed after training**" in card.render(run_copy)


def test_full_kobest_results_become_hub_metadata_of_the_current_adapter(run_copy):
    from huggingface_hub import ModelCard

    out = run_copy.parent / "run"
    path = out / "eval" / "kobest.json"
    results = json.loads(path.read_text())
    results["recipe"]["not_comparable"] = []  # as a run on skt/kobest_v1 from the Hub records it
    path.write_text(json.dumps(results))
    parsed = ModelCard.load(card.write(run_copy)).data
    assert {r.dataset_config: r.metric_value for r in parsed.eval_results} == {
        t.removeprefix("kobest_"): round(v["acc,none"], 4) for t, v in results["results"].items() if t != "kobest"}
    assert {r.dataset_type for r in parsed.eval_results} == {"skt/kobest_v1"}

    (out / "adapter_model.safetensors").write_bytes(b"trained further after the eval")
    text = card.render(run_copy)
    assert "The results in `eval/` belong to an earlier adapter" in text and "model-index" not in text


def test_card_without_eval_says_how_to_run_it(run_copy):
    shutil.rmtree(run_copy.parent / "run" / "eval")
    text = card.render(run_copy)
    assert f"Not evaluated yet: `make eval CONFIG={run_copy}` writes the results here." in text
    assert "model-index" not in text


def test_card_of_an_untrained_run_is_one_line(tmp_path, capsys):
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out")}))
    assert card.main([str(config)]) == 2
    assert "holds no trained run (axolotl.yml missing): make train CONFIG=" in capsys.readouterr().err


# ---- the Hub

def test_push_dry_run_lists_what_goes_up(run_copy, capfd):
    out = run_copy.parent / "run"
    assert publish.main(["push", str(run_copy), "--repo", "me/tiny-aog", "--dry-run"]) == 0
    err = capfd.readouterr().err
    assert "would upload the adapter to https://huggingface.co/me/tiny-aog (public), " in err
    listed = [line.split()[0] for line in err.splitlines() if line.startswith("  ")]
    tb = [str(p.relative_to(out)) for p in sorted((out / "runs").rglob("*")) if p.is_file()]
    assert listed == ["README.md", "adapter_config.json", "adapter_model.safetensors", "axolotl.yml",
                      "generation_config.json", "loss.png", "tokenizer.json", "tokenizer_config.json",
                      *(f"eval/{f}" for f in ("behaviour-answers.jsonl", "behaviour.json", "haerae.json",
                                              "kmmlu_humss.json", "kobest.json", "results.md")), *tb]
    assert "# tiny-aog" in (out / "README.md").read_text()  # the card went with it

    assert publish.main(["push", str(run_copy), "--repo", "me/tiny-aog", "--merged", "--dry-run"]) == 0
    listed = [line.split()[0] for line in capfd.readouterr().err.splitlines() if line.startswith("  ")]
    assert listed[0] == "README.md" and "model.safetensors" in listed and run.MERGE_MARKER in listed
    assert "config.json" in listed and "generation_config.json" in listed
    assert "adapter_model.safetensors" not in listed and {"axolotl.yml", "loss.png"} <= set(listed)
    assert "library_name: transformers" in (out / "merged" / "README.md").read_text()


def test_push_without_a_token_or_network_is_one_line(run_copy, capfd, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert publish.main(["push", str(run_copy), "--repo", "me/tiny-aog"]) == 2
    assert capfd.readouterr().err.splitlines()[-1] == (
        "error: no Hugging Face token: run `.venv/bin/hf auth login` or set HF_TOKEN (DRY_RUN=1 needs none)")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")  # the suite runs with HF_HUB_OFFLINE=1
    assert publish.main(["push", str(run_copy), "--repo", "me/tiny-aog"]) == 2
    last = capfd.readouterr().err.splitlines()[-1]
    assert last.startswith("error: upload to me/tiny-aog failed: ") and "offline mode is enabled" in last
    for bad in ("no-slash", "me/bad name", "a/b/c"):
        assert publish.main(["push", str(run_copy), "--repo", bad]) == 2
        assert "HF_REPO must be <user or org>/<name>" in capfd.readouterr().err
    # online mode, but nothing listens at the endpoint: still one line
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_x"}
    r = subprocess.run([sys.executable, "-m", "publishing.publish", "push", str(run_copy), "--repo", "me/tiny-aog"],
                       cwd=run_copy.parent, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("error: upload to me/tiny-aog failed: ")


# ---- Ollama

def test_modelfile_uses_the_cards_prompt_and_stops_at_end_of_text(run_copy):
    from transformers import AutoTokenizer

    path = publish.write_modelfile(run_copy)
    text = path.read_text(encoding="utf-8")
    eos = AutoTokenizer.from_pretrained(path.parent).eos_token
    assert f'PARAMETER stop "{eos}"' in text and eos == "<|end_of_text|>"
    assert f'SYSTEM """{SYSTEM_INSTRUCTION}"""' in text and "FROM .\n" in text
    # One user message: the template's user branch with $last true is chat's prompt.
    template = publish.ollama_template()
    user = template.split('{{- if eq $m.Role "user" }}')[1].split("{{- else if")[0]
    last = user.replace("{{- if $last }}", "").split("{{ else }}")[0]
    question = "김치를 오래 보관하려면 어떻게 해야 하나요?"
    assert last.replace("{{ $m.Content }}", question).replace("{{ $.System }}", SYSTEM_INSTRUCTION) \
        == render(question)


def test_modelfile_needs_a_finished_merge(run_copy, capsys):
    shutil.rmtree(run_copy.parent / "run" / "merged")
    assert publish.main(["ollama", str(run_copy)]) == 2
    assert "no merged model of the current adapter" in capsys.readouterr().err


def test_stale_merge_is_not_published(run_copy):
    (run_copy.parent / "run" / "adapter_model.safetensors").write_bytes(b"a different adapter")
    with pytest.raises(UserError, match="no merged model of the current adapter"):
        card.write(run_copy, merged=True)
