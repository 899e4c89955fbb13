"""The saved predictor: ``model.joblib`` (members with their fitted pipelines, setup, column spec) and its
side files (leaderboard, feature importance, ``tabular.json``), and prediction from it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from engine.data import tables as data
from engine.errors import UserError
from engine.tabular.families import predict_scores
from engine.tabular.metrics import apply_temperature, to_loss
from engine.tabular.search import Candidate, Search
from engine.tabular.targets import Setup

BUNDLE = "model.joblib"


def make_bundle(
    members: list[tuple[float, Candidate]],
    setup: Setup,
    spec: dict[str, Any],
    id_column: str | None,
    feature_columns: list[str],
) -> dict[str, Any]:
    """Everything ``predict`` needs, saved with joblib: members (weight, fold models, temperature), setup,
    column spec."""
    return {
        "version": 1,
        "setup": setup.__dict__.copy(),
        "spec": spec,
        "id_column": id_column,
        "feature_columns": feature_columns,
        "members": [
            {"family": c.family, "params": c.params, "weight": w, "models": c.models, "temperature": c.temperature}
            for w, c in members
        ],
    }


def bundle_scores(bundle: dict[str, Any], X: pd.DataFrame) -> np.ndarray:
    """Weighted average over members of the average over each member's fold models (temperature-scaled)."""
    setup = Setup(**bundle["setup"])
    total = None
    with threadpool_limits(setup.threads):
        for m in bundle["members"]:
            part = sum(predict_scores(model, X, setup) for model in m["models"]) / len(m["models"])
            part = apply_temperature(part, m.get("temperature", 1.0), setup.problem)
            total = m["weight"] * part if total is None else total + m["weight"] * part
    return total


def decode(bundle: dict[str, Any], scores: np.ndarray) -> list[dict[str, Any]]:
    """Scores -> one {prediction, probabilities} dict per row, in the user's labels."""
    setup = Setup(**bundle["setup"])
    rows = []
    for s in scores:
        if setup.problem == "regression":
            values = [float(v) for v in np.atleast_1d(s)]
            rows.append(
                {"prediction": values[0] if len(values) == 1 else dict(zip(setup.targets, values, strict=True))}
            )
        elif setup.problem == "binary":
            p = float(s)
            rows.append(
                {
                    "prediction": setup.classes[int(p >= 0.5)],
                    "probabilities": {str(setup.classes[0]): 1 - p, str(setup.classes[1]): p},
                }
            )
        elif setup.problem == "multiclass":
            rows.append(
                {
                    "prediction": setup.classes[int(np.argmax(s))],
                    "probabilities": {str(c): float(v) for c, v in zip(setup.classes, s, strict=True)},
                }
            )
        else:
            rows.append(
                {
                    "prediction": [str(c) for c, v in zip(setup.classes, s, strict=True) if v >= 0.5],
                    "probabilities": {str(c): float(v) for c, v in zip(setup.classes, s, strict=True)},
                }
            )
    return rows


def predictions_frame(bundle: dict[str, Any], raw: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A table of predictions (and class probabilities) per input row, led by the id column if present."""
    setup = Setup(**bundle["setup"])
    out = pd.DataFrame(index=range(len(rows)))
    if bundle["id_column"] and bundle["id_column"] in raw:
        out[bundle["id_column"]] = raw[bundle["id_column"]].to_numpy()
    if setup.problem == "regression" and len(setup.targets) > 1:
        for t in setup.targets:
            out[t] = [r["prediction"][t] for r in rows]
    elif setup.problem == "multilabel":
        out["prediction"] = [(setup.separator or ",").join(r["prediction"]) for r in rows]
    else:
        out["prediction"] = [r["prediction"] for r in rows]
    for r_key in (rows[0].get("probabilities") or {}) if rows else {}:
        out[f"proba_{r_key}"] = [r["probabilities"][r_key] for r in rows]
    return out


def leaderboard_rows(search: Search) -> list[dict[str, Any]]:
    """Every trial (and the ensemble), best first, with its params as JSON text (one table cell)."""
    metric = search.setup.metric
    rows = sorted(search.leaderboard, key=lambda r: to_loss(metric, r["cv_score"]))
    return [{**r, "params": json.dumps(r["params"], default=str)} for r in rows]


def save(
    model_dir: Path,
    bundle: dict[str, Any],
    search: Search,
    importance: dict[str, float],
    metrics: dict[str, Any],
    notices: list[str],
) -> None:
    """model.joblib (the whole predictor), leaderboard.csv/.json, feature_importance.csv, tabular.json."""
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, model_dir / BUNDLE, compress=3)
    rows = leaderboard_rows(search)
    pd.DataFrame(rows).to_csv(model_dir / "leaderboard.csv", index=False)
    (model_dir / "leaderboard.json").write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    pd.DataFrame({"feature": list(importance), "importance": list(importance.values())}).to_csv(
        model_dir / "feature_importance.csv", index=False
    )
    summary = {
        "setup": bundle["setup"],
        "feature_types": bundle["spec"]["columns"],
        "id_column": bundle["id_column"],
        "members": [{"model": m["family"], "weight": m["weight"], "params": m["params"]} for m in bundle["members"]],
        "metrics": {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))},
        "notices": notices,
    }
    (model_dir / "tabular.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")


def predict(model_dir: Path, inputs: Any) -> Any:
    """A row dict -> {prediction, probabilities}; a list of rows -> a list of those;
    a CSV/table path -> {output_csv, rows, preview} with one prediction (and class probabilities) per row."""
    bundle = joblib.load(Path(model_dir) / BUNDLE)
    if isinstance(inputs, str) and inputs.strip()[:1] in ("{", "["):
        inputs = json.loads(inputs)
    if isinstance(inputs, dict):
        return predict_rows(bundle, pd.DataFrame([inputs]))[0]
    if isinstance(inputs, list):
        if not all(isinstance(r, dict) for r in inputs):
            raise UserError('Give rows as objects, e.g. [{"age": 41, "city": "Oslo"}].')
        return predict_rows(bundle, pd.DataFrame(inputs))
    if isinstance(inputs, pd.DataFrame):
        return predict_rows(bundle, inputs)
    if isinstance(inputs, (str, Path)) and Path(inputs).is_file():
        return predict_file(bundle, Path(inputs))
    raise UserError("Tabular prediction takes a row ({column: value}), a list of rows, or the path of a CSV file.")


def predict_file(bundle: dict[str, Any], path: Path) -> dict[str, Any]:
    """Predictions for every row of a table file, written to a new CSV: {output_csv, rows, preview}."""
    raw = data.read_table(path)
    table = predictions_frame(bundle, raw, predict_rows(bundle, raw))
    out = Path(tempfile.mkdtemp(prefix="trainpad-predictions-")) / f"{path.stem}_predictions.csv"
    table.to_csv(out, index=False)
    return {"output_csv": str(out), "rows": len(table), "preview": json.loads(table.head(20).to_json(orient="records"))}


def predict_rows(bundle: dict[str, Any], raw: pd.DataFrame) -> list[dict[str, Any]]:
    """One {prediction, probabilities} dict per row of ``raw`` (missing columns count as empty cells)."""
    if len(raw) == 0:
        return []
    known = [c for c in bundle["feature_columns"] if c in raw.columns]
    if not known:
        raise UserError(
            f"None of the model's columns are in the input. Expected columns: {', '.join(bundle['feature_columns'])}."
        )
    X = raw.reindex(columns=bundle["feature_columns"])
    return decode(bundle, bundle_scores(bundle, X))
