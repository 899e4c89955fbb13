"""Tabular classification and regression: binary, multi-class, multi-label, single and multi-target.

One run = type the columns, k-fold search over model families inside a time budget, a weighted
ensemble over out-of-fold predictions, validation metrics, permutation importance, and one joblib
bundle (pipelines + labels) in ``run_dir/model``. This file declares the task and orchestrates a run; the
pieces live in the ``engine/tabular`` package (imported inside functions: it imports scikit-learn).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from engine.errors import UserError
from engine.params import CommonParams, field
from engine.runfiles import MODEL_DIR
from engine.task import Column, Job, Task

MODELS = ["xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear", "svm", "knn"]
AUTOTRAIN_MODELS = {
    "ridge": "linear",
    "logistic_regression": "linear",
    "lightgbm": "hist_gradient_boosting",
    "catboost": "hist_gradient_boosting",
    "random_forest": "random_forest",
    "extra_trees": "extra_trees",
}
KIND = Literal["numeric", "categorical", "boolean", "datetime", "text", "drop"]


class Params(CommonParams):
    """Tabular options. ``base_model`` is not used: choose ``model`` instead."""

    base_model: str = field("", "Not used by tabular models (choose `model` instead).", hidden=True)

    model: Literal[
        "auto", "xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear", "svm", "knn"
    ] = field(
        "auto",
        "auto: try several model families with cross-validation, tune the best, and ensemble them. "
        "Or pick one family and tune only it.",
    )
    problem_type: Literal["auto", "binary", "multiclass", "multilabel", "regression"] = field(
        "auto", "What to predict. auto: detected from the target column(s)."
    )
    target_columns: str = field(
        "",
        "Column(s) to predict, comma-separated for several (multi-label 0/1 columns or multi-target regression). "
        "Empty: the column mapped to `target`, or named `target`.",
    )
    metric: Literal["auto", "logloss", "accuracy", "balanced_accuracy", "roc_auc", "f1", "rmse", "mae", "r2"] = field(
        "auto", "Metric the search optimises. auto: logloss for classification, rmse for regression."
    )
    time_limit: int = field(120, "Seconds for the whole search (the run ends a little after).", ge=5, le=7 * 86400)
    num_trials: int = field(
        0, "Stop the search after this many trials (0 = as many as fit in time_limit).", ge=0, le=100_000
    )
    cv_folds: int = field(5, "Cross-validation folds for each trial.", ge=2, le=10, advanced=True)
    ensemble: bool = field(
        True, "Combine the best trials into a weighted ensemble (kept only if it scores better).", advanced=True
    )
    feature_types: dict[str, KIND] = field(
        {}, "Override the detected type of a column, e.g. {zip_code: categorical, notes: drop}.", advanced=True
    )
    text_columns: Literal["hash", "drop"] = field(
        "hash", "Free-text columns: hash their words into numeric features, or leave them out.", advanced=True
    )
    label_separator: str = field(
        ",",
        "Multi-label from one column: the separator between labels in a cell (e.g. `a,b`).",
        advanced=True,
        show_if={"problem_type": "multilabel"},
    )
    calibrate: bool = field(
        True,
        "Rescale each model's class probabilities with a temperature fitted on its out-of-fold predictions "
        "(better log loss, fairer ensembles; predicted classes do not change).",
        advanced=True,
    )
    validation_rows: Literal["train", "score"] = field(
        "train",
        "With a validation file or split of your own: train = its rows join the cross-validation, so every labelled "
        "row trains the final model (their eval_* scores are out of fold: each row predicted by models that did not "
        "see it); score = they are held out and only scored.",
        advanced=True,
    )
    refit_full: bool = field(
        True,
        "Refit the chosen models on all training rows when time allows (usually better on small tables). "
        "Off, or without time: predict with the average of the cross-validation fold models (bagging).",
        advanced=True,
    )
    feature_importance: bool = field(True, "Compute permutation feature importance at the end.", advanced=True)
    threads: int = field(
        0,
        "CPU threads per model fit (0 = auto: 1 for small and medium tables, all cores for large ones).",
        ge=0,
        le=256,
        advanced=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, values: Any) -> Any:
        """AutoTrain forms: `base_model: xgboost`, `column_mapping: {target_columns: [a, b]}`."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        base = str(values.get("base_model") or "")
        if base:
            if base not in MODELS and base not in AUTOTRAIN_MODELS:
                raise ValueError(
                    f"base_model `{base}` is not used by the tabular task; set `model` to one of auto, {', '.join(MODELS)}"
                )
            values.setdefault("model", AUTOTRAIN_MODELS.get(base, base))
            values["base_model"] = ""
        mapping = dict(values.get("column_mapping") or {})
        for key in ("target_columns", "target"):
            value = mapping.get(key)
            if key in mapping and (isinstance(value, (list, tuple)) or key == "target_columns" or "," in str(value)):
                names = list(value) if isinstance(value, (list, tuple)) else str(value or "").split(",")
                mapping.pop(key)
                if not values.get("target_columns"):
                    values["target_columns"] = ",".join(str(n).strip() for n in names if str(n).strip())
        if "column_mapping" in values:
            values["column_mapping"] = mapping
        return values


def from_autotrain(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """AutoTrain tabular configs: `tabular:regression` fixes the sub-task; categorical/numerical_columns type columns."""
    if str(config.get("task", "")).endswith("regression"):
        params["problem_type"] = "regression"
    given = config.get("params") or {}
    types = {c: "categorical" for c in given.get("categorical_columns") or []}
    types.update({c: "numeric" for c in given.get("numerical_columns") or []})
    if types:
        params["feature_types"] = {**types, **(params.get("feature_types") or {})}
    return params


COLUMNS = [
    Column(
        "target",
        "the column to predict (several: name them in target_columns)",
        required=False,
        kind="label",
        need="required, unless target_columns names the columns",
    ),
    Column("id", "an optional row id: kept out of the features, copied to predictions", required=False, kind="any"),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Task checks before queueing. Reads the raw tables: features are every column, not only the mapped roles."""
    from engine.tabular.checks import load_checked

    try:
        load_checked(params)
    except UserError as e:
        return e.problems
    return []


def train(job: Job) -> dict[str, Any]:
    """Prepare the table, search, choose and refit the members, evaluate, save.

    A stopped search still saves its best model (hence no ``save_unless_stopped``): unlike a half-trained
    network it is a complete predictor, and its leaderboard is what the user looks at before resuming.
    """
    from engine.tabular import bundle, checkpoint, ensemble, evaluate, log, prepare, search

    params, run_dir, t0, notices = job.params, job.run_dir, time.time(), []
    d = prepare.prepare(params, notices)
    resume = checkpoint.load_checkpoint(params.resume_from, d.setup, len(d.y)) if params.resume_from else None
    found = search.search_models(d, params, run_dir, t0 + params.time_limit * 0.85, resume)
    checkpoint.save_checkpoint(run_dir, found)
    members, cv_score = ensemble.final_members(found, d, params, t0)
    model = bundle.make_bundle(members, d.setup, d.spec, d.id_col, list(d.X.columns))
    metrics = {**evaluate.evaluate(model, members, d, notices), **evaluate.summary(found, d, cv_score, t0)}
    t_search = time.time()
    importance = evaluate.importance_for(model, d, params, t0)
    t_importance = time.time()
    bundle.save(run_dir / MODEL_DIR, model, found, importance, metrics, notices)
    log(
        f"search and evaluation {t_search - t0:.1f}s, importance {t_importance - t_search:.1f}s, "
        f"saving {time.time() - t_importance:.1f}s"
    )
    return evaluate.report(run_dir, found, metrics, importance, notices)


def predict(model_dir: Path, inputs: Any) -> Any:
    """A row dict -> {prediction, probabilities}; a list of rows -> a list of those;
    a CSV/table path -> {output_csv, rows, preview} with one prediction (and class probabilities) per row."""
    from engine.tabular.bundle import predict as predict_bundle

    return predict_bundle(model_dir, inputs)


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Classification report and confusion matrix, or R²/RMSE, on a test table holding the target column."""
    import joblib

    from engine.tabular.bundle import BUNDLE, predict_rows
    from engine.tabular.targets import Setup
    from engine.train import evaluation

    bundle = joblib.load(Path(model_dir) / BUNDLE)
    setup = Setup(**bundle["setup"])
    if setup.problem == "multilabel" or len(setup.targets) > 1:
        raise UserError("Evaluating several target columns at once is not available yet; evaluate one target.")
    target = setup.targets[0]
    if target not in df.columns:
        raise UserError(
            f"The test table has no `{target}` column (the target). Columns found: {', '.join(df.columns)}."
        )
    df = df[df[target].notna()].reset_index(drop=True)
    inputs = [json.dumps(r, default=str) for r in df.drop(columns=[target]).to_dict("records")]
    found = predict_rows(bundle, df.drop(columns=[target]))
    if setup.problem == "regression":
        return evaluation.regression(df[target].astype(float).tolist(), [r["prediction"] for r in found], inputs)
    refs = [str(v) for v in df[target]]
    evaluation.unseen_labels_error({str(c) for c in setup.classes}, refs, "class")
    scores = [{str(k): v for k, v in (r.get("probabilities") or {}).items()} for r in found]
    return evaluation.classification(refs, [str(r["prediction"]) for r in found], scores, inputs)


TASK = Task(
    name="tabular",
    model_kind=None,
    hub_pipeline=None,
    title="Tabular (classification & regression)",
    family="Tabular",
    description="Predict one or more columns of a table: binary, multi-class or multi-label classes, or numbers. "
    "Searches xgboost, forests, gradient boosting, linear, SVM and k-NN models within a time budget and ensembles the best.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_loss",
    greater_is_better=False,
    model_note="No pretrained model: the model family is chosen with `model` (auto searches several). "
    "eval_loss is the log loss (classification) or RMSE (regression) on the validation rows.",
    stratify_role="target",
    check_data=check_data,
    loads_data=False,  # tabular reads every raw column itself (features are all the unmapped columns)
    predict_input="table",
    from_autotrain=from_autotrain,
    library="sklearn",
    uses_torch=False,
    autotrain_names=[
        "tabular:classification",
        "tabular:regression",
        "tabular-classification",
        "tabular-regression",
        "tabular_classification",
        "tabular_regression",
    ],
)
