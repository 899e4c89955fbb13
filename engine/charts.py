"""Which chart a logged metric goes on, decided by its name: a new metric needs no UI change.

The Runs page draws one line chart per entry of ``CHARTS``; run comparison overlays the loss chart.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

CHARTS = {
    "loss": "Loss (training, validation)",
    "lr": "Learning rate",
    "throughput": "Throughput",
    "other": "Other metrics (validation, …)",
}
TRAIN_LOSS = "loss"  # the per-step training loss: its pace gives the ETA
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
    ("num_input_tokens_seen", None),
    ("total_flos", None),
    ("num_train_epochs", None),
    ("global_step", None),
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
