"""Which chart a logged metric goes on, decided by its name: a new metric needs no UI change.

The Runs page draws one line chart per entry of ``CHARTS``; run comparison overlays the loss chart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from engine import runfiles as rf

CHARTS = {
    "loss": "Loss (training, validation)",
    "lr": "Learning rate",
    "throughput": "Throughput",
    "other": "Other metrics (validation, …)",
    "reward": "Reward (total and per reward function, mean)",
    "reward_std": "Reward spread (standard deviation)",
    "completion": "Completion length (tokens)",
    "policy": "Policy: KL to the reference, clipped and truncated shares",
}
TRAIN_LOSS = "loss"  # the per-step training loss
STEP_TIME = "step_time"  # measured seconds per step (``EventsCallback``): the ETA's pace
ONE_SERIES = {"throughput"}  # tokens/s and samples/s differ by orders of magnitude: only the first rule's is drawn

# (name pattern, chart): the first matching rule wins; None = not charted (end-of-run summaries, evaluation
# speed, bookkeeping). Within a chart, series follow the order of their rules, then their names.
RULES: tuple[tuple[str, str | None], ...] = (
    ("loss", "loss"),
    ("eval_loss", "loss"),
    ("learning_rate", "lr"),
    ("tokens_per_second", "throughput"),
    ("samples_per_second", "throughput"),
    ("train_*_per_second", None),
    ("eval_*_per_second", None),
    ("*_per_second", "throughput"),
    ("*_runtime", None),
    ("train_loss", None),
    ("grad_norm", None),
    ("step_time", None),  # seconds per step, measured between logs: it gives the ETA
    ("num_input_tokens_seen", None),
    ("total_flos", None),
    ("num_train_epochs", None),
    ("world_size", None),  # processes of the run (the start event): not a curve
    ("global_step", None),
    # online RL (GRPO, RLOO; KTO's kl): rewards per function, completions, how far the policy moved
    ("reward", "reward"),
    ("eval_reward", "reward"),
    ("rewards/*/mean", "reward"),
    ("eval_rewards/*/mean", "reward"),
    ("reward_std", "reward_std"),
    ("eval_reward_std", "reward_std"),
    ("rewards/*/std", "reward_std"),
    ("eval_rewards/*/std", "reward_std"),
    ("completions/mean_length", "completion"),
    ("completions/mean_terminated_length", "completion"),
    ("completions/clipped_ratio", "policy"),
    ("completions/*", None),
    ("eval_completions/*", None),
    ("kl", "policy"),
    ("clip_ratio/region_mean", "policy"),
    ("clip_ratio/*", None),
    ("*", "other"),  # eval_accuracy, eval_perplexity, …: the validation metrics
)


def _rule(name: str) -> int:
    return next(i for i, (pattern, _) in enumerate(RULES) if fnmatchcase(name, pattern))


def chart_of(name: str) -> str | None:
    """The chart ``name`` is drawn on (a key of ``CHARTS``), or None."""
    return RULES[_rule(name)][1]


def group(names: Iterable[str]) -> dict[str, list[str]]:
    """The metric names each chart draws (every chart a key, maybe with an empty list)."""
    out: dict[str, list[str]] = {chart: [] for chart in CHARTS}
    for name in sorted(set(names), key=lambda n: (_rule(n), n)):
        chart = chart_of(name)
        if chart is not None and not (chart in ONE_SERIES and out[chart]):
            out[chart].append(name)
    return out


# Readable series names (the legend and the chart title say these, not the logged key).
LABELS = {
    "loss": "training loss",
    "eval_loss": "validation loss",
    "learning_rate": "learning rate",
    "tokens_per_second": "tokens/s",
    "samples_per_second": "samples/s",
    "reward": "total reward",
    "reward_std": "total reward",
    "kl": "KL",
    "clip_ratio/region_mean": "clipped share",
    "completions/clipped_ratio": "truncated share",
    "completions/mean_length": "mean length",
    "completions/mean_terminated_length": "mean length of finished ones",
}
# Colours given by the series' place in its chart, sent with every update: a series that appears mid-run
# (validation loss) gets its colour at once; the chart title names each colour, so no legend is needed.
PALETTE = (
    ("blue", "#1f77b4"),
    ("orange", "#ff7f0e"),
    ("green", "#2ca02c"),
    ("red", "#d62728"),
    ("purple", "#9467bd"),
    ("brown", "#8c564b"),
    ("pink", "#e377c2"),
    ("grey", "#7f7f7f"),
    ("olive", "#bcbd22"),
    ("teal", "#17becf"),
)


def label(name: str) -> str:
    """The series name a person reads: `eval_loss` -> `validation loss`, `eval_f1` -> `validation f1`."""
    if name in LABELS:
        return LABELS[name]
    if name.startswith(("rewards/", "eval_rewards/")) and name.endswith(("/mean", "/std")):  # a reward function's
        return label(name.rsplit("/", 1)[0].replace("rewards/", "", 1) + "_reward")
    return ("validation " + name[len("eval_") :] if name.startswith("eval_") else name).replace("_", " ")


def colours(series: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Series -> (colour word, hex), in order, cycling through ``PALETTE``."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(dict.fromkeys(series))}


def legend(title: str, series: Iterable[str]) -> str:
    """A chart title that names each series' colour: `Loss — training loss (blue), validation loss (orange)`."""
    named = [f"{s} ({word})" for s, (word, _) in colours(series).items()]
    return f"{title} — {', '.join(named)}" if named else title


# --- result views: what a finished run shows besides its curves, decided by the files it wrote ------

RESULTS = {
    "confusion": "Confusion matrix (rows: true class, columns: predicted)",
    "per_class": "Per class: precision, recall, F1",
    "leaderboard": "Leaderboard (models tried, best first)",
    "importance": "Feature importance (the 15 most important features)",
    "scatter": "Predicted vs true (validation rows; on the diagonal = right)",
    "per_entity": "Per entity type: precision, recall, F1 (validation, seqeval)",
    "per_class_ap": "Average precision per class (validation; AP = COCO AP@[.5:.95])",
    "samples": "Sample generations at the latest evaluation (greedy, validation prompts)",
    "rollouts": "Rollouts at the latest logging step (sampled prompts, each completion and its rewards)",
}
IMPORTANCE_TOP = 15  # bars in the importance view (30 overlapping names were unreadable)
# result views shown as one plain table each, laid out alike by the UI: a new one needs no UI change
TABLE_VIEWS = ("per_entity", "per_class_ap", "samples", "rollouts")
# (file path in the run folder, result view): a task gets a view by writing the file, no UI change.
RESULT_FILES: tuple[tuple[str, str], ...] = (
    ("confusion_matrix.json", "confusion"),  # {"labels": [...], "matrix": [[...]]}; per_class is derived from it
    ("model/leaderboard.csv", "leaderboard"),
    ("model/feature_importance.csv", "importance"),  # columns feature, importance
    ("predictions.csv", "scatter"),  # columns true, predicted (regression)
    ("per_entity.json", "per_entity"),  # {entity: {"precision", "recall", "f1", "support"}}
    ("per_class_ap.json", "per_class_ap"),  # {class: AP} or {class: {"AP": .., "AP50": ..}}; -1: not in validation
    ("samples.jsonl", "samples"),  # one line per generation: {"step", "prompt", "generated", "reference"}
    ("rollouts.jsonl", "rollouts"),  # one line per completion: {"step", "prompt", "completion", "rewards": {..}}
)
SAMPLES_FILE = "samples.jsonl"
ROLLOUTS_FILE = "rollouts.jsonl"


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half of it (rank 0 only: every
    process of a multi-process run computes the same metrics)."""
    if not rf.is_main_process():
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_confusion(
    run_dir: str | Path, true_ids: Iterable[int], predicted_ids: Iterable[int], names: list[str]
) -> None:
    """Write the ``confusion`` result view's file (rows: true class, columns: predicted), replacing the last one:
    a classification task calls this from its metrics so the run page shows the matrix and per-class scores."""
    matrix = [[0] * len(names) for _ in names]
    for t, p in zip(true_ids, predicted_ids, strict=True):
        if 0 <= int(t) < len(names) and 0 <= int(p) < len(names):
            matrix[int(t)][int(p)] += 1
    _replace(Path(run_dir) / RESULT_FILES[0][0], json.dumps({"labels": [str(n) for n in names], "matrix": matrix}))


def write_predictions(
    run_dir: str | Path, true: Iterable[float], predicted: Iterable[float], limit: int = 2000
) -> None:
    """Write the ``scatter`` result view's file (true, predicted; the first ``limit`` rows), replacing the last one:
    a regression task calls this from its metrics so the run page shows predicted against true values."""
    rows = [f"{float(t)!r},{float(p)!r}" for t, p in zip(true, predicted, strict=True)][:limit]
    _replace(Path(run_dir) / "predictions.csv", "true,predicted\n" + "".join(r + "\n" for r in rows))


def write_per_entity(run_dir: str | Path, scores: dict[str, dict[str, float]]) -> None:
    """Write the ``per_entity`` result view's file ({entity: {precision, recall, f1, support}}), replacing the last
    one: a tagging task calls this from its metrics so the run page shows each entity type's scores."""
    _replace(Path(run_dir) / "per_entity.json", json.dumps(scores))


def append_samples(run_dir: str | Path, step: int, samples: Iterable[dict[str, str]]) -> None:
    """Add one evaluation's generations ({prompt, generated, reference}) to the ``samples`` view's file, one
    JSON line each with its step; the run page shows those of the latest step."""
    if not rf.is_main_process():
        return
    lines = "".join(json.dumps({"step": int(step), **s}, ensure_ascii=False) + "\n" for s in samples)
    with open(Path(run_dir) / SAMPLES_FILE, "a", encoding="utf-8") as f:
        f.write(lines)


def append_rollouts(run_dir: str | Path, step: int, rollouts: Iterable[dict[str, Any]]) -> None:
    """Add one logging step's rollouts ({prompt, completion, rewards: {function: score}, advantage}) to the
    ``rollouts`` view's file, one JSON line each with its step; the run page shows those of the latest step."""
    if not rf.is_main_process():
        return
    lines = "".join(json.dumps({"step": int(step), **r}, ensure_ascii=False) + "\n" for r in rollouts)
    with open(Path(run_dir) / ROLLOUTS_FILE, "a", encoding="utf-8") as f:
        f.write(lines)
