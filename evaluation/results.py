"""Eval results on disk, and the tables and chart built from them.

Each `make eval` task (``kobest``, ``kmmlu``, ``haerae``, a harness subtask, ``behaviour``) is written to
``<run>/eval/<task>.json``: the harness's result dict without per-sample logs, plus ``recipe`` (the
sha256 of the adapter it scored, and what makes it comparable). Rows shown per task: the task itself
and its direct subtasks (KMMLU's four categories, KoBEST's five tasks).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from common.files import write_atomic
from evaluation import behaviour

# The card's table: 5-shot KoBEST accuracy and stderr per task, by model, in the card's column order.
CARD = {
    "werty1248/Llama-3-Ko-8B-OpenOrca": {"boolq": (0.7158, 0.0120), "copa": (0.7620, 0.0135),
                                         "hellaswag": (0.4740, 0.0224), "sentineg": (0.9471, 0.0112),
                                         "wic": (0.6079, 0.0138)},
    "beomi/Llama-3-Open-Ko-8B": {"boolq": (0.7963, 0.0108), "copa": (0.8110, 0.0124),
                                 "hellaswag": (0.4780, 0.0224), "sentineg": (0.9622, 0.0096),
                                 "wic": (0.5778, 0.0139)},
    "werty1248/Llama-3-Ko-8B-Instruct-AOG": {"boolq": (0.8312, 0.0100), "copa": (0.8120, 0.0124),
                                             "hellaswag": (0.4700, 0.0223), "sentineg": (0.9647, 0.0093),
                                             "wic": (0.5937, 0.0138)},
}
REFERENCE = "werty1248/Llama-3-Ko-8B-Instruct-AOG"
ORDER = ("kobest", "kmmlu", "haerae", behaviour.NAME)  # table order; other tasks follow, by name
MISSING = "missing"


def write(out_dir: Path, task: str, results: dict, recipe: dict) -> Path:
    raw = {k: v for k, v in results.items() if k != "samples"}
    raw["recipe"] = recipe
    path = out_dir / f"{task}.json"
    write_atomic(path, json.dumps(raw, ensure_ascii=False, indent=2, default=str) + "\n")
    return path


def read(eval_dir: Path) -> dict[str, dict]:
    """task -> results of every task evaluated in ``eval_dir``, in table order."""
    found = {}
    for path in eval_dir.glob("*.json") if eval_dir.is_dir() else ():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and "recipe" in data and path.stem in data.get("results", {}):
            found[path.stem] = data
    return dict(sorted(found.items(), key=lambda kv: (_rank(kv[0]), kv[0])))


def _rank(task: str) -> int:
    return next((i for i, prefix in enumerate(ORDER) if task.split("_")[0] == prefix), len(ORDER))


def rows(task: str, results: dict) -> list[tuple[str, str, float, float | None]]:
    """(row name, metric, value, stderr) for the task and its direct subtasks."""
    names = [task, *results.get("group_subtasks", {}).get(task, [])]
    metrics = behaviour.METRICS if task == behaviour.NAME else ("acc",)
    out = []
    for name in names:
        r = results["results"].get(name, {})
        for m in metrics:
            if f"{m},none" in r:
                se = r.get(f"{m}_stderr,none")
                out.append((name, m, float(r[f"{m},none"]), float(se) if isinstance(se, (int, float)) else None))
    return out


def _cell(value: float, se: float | None, metric: str) -> str:
    digits = 1 if metric == "chars" else 4
    return f"{value:.{digits}f}" + (f"±{se:.{digits}f}" if se is not None else "")


def _card(name: str) -> list[tuple[float, float] | None]:
    t = name.removeprefix("kobest_")
    return [CARD[m].get(t) if name.startswith("kobest_") else None for m in CARD]


def _stale(res: dict, digest: str | None) -> bool:
    scored = res.get("recipe", {}).get("adapter_sha256")
    return bool(digest and scored and scored != digest)


def _keyed(runs: dict[str, dict[str, dict] | None], digests: dict[str, str | None]
           ) -> dict[tuple[str, str], dict[str, tuple[float, float | None, bool]]]:
    """(row, metric) -> run -> (value, stderr, scored an earlier adapter); a row that two results
    hold (``kobest_copa`` run alone and within ``kobest``) takes the current adapter's."""
    keyed: dict[tuple[str, str], dict[str, tuple[float, float | None, bool]]] = {}
    for label, tasks in runs.items():
        for task, res in sorted((tasks or {}).items(), key=lambda kv: _stale(kv[1], digests.get(label))):
            stale = _stale(res, digests.get(label))
            for name, metric, value, se in rows(task, res):
                keyed.setdefault((name, metric), {}).setdefault(label, (value, se, stale))
    return keyed


def table(runs: dict[str, dict[str, dict] | None], delta: bool = False, digests: dict[str, str | None] | None = None) -> str:
    """One markdown table: the card's published columns, then one column per run (None: no
    results, listed as missing), and with ``delta`` the difference of the single run to AOG.
    ``digests`` (run -> sha256 of its adapter now) marks results of an earlier adapter with †."""
    keyed = _keyed(runs, digests or {})
    cols = list(CARD) + list(runs) + ([f"Δ vs {REFERENCE.split('/')[1]}"] if delta else [])
    lines = ["| Task | Metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for (name, metric), by_run in keyed.items():
        card = _card(name) if metric == "acc" else [None] * len(CARD)
        cells = [_cell(*c, metric) if c else "" for c in card]
        cells += [_cell(*by_run[r][:2], metric) + "†" * by_run[r][2] if r in by_run
                  else (MISSING if runs[r] is None else "—") for r in runs]
        if delta:
            ours = next(iter(by_run.values()))
            cells.append(f"{ours[0] - card[-1][0]:+.4f}" if card[-1] else "")
        lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    if any(v[2] for by_run in keyed.values() for v in by_run.values()):
        lines += ["", "† scored an earlier adapter than the run's current one: rerun `make eval` for it."]
    return "\n".join(lines) + "\n"


def notes(tasks: dict[str, dict], adapter_sha256: str | None = None) -> list[str]:
    """One line per task: shots and documents, and whatever makes it not comparable to the
    published protocol (local files, a limit, another token limit, an earlier adapter)."""
    lines = []
    for task, res in tasks.items():
        recipe, n = res.get("recipe", {}), res.get("n-samples", {})
        docs = sum(v.get("effective", 0) for v in n.values())
        shots = sorted(set(res.get("n-shot", {}).values()))
        what = f"{docs} prompts, greedy, {res['config'].get('max_new_tokens')} new tokens at most" \
            if task == behaviour.NAME else f"{'/'.join(map(str, shots))}-shot, {docs} test documents"
        flags = list(recipe.get("not_comparable", [])) + ["scored an earlier adapter"] * _stale(res, adapter_sha256)
        lines.append(f"- {task}: {what}" + (f"; **not comparable: {', '.join(flags)}**" if flags else ""))
    return lines


def chart(runs: dict[str, dict[str, dict] | None], path: Path, digests: dict[str, str | None] | None = None) -> Path:
    """Bars of every score in [0, 1] (accuracies, behaviour shares), one colour per column of the
    table (the card's models where they publish a number), with stderr whiskers. Answer length is
    in characters, another scale, so it stays in the table only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, tuple[float, float | None]]] = {}
    for (name, metric), by_run in _keyed(runs, digests or {}).items():
        if metric != "chars":
            card = zip(CARD, _card(name)) if metric == "acc" else ()
            series[name if metric == "acc" else f"{name} {metric}"] = {
                **{model: c for model, c in card if c}, **{r: v[:2] for r, v in by_run.items()}}
    columns = [c for c in [*CARD, *runs] if any(c in v for v in series.values())]
    keys = list(series)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(keys) * max(1, len(columns)) / 2))
    height = 0.8 / max(1, len(columns))
    for j, col in enumerate(columns):
        ys = [i + (j - (len(columns) - 1) / 2) * height for i in range(len(keys))]
        vals = [series[k].get(col, (math.nan, None)) for k in keys]  # no result: no bar
        ax.barh(ys, [v for v, _ in vals], height, xerr=[se or 0 for _, se in vals], label=col, capsize=2)
    ax.set_yticks(range(len(keys)), keys, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy / share (± stderr)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
