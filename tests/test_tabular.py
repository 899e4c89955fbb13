"""Tabular task: column typing and checks (fast), and end-to-end runs through the supervisor (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from engine.errors import UserError
from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.tabular import bundle, columns, evaluate, families, metrics, search, targets
from engine.task import Job, get_task

TASK = get_task("tabular")


def params(**kw):
    return validate_params(TASK.params, kw)


def sklearn_csv(name: str, folder: Path) -> Path:
    from sklearn import datasets

    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    path = folder / f"{name}.csv"
    frame.rename(columns={frame.columns[-1]: "target"}).to_csv(path, index=False)
    return path


def customers(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Synthetic churn table: numbers with gaps, categories, yes/no, dates, free text, string labels, an id."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["Oslo", "Lima", "Pune", "Kyiv", "Accra"], n)
    age = rng.integers(18, 80, n).astype(float)
    spend = rng.gamma(2.0, 50.0, n)
    member = rng.choice(["yes", "no"], n)
    risk = (city == "Lima") * 1.5 + (city == "Kyiv") * 1.0 - (member == "yes") * 1.2 + (age < 30) * 1.0 - spend / 150
    label = np.where(risk + rng.normal(0, 0.4, n) > 0, "churn", "stay")
    words = np.array(["late delivery", "great service", "app crashed again", "price too high", "friendly staff"])
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "city": city,
            "age": age,
            "spend": spend.round(2),
            "member": member,
            "signup": pd.date_range("2021-01-01", periods=n, freq="37h").strftime("%Y-%m-%d").to_numpy(),
            "comment": [f"customer says {words[i % 5]} and {words[(i * 7) % 5]} on visit {i}" for i in range(n)],
            "label": label,
        }
    )
    df.loc[rng.choice(n, n // 10, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, n // 10, replace=False), "city"] = np.nan
    return df


def labelled_features(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "color": rng.choice(["red", "green", "blue"], n)}
    )
    df.loc[rng.choice(n, 20, replace=False), "x2"] = np.nan
    return df


# --- fast: typing, detection, checks ----------------------------------------------------------------


def test_feature_types_are_inferred_and_overridable():
    df = customers(60)
    notices: list[str] = []
    spec = columns.feature_spec(df.drop(columns=["label"]), {"age": "categorical"}, "hash", notices)
    kinds = spec["columns"]
    assert kinds["spend"] == "numeric" and kinds["city"] == "categorical" and kinds["member"] == "boolean"
    assert kinds["signup"] == "datetime" and kinds["comment"] == "text" and kinds["age"] == "categorical"
    assert kinds["customer_id"] == "drop"  # unique short strings look like an identifier
    assert any("customer_id" in n for n in notices) and any("comment" in n and "hashed" in n for n in notices)
    frame = columns.prepare_frame(df.head(5), spec)
    assert "signup__year" in frame and "comment__h0" in frame and frame["member"].isin([0.0, 1.0]).all()


def test_sub_task_detection():
    one = lambda values: pd.DataFrame({"t": values})  # noqa: E731
    assert targets.detect_problem(one(["a", "b", "a"]), "auto") == "binary"
    assert targets.detect_problem(one(["a", "b", "c"]), "auto") == "multiclass"
    assert targets.detect_problem(one(list(range(5)) * 10), "auto") == "multiclass"
    assert targets.detect_problem(one(np.linspace(0, 1, 50)), "auto") == "regression"
    assert targets.detect_problem(pd.DataFrame({"a": [0, 1, 1], "b": [1, 0, 1]}), "auto") == "multilabel"
    assert targets.detect_problem(pd.DataFrame({"a": [0.5, 1, 2], "b": [3, 0, 1.5]}), "auto") == "regression"
    assert targets.detect_problem(one(list(range(5)) * 10), "regression") == "regression"


def test_multilabel_from_one_column_with_separator():
    y = pd.DataFrame({"tags": ["a,b", "b", "", "c, a", None]})
    setup = targets.make_setup(y.iloc[[0, 1, 3]], "multilabel", "auto", ",")
    assert setup.classes == ["a", "b", "c"] and setup.metric == "logloss"
    codes, ok = targets.encode_targets(y, setup)
    assert (
        codes.tolist()[0] == [1, 1, 0]
        and codes.tolist()[3] == [1, 0, 1]
        and ok.tolist() == [True, True, False, True, False]
    )
    saved = {"setup": setup.__dict__}
    out = bundle.decode(saved, np.array([[0.9, 0.2, 0.6]]))
    assert out[0]["prediction"] == ["a", "c"] and out[0]["probabilities"]["b"] == pytest.approx(0.2)


def test_autotrain_forms_and_empty_base_model():
    from engine.config import from_dict

    assert params().base_model == "" and params().model == "auto"
    task, p = from_dict(
        {
            "task": "tabular:classification",
            "base_model": "xgboost",
            "project_name": "t",
            "data": {"path": "x.csv", "column_mapping": {"id_column": "id", "target_columns": ["a", "b"]}},
            "params": {"num_trials": 5, "time_limit": 60},
        }
    )
    assert task.name == "tabular" and p.model == "xgboost" and p.base_model == ""
    assert p.target_columns == "a,b" and p.column_mapping == {"id": "id"} and p.num_trials == 5
    _, p = from_dict(
        {
            "task": "tabular:regression",
            "base_model": "random_forest",
            "data": {"path": "x.csv"},
            "params": {"categorical_columns": ["zip"], "numeric_scaler": "robust", "numerical_imputer": "median"},
        }
    )
    assert p.problem_type == "regression" and p.model == "random_forest" and p.feature_types == {"zip": "categorical"}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_target", "No target column"),
        ("all_null", "Target column `label` is empty in every row"),
        ("one_class", "single class ('stay')"),
        ("dup_id", "Id column `customer_id` is not unique: 2 rows share an id, rows 1, 2"),
        ("mixed", "Column `spend` mixes numbers and text: 'lots' in row(s) 4"),
        ("missing_target_col", "Target column `churned` is not in the data"),
    ],
)
def test_bad_input_is_refused_before_queueing(supervisor, tmp_path, case, expected):
    df = customers(40)
    kw = {"target_columns": "label", "column_mapping": {"id": "customer_id"}}
    if case == "no_target":
        kw = {}
    elif case == "all_null":
        df["label"] = np.nan
    elif case == "one_class":
        df["label"] = "stay"
    elif case == "dup_id":
        df.loc[1, "customer_id"] = df.loc[0, "customer_id"]
    elif case == "mixed":
        df["spend"] = df["spend"].astype(object)
        df.loc[3, "spend"] = "lots"
    elif case == "missing_target_col":
        kw["target_columns"] = "churned"
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    with pytest.raises(UserError) as err:
        supervisor.submit(TASK, params(data_path=str(path), **kw))
    assert expected in str(err.value)
    assert supervisor.store.list_runs() == []


def test_mixed_column_is_accepted_when_overridden(tmp_path):
    from engine.data.splits import check_data

    df = customers(40)
    df["spend"] = df["spend"].astype(object)
    df.loc[3, "spend"] = "lots"
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    p = params(data_path=str(path), target_columns="label", feature_types={"spend": "categorical"})
    assert check_data(TASK, p) == []


def test_validation_file_lacking_a_feature_is_refused_at_check_and_at_train(supervisor, tmp_path):
    from engine.data.splits import check_data

    df = customers(60)
    train_csv, valid_csv = tmp_path / "train.csv", tmp_path / "valid.csv"
    df.iloc[:45].to_csv(train_csv, index=False)
    df.iloc[45:].drop(columns=["city", "age", "customer_id"]).to_csv(valid_csv, index=False)
    p = params(data_path=str(train_csv), valid_path=str(valid_csv), target_columns="label")
    with pytest.raises(UserError) as err:
        supervisor.submit(TASK, p)
    message = str(err.value)
    assert "Validation file `valid.csv` lacks the feature column(s) `city`, `age`" in message
    assert "training file `train.csv`" in message and "customer_id" not in message  # an unused identifier may be absent
    assert supervisor.store.list_runs() == []
    with pytest.raises(UserError, match="lacks the feature column"):  # the worker checks again (files can change)
        TASK.train(Job(task=TASK, params=p, run_dir=tmp_path, train=None))
    left_out = params(data_path=str(train_csv), valid_path=str(valid_csv), target_columns="label",
                      feature_types={"city": "drop", "age": "drop"})  # fmt: skip
    assert check_data(TASK, left_out) == []


def test_repeated_column_names_are_refused_with_their_names(supervisor, tmp_path):
    header, rows = customers(40).to_csv(index=False).split("\n", 1)
    path = tmp_path / "repeated.csv"
    path.write_text(header.replace("spend", "age").replace("member", "city") + "\n" + rows)
    p = params(data_path=str(path), target_columns="label")
    with pytest.raises(UserError) as err:
        supervisor.submit(TASK, p)
    assert "`repeated.csv`" in str(err.value) and "`age`" in str(err.value) and "`city`" in str(err.value)
    assert supervisor.store.list_runs() == []
    with pytest.raises(UserError, match="repeated.csv"):
        TASK.train(Job(task=TASK, params=p, run_dir=tmp_path, train=None))


def test_temperature_sharpens_underconfident_scores_without_changing_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    sharp = np.full((400, 3), 0.02)
    sharp[np.arange(400), y] = 0.96
    flat = 0.5 * sharp + 0.5 / 3  # right classes, too little confidence
    t = metrics.fit_temperature(flat, y, "multiclass")
    calibrated = metrics.apply_temperature(flat, t, "multiclass")
    assert t < 1 and (calibrated.argmax(axis=1) == y).all() and np.allclose(calibrated.sum(axis=1), 1)
    assert metrics.compute_metric("logloss", y, calibrated, "multiclass") < metrics.compute_metric(
        "logloss", y, flat, "multiclass"
    )
    p1 = np.where(y == 1, 0.6, 0.4)
    assert ((metrics.apply_temperature(p1, 0.5, "binary") >= 0.5) == (p1 >= 0.5)).all()
    assert metrics.fit_temperature(np.linspace(0, 1, 400), y.astype(float), "regression") == 1.0
    separated = np.where(y == 1, 0.99, 0.01)  # no out-of-fold error: smoothing keeps it from going to 0/1
    assert metrics.fit_temperature(separated, (y == 1).astype(int), "binary") > 0.5


@pytest.mark.parametrize("problem", ["binary", "multiclass", "multilabel", "regression"])
def test_svm_family_fits_every_sub_task(problem):
    df = labelled_features(120)
    y_frame = {
        "binary": pd.DataFrame({"t": (df["x1"] > 0).astype(int)}),
        "multiclass": pd.DataFrame({"t": df["color"]}),
        "multilabel": pd.DataFrame({"a": (df["x1"] > 0).astype(int), "b": (df["color"] == "red").astype(int)}),
        "regression": pd.DataFrame({"t": 2 * df["x1"] + 10}),
    }[problem]
    X = df.drop(columns="color") if problem == "multiclass" else df
    setup = targets.make_setup(y_frame, problem, "auto", ",")
    y, _ = targets.encode_targets(y_frame, setup)
    spec = columns.feature_spec(X, {}, "hash", [])
    folds = search.make_folds(y, setup, 3, 0)
    cand = search.cross_validate(
        "svm", families.default_params("svm", problem), 1, X, y, setup, spec, folds, 0, float("inf")
    )
    assert cand is not None and np.isfinite(cand.score) and len(cand.models) == 3
    if problem == "regression":
        assert cand.score < 1.0 and cand.temperature == 1.0  # rmse on a target with sd 2


# --- slow: end to end through the supervisor ----------------------------------------------------------


def run(supervisor, timeout: float = 180, **kw) -> tuple[dict, dict, Path]:
    run_id = supervisor.submit(TASK, params(**kw))
    row = supervisor.wait(run_id, timeout=timeout)
    run_dir = Path(row["run_dir"])
    assert row["status"] == "succeeded", (row.get("error"), (run_dir / "train.log").read_text()[-3000:])
    return row, json.loads((run_dir / "metrics.json").read_text()), run_dir


@pytest.mark.slow
def test_breast_cancer_auto_ensemble(supervisor, tmp_path):
    path = sklearn_csv("breast_cancer", tmp_path)
    raw = pd.read_csv(path)
    row, m, run_dir = run(supervisor, data_path=str(path), time_limit=20, valid_fraction=0.2)
    assert m["problem_type"] == "binary" and m["eval_rows"] == 114
    assert m["eval_accuracy"] > 0.93 and m["eval_logloss"] < 0.2 and m["eval_roc_auc"] > 0.97
    assert row["key_metric"] == pytest.approx(m["eval_loss"])
    assert m["n_trials"] >= 3 and len({r["model"] for r in m["leaderboard"]}) >= 3
    model_dir = run_dir / "model"
    for name in ("model.joblib", "leaderboard.csv", "leaderboard.json", "feature_importance.csv", "README.md"):
        assert (model_dir / name).exists(), name
    importance = list(m["feature_importance"].values())  # the columns that fit in the time left (>= 1 s)
    assert importance and importance[0] > 0 and importance == sorted(importance, reverse=True)
    full = evaluate.permutation_importance(
        joblib.load(model_dir / "model.joblib"),
        raw.drop(columns="target"),
        raw["target"].to_numpy(),
        seed=0,
        budget_s=600,
    )
    assert len(full) == 30 and sum(v > 0 for v in full.values()) >= 3  # every column, given the time
    trials = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    trials = [e for e in trials if e["type"] == "trial"]
    assert [e["step"] for e in trials] == list(range(1, len(trials) + 1))
    assert all(e["best_score"] <= e["score"] + 1e-12 for e in trials)  # logloss: best so far is the lowest
    assert len(supervisor.store.metrics(row["id"], ["best_score"])) == len(trials)
    out = predict_dir(run_dir, raw.drop(columns="target").iloc[0].to_dict())
    assert out["prediction"] in (0, 1) and sum(out["probabilities"].values()) == pytest.approx(1.0)
    table = predict_dir(run_dir, str(path))
    preds = pd.read_csv(table["output_csv"])
    assert len(preds) == len(raw) and {"prediction", "proba_0", "proba_1"} <= set(preds.columns)
    assert (preds["prediction"] == raw["target"]).mean() > 0.95


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, metric, floor",
    [
        ("iris", "eval_accuracy", 0.85),
        ("wine", "eval_accuracy", 0.85),
        ("digits", "eval_accuracy", 0.9),
        ("diabetes", "eval_r2", 0.3),
    ],
)
def test_sklearn_datasets(supervisor, tmp_path, name, metric, floor):
    path = sklearn_csv(name, tmp_path)
    _, m, run_dir = run(supervisor, data_path=str(path), time_limit=6, valid_fraction=0.2)
    assert m["problem_type"] == ("regression" if name == "diabetes" else "multiclass")
    assert m[metric] > floor, m
    row = pd.read_csv(path).drop(columns="target").iloc[[0]].to_dict(orient="records")
    assert len(predict_dir(run_dir, row)) == 1


@pytest.mark.slow
def test_mixed_types_string_labels_unseen_categories(supervisor, tmp_path):
    df = customers(300)
    path = tmp_path / "churn.csv"
    df.to_csv(path, index=False)
    _, m, run_dir = run(
        supervisor,
        data_path=str(path),
        target_columns="label",
        column_mapping={"id": "customer_id"},
        model="xgboost",
        num_trials=3,
        time_limit=60,
        valid_fraction=0.2,
    )
    assert m["n_trials"] == 3 and m["best_model"] == "xgboost" and m["eval_accuracy"] > 0.75
    summary = json.loads((run_dir / "model" / "tabular.json").read_text())
    assert summary["feature_types"]["signup"] == "datetime" and summary["feature_types"]["comment"] == "text"
    assert "customer_id" not in summary["feature_types"]  # the id role is not a feature
    rows = [
        {"city": "Atlantis", "age": None, "spend": "", "member": "maybe"},  # unseen / missing / unparseable
        {"city": "Lima", "age": 22, "spend": 5.0, "member": "no", "signup": "2022-03-01", "comment": "app crashed"},
        {},
    ]
    out = predict_dir(run_dir, rows)
    assert [r["prediction"] in ("churn", "stay") for r in out] == [True] * 3
    assert out[1]["prediction"] == "churn" and out[1]["probabilities"]["churn"] > 0.5
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0) for r in out)
    table = predict_dir(run_dir, str(path))
    assert pd.read_csv(table["output_csv"]).columns[0] == "customer_id"
    from engine.run.predict import predict_in_subprocess

    assert predict_in_subprocess(run_dir, rows[1])["prediction"] == "churn"


@pytest.mark.slow
def test_multilabel_from_01_columns(supervisor, tmp_path):
    df = labelled_features(300)
    df["is_big"] = (df["x1"] > 0).astype(int)
    df["is_red"] = (df["color"] == "red").astype(int)
    df["is_odd"] = ((df["x1"] + df["x2"].fillna(0)) > 0.5).astype(int)
    path = tmp_path / "ml.csv"
    df.to_csv(path, index=False)
    _, m, run_dir = run(supervisor, data_path=str(path), target_columns="is_big, is_red, is_odd", time_limit=8)
    assert m["problem_type"] == "multilabel" and m["eval_f1"] > 0.75, m
    out = predict_dir(run_dir, {"x1": 2.0, "x2": 1.0, "color": "red"})
    assert {"is_big", "is_red"} <= set(out["prediction"]) and set(out["probabilities"]) == {
        "is_big",
        "is_red",
        "is_odd",
    }


@pytest.mark.slow
def test_two_target_regression(supervisor, tmp_path):
    df = labelled_features(300)
    rng = np.random.default_rng(3)
    df["y1"] = 3 * df["x1"] + (df["color"] == "blue") * 2 + rng.normal(0, 0.1, len(df))
    df["y2"] = df["x2"].fillna(0) - df["x1"] + rng.normal(0, 0.1, len(df))
    path = tmp_path / "reg.csv"
    df.to_csv(path, index=False)
    _, m, run_dir = run(supervisor, data_path=str(path), column_mapping={"target": "y1,y2"}, time_limit=8)
    assert m["problem_type"] == "regression" and m["eval_r2"] > 0.7, m
    out = predict_dir(run_dir, {"x1": 1.0, "x2": 0.0, "color": "blue"})
    assert set(out["prediction"]) == {"y1", "y2"} and out["prediction"]["y1"] == pytest.approx(5.0, abs=1.0)


@pytest.mark.slow
def test_stop_between_trials_then_resume_continues_the_search(supervisor, tmp_path):
    import time

    from engine import runfiles as rf

    path = sklearn_csv("wine", tmp_path)
    run_id = supervisor.submit(TASK, params(data_path=str(path), time_limit=300, num_trials=6))
    deadline = time.time() + 60
    while len(supervisor.store.metrics(run_id, ["score"])) < 2 and time.time() < deadline:
        time.sleep(0.2)
    t0 = time.time()
    supervisor.stop(run_id)
    row = supervisor.wait(run_id, timeout=60)
    assert row["status"] == "stopped" and time.time() - t0 < 30
    assert (Path(row["run_dir"]) / "model" / "model.joblib").exists(), "a stopped search still saves its best model"
    ckpt = rf.last_checkpoint(row["run_dir"])
    assert ckpt is not None and (ckpt / "search.joblib").exists()
    before = json.loads((Path(row["run_dir"]) / "model" / "leaderboard.json").read_text())
    before = sorted((r for r in before if r["model"] != "ensemble"), key=lambda r: r["trial"])
    assert len(before) == int(ckpt.name.split("-")[1]) >= 2

    new_id = supervisor.resume(run_id)
    new = supervisor.wait(new_id, timeout=180)
    assert new["status"] == "succeeded" and new["parent_id"] == run_id, new["error"]
    m = json.loads((Path(new["run_dir"]) / "metrics.json").read_text())
    after = json.loads((Path(new["run_dir"]) / "model" / "leaderboard.json").read_text())
    after = sorted((r for r in after if r["model"] != "ensemble"), key=lambda r: r["trial"])
    assert m["n_trials"] == len(after) == len(before) + 6  # num_trials more, on top of the earlier ones
    assert [(r["model"], r["params"], r["cv_score"]) for r in after[: len(before)]] == [
        (r["model"], r["params"], r["cv_score"]) for r in before
    ]
    defaults = [r["model"] for r in after if r["trial"] <= 7]  # each family's default is tried once, not again
    assert len(defaults) == len(set(defaults))
    steps = [e["step"] for e in map(json.loads, (Path(new["run_dir"]) / "events.jsonl").read_text().splitlines())
             if e["type"] == "trial"]  # fmt: skip
    assert steps == list(range(len(before) + 1, len(after) + 1))
    assert m["eval_accuracy"] > 0.85
