"""After training: the loss curve, the Hub upload and the Ollama Modelfile of a run, all from CONFIG.

    python -m publishing.publish loss CONFIG        <output_dir>/loss.png from the newest checkpoint's log
    python -m publishing.publish push CONFIG --repo USER/NAME [--merged] [--private] [--dry-run]
    python -m publishing.publish ollama CONFIG      <output_dir>/merged/Modelfile in the card's prompt format
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from common.errors import UserError, run_command
from common.files import write_atomic
from preprocess.prompts import INSTRUCTION, QUESTION, RESPONSE, SYSTEM_INSTRUCTION
from publishing import card
from training.config import RESOLVED_NAME, load
from training.run import MERGED, checkpoints, merged_model, output_dir, say

# What never goes to the Hub: the training log, checkpoints (optimizer state) and a merge-only
# config; beside an adapter also the base model's config.json that Axolotl copies there (it would
# make the Hub take the adapter repo for a full model). A merged model keeps its config.json.
NOT_UPLOADED = {"debug.log", "merge.yml"}


# ---- the loss curve

def training_log(out: Path) -> list[dict]:
    """The Trainer's log_history from the newest complete checkpoint (a partial run has one too)."""
    found = checkpoints(out)
    log = [e for e in json.loads((found[-1] / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
           if "loss" in e] if found else []
    if not log:
        raise UserError(f"{out}/ has no checkpoint with a training log yet")
    return log


def plot_loss(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = training_log(out)
    steps = [e["step"] for e in log]
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    loss_ax.plot(steps, [e["loss"] for e in log], marker="." if len(log) < 50 else None)
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title(f"{out.name}: {len(log)} logged steps, last step {steps[-1]}")
    lr_ax.plot(steps, [e.get("learning_rate", float("nan")) for e in log], color="tab:orange")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("optimizer step")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    path = out / "loss.png"
    write_atomic(path, png.getvalue())
    say(f"wrote {path} ({len(log)} logged steps, last loss {log[-1]['loss']:.4f})")
    return path


# ---- the Hub

def upload_plan(out: Path, merged: bool) -> list[tuple[str, Path]]:
    """(path in the repo, local file) for everything that goes up, card first."""
    weights = out / MERGED if merged else out
    skip = NOT_UPLOADED | {"README.md"} | (set() if merged else {"config.json"})
    files = [p for p in sorted(weights.iterdir()) if p.is_file() and p.name not in skip]
    if merged:
        files += [out / n for n in (RESOLVED_NAME, "loss.png") if (out / n).is_file()]
    plan = [("README.md", weights / "README.md")] + [(p.name, p) for p in files]
    extras = sorted((out / "eval").glob("*")) + sorted((out / "runs").rglob("*"))  # KoBEST results, TensorBoard
    return plan + [(str(p.relative_to(out)), p) for p in extras if p.is_file()]


def push(config: Path, repo: str, merged: bool = False, private: bool = False, dry_run: bool = False) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        repo = ""
    if repo.count("/") != 1:
        raise UserError("HF_REPO must be <user or org>/<name> (letters, digits, '-', '_', '.'), "
                          f"got {repo or 'something else'!r}")
    card.write(config, merged, name=repo.split("/")[-1])
    plan = upload_plan(output_dir(load(config), config), merged)
    what = "merged model" if merged else "adapter"
    say(f"{'would upload' if dry_run else 'uploading'} the {what} to https://huggingface.co/{repo}"
        f" ({'private' if private else 'public'}), {len(plan)} files:")
    for name, path in plan:
        say(f"  {name}  ({path.stat().st_size:,} bytes)")
    if dry_run:
        return
    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    if get_token() is None:
        raise UserError("no Hugging Face token: run `.venv/bin/hf auth login` or set HF_TOKEN (DRY_RUN=1 needs none)")
    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        # One commit with exactly the files listed above (upload_folder takes one folder; the
        # merged model's card, record and results live in two).
        commit = api.create_commit(repo, [CommitOperationAdd(name, str(path)) for name, path in plan],
                                   commit_message=f"Upload the {what} trained with {config}")
    except (httpx.HTTPError, OSError, ValueError, RuntimeError) as e:  # HfHubHTTPError, offline mode, xet
        raise UserError(f"upload to {repo} failed: {(str(e) or type(e).__name__).splitlines()[0]} "
                          "(check the network, HF_HUB_OFFLINE and the token's write access)") from None
    say(f"uploaded: {commit.commit_url}")


# ---- Ollama

def ollama_template() -> str:
    """The card's prompt as an Ollama (Go) template over the conversation, built from the same
    markers as ``preprocess.prompts.card_prompt``: earlier turns as ``### Question:`` /
    ``### Response:`` lines, then the last question, the system text and ``### Response:``."""
    return ("{{- range $i, $m := .Messages }}"
            "{{- $last := eq (len (slice $.Messages $i)) 1 }}"
            f'{{{{- if eq $m.Role "user" }}}}{QUESTION}\n{{{{ $m.Content }}}}'
            f"{{{{- if $last }}}}\n\n{INSTRUCTION}\n{{{{ $.System }}}}\n\n{RESPONSE}\n{{{{ else }}}}\n{{{{ end }}}}"
            f'{{{{- else if eq $m.Role "assistant" }}}}{RESPONSE}\n{{{{ $m.Content }}}}{{{{ "\\n" }}}}'
            "{{- end }}{{- end }}")  # the newline as an action's output: a trim marker cannot eat it


def modelfile(eos: str) -> str:
    return "\n".join([
        "# Ollama model in the card's prompt format, written by `make ollama`. From this folder:",
        "#   ollama create llama3-ko-aog -f Modelfile && ollama run llama3-ko-aog",
        "FROM .",
        f'TEMPLATE """{ollama_template()}"""',
        f'SYSTEM """{SYSTEM_INSTRUCTION}"""',
        f'PARAMETER stop "{eos}"',
        "PARAMETER temperature 0",  # greedy, as `make chat` by default
        ""])


def write_modelfile(config: Path) -> Path:
    from transformers import AutoTokenizer

    merged = output_dir(load(config), config) / MERGED
    if not merged_model(merged.parent):
        raise UserError(f"no merged model of the current adapter in {merged}/: Ollama imports a full model, "
                          f"so run make merge CONFIG={config} first")
    path = merged / "Modelfile"
    write_atomic(path, modelfile(AutoTokenizer.from_pretrained(merged).eos_token))
    say(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("loss").add_argument("config", type=Path)
    sub.add_parser("ollama").add_argument("config", type=Path)
    up = sub.add_parser("push")
    up.add_argument("config", type=Path)
    up.add_argument("--repo", required=True, help="<user or org>/<name> on the Hub")
    up.add_argument("--merged", action="store_true", help="upload the merged model instead of the adapter")
    up.add_argument("--private", action="store_true")
    up.add_argument("--dry-run", action="store_true", help="list what would go up; needs no token")
    args = p.parse_args(argv)
    if args.cmd == "loss":
        return run_command(lambda: plot_loss(output_dir(load(args.config), args.config)))
    if args.cmd == "ollama":
        return run_command(lambda: write_modelfile(args.config))
    return run_command(lambda: push(args.config, args.repo, args.merged, args.private, args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
