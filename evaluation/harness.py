"""`make eval`: Korean benchmarks through lm-evaluation-harness, and the behaviour task, on one model.

    python -m evaluation.harness [--config CONFIG] [--model M] [--adapter DIR] [--tasks kobest,kmmlu,haerae,behaviour]
                                 [--data-dir DIR] [--out DIR] [--limit N] [--batch-size auto|N]

Tasks are the harness's own definitions (prompts, choices, metrics), unchanged: ``kobest``, ``kmmlu``,
``haerae``, or any of their groups or subtasks (``kmmlu_humss``, ``kobest_boolq``), plus
``behaviour`` (``evaluation.behaviour``). Shots per set are in ``SHOTS``. By default the data comes
from the Hub; ``--data-dir DIR`` overrides only the data files with ``DIR/<set>/<config>/<split>.jsonl``
in the Hub's columns (``data/eval-sample/`` shows the layout). The model is loaded once by chat's
loader (a LoRA adapter stays unmerged) and shared by all tasks. Without ``--model``, the model is the
run of ``--config`` (its merged model, else base + adapter) and results go to ``<output_dir>/eval/``:
``<task>.json`` per task (see ``evaluation.results``) and ``results.md``, the table of every task
evaluated there, beside the card's published KoBEST columns.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import sys
from pathlib import Path

from common.errors import UserError, run_command
from common.files import missing_local, sha256_file, write_atomic
from evaluation import behaviour, results
from training.run import adapter_digest, model_to_use

# Shots per benchmark set. kobest: the card's protocol. kmmlu: the paper's 5-shot (the Hub's dev split
# holds exactly 5 questions per subject for it). haerae: the harness's default, 0 (its YAML sets none,
# and the paper scores open models by log-likelihood over the options without stating shots).
SHOTS = {"kobest": 5, "kmmlu": 5, "haerae": 0}
DEFAULT_TASKS = "kobest"
HUB_HINT = {
    "haerae": "HAERAE-HUB/HAE_RAE_BENCH is gated (accept its terms, then `huggingface-cli login`), and its "
              "v1.1 loads through a dataset script, which datasets 4 no longer runs; if that is the cause, put "
              "its rows in DIR/haerae/<config>/test.jsonl and pass EVAL_DATA=DIR",
}


@functools.cache
def task_manager():
    """The harness's task index (about 9 s to build: it reads every task YAML it ships)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def children(tm, name: str) -> list[str]:
    """The direct members of a harness group or tag; [] for a task."""
    entry = tm.task_index[name]
    if entry["type"] == "tag":
        return list(entry["task"])
    if entry["type"] == "group":
        from lm_eval import utils

        return [t for t in utils.load_yaml_config(entry["yaml_path"], mode="full")["task"] if isinstance(t, str)]
    return []


def set_of(tm, name: str) -> str | None:
    """The benchmark set whose tree holds ``name`` (a set itself, one of its groups, or a task)."""
    for top in SHOTS:
        stack = [top]
        while stack:
            node = stack.pop()
            if node == name:
                return top
            stack += children(tm, node)
    return None


def localize(tm, name: str, root: Path, shots: int, missing: list[str]) -> dict:
    """``name``'s harness definition with each task's data files pointed at ``root/<config>/``; the
    groups (and their averages) are rebuilt as the harness defines them. Absent files go to ``missing``."""
    from lm_eval import utils
    from lm_eval.tasks import GROUP_ONLY_KEYS

    entry = tm.task_index[name]
    if entry["type"] != "task":
        cfg = utils.load_yaml_config(entry["yaml_path"], mode="full") if entry["type"] == "group" else {"group": name}
        members = [localize(tm, t, root, shots, missing) for t in children(tm, name)]
        if entry["type"] == "tag":  # a tag only lists tasks; its parent group averages them
            return {"tag": members}
        flat = [m for x in members for m in x.get("tag", [x])]
        return {**{k: v for k, v in cfg.items() if k in GROUP_ONLY_KEYS}, "task": flat}
    cfg = utils.load_yaml_config(entry["yaml_path"], mode="full")
    splits = {cfg["test_split"]} | ({cfg.get("fewshot_split") or cfg.get("training_split")} if shots else set())
    files = {s: (root / cfg["dataset_name"] / f"{s}.jsonl").resolve() for s in sorted(splits - {None})}
    missing += [str(f) for f in files.values() if not f.is_file()]
    return {"task": name, "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {s: str(f) for s, f in files.items()}}}


def plan(tasks: list[str], data_dir: Path | None, tm=None) -> tuple[object | None, dict[str, tuple[str, object]]]:
    """(task manager, task -> (set, what simple_evaluate takes)), every name and file checked first."""
    bench = [t for t in tasks if t != behaviour.NAME]
    if not bench:
        return None, {}
    tm = tm or task_manager()
    specs, missing = {}, []
    for t in bench:
        top = set_of(tm, t) if tm.task_index.get(t, {}).get("type") in ("group", "task") else None
        if top is None:
            raise UserError(f"unknown task {t!r}: use {', '.join([*SHOTS, behaviour.NAME])}, or a group or task "
                            "of those sets as the harness names it (e.g. kmmlu_humss, kobest_boolq)")
        specs[t] = (top, t if data_dir is None else localize(tm, t, data_dir / top, SHOTS[top], missing))
    if missing:
        raise UserError(f"{len(missing)} local eval file(s) not found, e.g. {missing[0]} (expected "
                        f"{data_dir}/<set>/<config>/<split>.jsonl in the Hub's columns; data/eval-sample/ shows "
                        "the layout)")
    return tm, specs


def load_data(tm, specs: dict[str, tuple[str, object]], data_dir: Path | None) -> None:
    """Every task's data loaded (and cached) before the model is: a failure costs seconds, not a run."""
    from lm_eval.tasks import get_task_dict

    for t, (top, spec) in specs.items():
        try:
            get_task_dict([copy.deepcopy(spec)], tm)  # the harness pops keys from the dicts it is given
        except Exception as e:  # noqa: BLE001 (Hub unreachable or gated, a script dataset, a malformed file)
            hint = HUB_HINT.get(top, f"without Hub access, pass local files: EVAL_DATA=DIR with "
                                     f"DIR/{top}/<config>/<split>.jsonl") if data_dir is None else \
                f"check the files under {data_dir / top}/"
            why = "; ".join(f"{type(x).__name__}: {str(x).strip().splitlines()[0] if str(x).strip() else ''}"
                            for x in (e, e.__cause__ or e.__context__) if x is not None)
            raise UserError(f"{t}: cannot load its data ({why}). {hint[0].upper() + hint[1:]}") from None


def not_comparable(limit: int | None, data_dir: Path | None, unit: str = "documents per task") -> list[str]:
    return ([f"limited to {limit} {unit}"] if limit else []) + ([f"local files ({data_dir})"] if data_dir else [])


def evaluate(model: str, adapter: str | None = None, tasks: list[str] = (DEFAULT_TASKS,), data_dir: Path | None = None,
             limit: int | None = None, batch_size: int | str | None = None, log_samples: bool = False,
             max_new_tokens: int = behaviour.MAX_NEW_TOKENS, done=None) -> dict[str, dict]:
    """task -> results (lm-eval's result dict; behaviour's in the same layout, with its answers under
    ``samples``), for ``model`` (+ ``adapter``), loaded once. ``done(task, results)`` is called as each
    task finishes, so a failure later loses nothing before it."""
    for name in filter(None, (model, adapter)):
        if missing_local(name):
            raise UserError(f"{name}: folder not found")
    if adapter and Path(adapter).is_dir() and not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: no adapter_config.json, so not a LoRA adapter folder (did training finish?)")
    tm, specs = plan(list(tasks), data_dir)
    load_data(tm, specs, data_dir)
    prompts = behaviour.load_prompts()[:limit] if behaviour.NAME in tasks else []
    import torch

    from evaluation.chat import Chat

    cuda = torch.cuda.is_available()
    chat = Chat(model, adapter, max_new_tokens=max_new_tokens)
    out = {}
    if specs:
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=chat.model, tokenizer=chat.tok, batch_size=batch_size or ("auto" if cuda else 8))
        for t, (top, spec) in specs.items():
            lm.batch_sizes.clear()  # "auto" sizes are cached on the model: find them again for this task
            out[t] = lm_eval.simple_evaluate(model=lm, tasks=[spec], num_fewshot=SHOTS[top], limit=limit,
                                             task_manager=tm, log_samples=log_samples)
            done and done(t, out[t])
    if prompts:
        res, answers = behaviour.run(chat, prompts, batch_size=16 if cuda else 8)
        out[behaviour.NAME] = {**res, "samples": answers}
        done and done(behaviour.NAME, out[behaviour.NAME])
    return {t: out[t] for t in tasks}


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def batch_size(text: str) -> int | str:
    if re.fullmatch(r"auto(:[1-9][0-9]*)?", text):
        return text
    return positive(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="evaluate the run this Axolotl config trains")
    p.add_argument("--model", help="model folder or Hub id (base model when --adapter is given); overrides --config")
    p.add_argument("--adapter", help="LoRA adapter folder, evaluated without merging")
    p.add_argument("--tasks", default=DEFAULT_TASKS,
                   help=f"comma-separated: {', '.join(SHOTS)}, their groups or tasks, {behaviour.NAME} "
                        f"(default {DEFAULT_TASKS}, the card's)")
    p.add_argument("--data-dir", type=Path, help="local data DIR/<set>/<config>/<split>.jsonl (default: the Hub)")
    p.add_argument("--out", type=Path, help="output folder (default: <output_dir>/eval, or outputs/eval/<model>)")
    p.add_argument("--limit", type=positive, help="documents per task, prompts for behaviour (smoke runs; not comparable)")
    p.add_argument("--batch-size", type=batch_size, help="lm-eval batch size: N, auto or auto:N (default: auto on CUDA, "
                                                         "8 on CPU)")
    p.add_argument("--max-new-tokens", type=positive, default=behaviour.MAX_NEW_TOKENS, help="behaviour's token limit")
    args = p.parse_args(argv)

    def run():
        tasks = list(dict.fromkeys(t.strip() for t in args.tasks.split(",") if t.strip()))
        if not tasks:
            raise UserError("--tasks is empty")
        model, adapter, run_dir = model_to_use(args.config, args.model, args.adapter)
        label = adapter or model
        out = args.out or (run_dir / "eval" if run_dir else Path("outputs/eval") / label.strip("/").replace("/", "__"))
        digest = adapter_digest(model, adapter)

        def save(task: str, res: dict) -> None:
            flags = not_comparable(args.limit, args.data_dir, "documents per task") if task != behaviour.NAME \
                else not_comparable(args.limit, None, "prompts")
            if task == behaviour.NAME:
                flags += [f"token limit {args.max_new_tokens}"] if args.max_new_tokens != behaviour.MAX_NEW_TOKENS else []
                write_atomic(out / "behaviour-answers.jsonl", "".join(
                    json.dumps(a, ensure_ascii=False) + "\n" for a in res["samples"]))
            recipe = {"model": model, "adapter": adapter, "adapter_sha256": digest, "not_comparable": flags,
                      **({"prompts_sha256": sha256_file(behaviour.PROMPTS)} if task == behaviour.NAME else {})}
            print(f"wrote {results.write(out, task, res, recipe)}", file=sys.stderr)
            summary()

        def summary() -> str:  # the table of every task in `out`, rewritten as each task ends
            everything = results.read(out)
            text = results.table({label: everything}, delta=True, digests={label: digest}) + "\n" + \
                "\n".join(results.notes(everything, digest)) + "\n"
            write_atomic(out / "results.md", text)
            return text

        evaluate(model, adapter, tasks, args.data_dir, args.limit, args.batch_size,
                 max_new_tokens=args.max_new_tokens, done=save)
        print(summary())
        print(f"wrote {out / 'results.md'}, the table of every task in {out}/")

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
