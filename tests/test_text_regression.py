"""Text regression end to end through the supervisor with a tiny in-process BERT (one and two targets,
early stopping); non-numeric targets refused before queueing with the row number."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from engine.tasks import text_regression as tr
from tests.tiny import metric_values, refused, tiny_bert_for, write_csv

TR = get_task("text_regression")
SCORES = {"awful": 0.0, "bad": 1.0, "okay": 2.0, "good": 3.0, "great": 4.0}
FILLER = "the film was plot acting really and music quite ending".split()


def review_rows(n: int, seed: int = 0, two_targets: bool = False) -> list[dict]:
    """One score word among filler words; target = its score plus noise (sd 0.1), or [score, 4 - score]."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = rng.choice(list(SCORES))
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 7))]
        words.insert(rng.randrange(len(words) + 1), word)
        y = round(SCORES[word] + rng.gauss(0, 0.1), 3)
        rows.append({"text": " ".join(words), "target": json.dumps([y, round(4 - y, 3)]) if two_targets else y})
    return rows


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(tmp_path_factory, [r["text"] for r in review_rows(300, 9)], init_std=0.1)


def params(model: Path, data: Path, **kw):
    base = {"base_model": str(model), "data_path": str(data), "batch_size": 16, "learning_rate": 3e-3}
    return validate_params(TR.params, {**base, "valid_fraction": 0.2, **kw})


@pytest.mark.slow
def test_regression_end_to_end_with_early_stopping(supervisor, tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    data = write_csv(tmp_path / "reviews.csv", review_rows(500, seed=1))
    p = params(tiny_bert, data, epochs=40, early_stopping_patience=2, early_stopping_threshold=0.02)
    run_id = supervisor.submit(TR, p)
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]

    r2 = metric_values(supervisor.store, run_id, "eval_r2")
    assert 3 <= len(r2) < 40, f"early stopping ends the run well before 40 epochs: {len(r2)} evaluations"
    run_dir = Path(row["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_r2"] >= 0.9 and metrics["eval_r2"] == pytest.approx(max(r2[:-1]), abs=1e-6), (
        "the best model is kept"
    )
    assert metrics["eval_rmse"] == pytest.approx(metrics["eval_mse"] ** 0.5) and metrics["eval_rmse"] < 0.5
    for name in ("eval_mae", "eval_explained_variance"):
        assert name in supervisor.store.metric_names(run_id)
    assert row["key_metric_name"] == "eval_r2"

    model_dir = run_dir / "model"
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    pipe = pipeline("text-classification", model=str(model_dir), device=-1, function_to_apply="none")
    assert pipe("the acting was great")[0]["score"] > 3.0
    awful, okay, great = predict_dir(run_dir, ["the film was awful", "music okay", "great ending"])
    assert awful < okay < great and abs(great - 4.0) < 0.6, (awful, okay, great)


@pytest.mark.slow
def test_two_targets_as_lists(supervisor, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "two.csv", review_rows(400, seed=2, two_targets=True))
    row = supervisor.wait(supervisor.submit(TR, params(tiny_bert, data, epochs=6)), timeout=400)
    assert row["status"] == "succeeded", row["error"]
    metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
    assert metrics["eval_r2"] >= 0.8, metrics
    good = predict_dir(Path(row["run_dir"]), "good plot")
    assert len(good) == 2 and abs(good[0] - 3) < 0.8 and abs(good[1] - 1) < 0.8, good


# ---- targets and bad inputs -------------------------------------------------------------------


def test_targets_parse_numbers_and_lists():
    values = pd.Series([1, "2.5", " 3 ", "[1, 2]"])
    assert tr.all_targets(values[:3]) == ([[1.0], [2.5], [3.0]], [])
    rows, problems = tr.all_targets(values)
    assert problems and "row(s) 4 differ" in problems[0]


def submit_error(supervisor, p) -> str:
    return refused(supervisor, TR, p)


def test_non_numeric_target_reported_with_row(supervisor, tmp_path):
    rows = review_rows(20)
    rows[6]["target"] = "five stars"
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "a.csv", rows)))
    assert "Row 7" in msg and "five stars" in msg and "not a number" in msg

    rows = review_rows(20, two_targets=True)
    rows[2]["target"] = "[1.0, high]"
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "b.csv", rows)))
    assert "Row 3" in msg and "could not be read" in msg
    rows[2]["target"] = '[1.0, "high"]'
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "c.csv", rows)))
    assert "Row 3" in msg and "`high` is not a number" in msg


def test_missing_target_and_wrong_columns(supervisor, tmp_path):
    rows = review_rows(20)
    rows[11]["target"] = None
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "a.csv", rows)))
    assert "target" in msg and "12" in msg
    data = write_csv(tmp_path / "b.csv", [{"review": "ok", "stars": 3}] * 4)
    msg = submit_error(supervisor, params(tmp_path, data))
    assert "No column for `text`" in msg and "review, stars" in msg


def test_best_model_metric_follows_the_task_and_the_data(tmp_path):
    """The best checkpoint is picked on the task's key metric (R² here), on eval_loss when there is one
    validation row (R² is undefined), and there is none to pick without evaluation."""
    from engine.task import Job
    from engine.train import trainer as tu

    p = params(tmp_path, tmp_path / "x.csv", early_stopping_patience=2)
    job = Job(task=TR, params=p, run_dir=tmp_path, train=None)
    args = tu.training_arguments(job, n_train=40, n_eval=10)
    assert (args.metric_for_best_model, args.greater_is_better, args.load_best_model_at_end) == ("eval_r2", True, True)
    assert args.save_strategy == args.eval_strategy == "epoch", "a checkpoint at each evaluation"
    one = tu.training_arguments(job, n_train=40, n_eval=1)
    assert (one.metric_for_best_model, one.greater_is_better) == ("eval_loss", False)
    none = tu.training_arguments(job, n_train=40, n_eval=0)
    assert not none.load_best_model_at_end and none.eval_strategy == "no"
    steps = params(tmp_path, tmp_path / "x.csv", eval_strategy="steps", eval_steps=4, save_strategy="epoch")
    args = tu.training_arguments(Job(task=TR, params=steps, run_dir=tmp_path, train=None), 40, 10)
    assert (args.save_strategy, args.save_steps, args.eval_steps) == ("steps", 4, 4)
