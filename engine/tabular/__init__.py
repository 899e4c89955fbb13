"""Tabular learning for the tabular task (``engine/tasks/tabular.py``), one module per concern:

columns     column typing and the frame step of every saved pipeline
targets     the sub-task, classes and metric; targets encoded as numbers
metrics     metric values, lower-is-better losses, probability temperature
families    the model families: settings, search spaces, one pipeline each
checks      pre-flight checks of the raw tables (also run at train time)
prepare     load, check, split, type and encode: everything the search needs
search      k-fold candidates, the defaults-then-optuna search in a time budget
checkpoint  the search state saved for Resume, and restored
ensemble    greedy weighted ensemble, refit on all rows
evaluate    validation metrics, permutation importance
bundle      the saved predictor (model.joblib and its side files), prediction

scikit-learn, numpy and pandas are imported by the modules; xgboost and optuna only inside functions.
This file stays light: task modules import the package lazily, inside functions.
"""

from __future__ import annotations


def log(message: str, notices: list[str] | None = None) -> None:
    """Print a ``[trainpad]`` line to the run's log; also keep it in ``notices`` (shown with the metrics) if given."""
    print(f"[trainpad] {message}", flush=True)
    if notices is not None:
        notices.append(message)
