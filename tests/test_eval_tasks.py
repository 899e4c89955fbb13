"""Each task's evaluation on a tiny model: its metrics and a predictions table, worst errors first (the eval job's
code run in-process, so these stay quick; `trainpad eval` through the job's own process is in test_eval.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.errors import UserError
from engine.eval.job import read_rows, run_eval
from engine.eval.submit import file_hash
from tests.tiny import build_tiny_bert, write_csv

TOPICS = ["sports", "tech", "food"]
TEXTS = ["the striker scored a goal", "my laptop runs new software", "the chef made soup", "a match at the stadium"]
LABELS = ["sports", "tech", "food", "sports"]


def evaluate(tmp_path: Path, task: str, model_dir: Path, data: Path, **extra) -> dict:
    """The eval job's work, in this process: returns its result (metrics, rows file...)."""
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    spec = {"task": task, "model": str(model_dir), "model_dir": str(model_dir), "data": str(data)}
    spec |= {"data_hash": file_hash(data), "column_mapping": {}, "batch_size": 2, **extra}
    rf.write_json(job_dir / "job.json", spec)
    return run_eval(job_dir)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A tiny BERT with an (untrained) head for the three topics, saved as a run's model is."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = build_tiny_bert(tmp_path_factory.mktemp("models") / "bert", TEXTS * 20)
    labels = dict(enumerate(TOPICS))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(out), num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(out)).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_regressor(tmp_path_factory) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = build_tiny_bert(tmp_path_factory.mktemp("models") / "bert-reg", TEXTS * 20)
    AutoModelForSequenceClassification.from_pretrained(str(out), num_labels=1).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(out)).save_pretrained(str(out))
    return out


def test_text_classification_report_confusion_matrix_and_wrong_rows_first(tiny_classifier, tmp_path):
    data = write_csv(tmp_path / "test.csv", [{"text": t, "label": y} for t, y in zip(TEXTS, LABELS, strict=True)])
    result = evaluate(tmp_path, "text_classification", tiny_classifier, data)
    m = result["metrics"]
    assert result["n_examples"] == 4 and result["key_metric"] == "f1_macro"
    assert 0 <= m["accuracy"] <= 1 and {"f1_macro", "f1_micro", "f1_weighted"} <= set(m)
    assert set(m["confusion_matrix"]["labels"]) >= set(LABELS)
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 4
    assert set(m["per_class"]) >= {"sports", "tech", "food"} and "precision" in m["per_class"]["tech"]
    rows = read_rows(result["predictions_path"])
    assert len(rows) == 4 and {"input", "reference", "prediction", "correct", "confidence"} <= set(rows[0])
    assert [r["correct"] for r in rows] == sorted(r["correct"] for r in rows), "wrong predictions first"
    assert m["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 4)
    evaluation = result["evaluation"]
    assert (
        evaluation["task"] == "text_classification" and json.loads(evaluation["metrics"])["accuracy"] == m["accuracy"]
    )


def test_labels_never_seen_in_training_are_named(tiny_classifier, tmp_path):
    data = write_csv(
        tmp_path / "test.csv", [{"text": "a rainy day", "label": "weather"}, {"text": TEXTS[0], "label": "sports"}]
    )
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "text_classification", tiny_classifier, data)
    assert "label(s) 'weather' that the model never saw in training (row(s) 1)" in str(err.value)
    assert "'food', 'sports', 'tech'" in str(err.value)
    assert not (tmp_path / "job" / "predictions.jsonl").exists()


def test_text_regression_errors_largest_first(tiny_regressor, tmp_path):
    data = write_csv(tmp_path / "test.csv", [{"text": t, "target": float(i)} for i, t in enumerate(TEXTS)])
    result = evaluate(tmp_path, "text_regression", tiny_regressor, data)
    assert {"mse", "rmse", "mae", "r2"} <= set(result["metrics"]) and result["key_metric"] == "r2"
    rows = read_rows(result["predictions_path"])
    errors = [r["abs_error"] for r in rows]
    assert errors == sorted(errors, reverse=True) and rows[0]["reference"] in (0.0, 3.0)

    words = write_csv(tmp_path / "words.csv", [{"text": "x", "target": "high"}])
    with pytest.raises(UserError, match="column `target` must hold numbers"):
        evaluate(tmp_path, "text_regression", tiny_regressor, words)


@pytest.mark.slow
def test_tabular_run_classification_report_and_unseen_classes(supervisor, tmp_path):
    import pandas as pd

    from engine.params import validate_params
    from engine.task import get_task
    from tests.test_tabular import customers

    table = customers(240)
    train = tmp_path / "train.csv"
    table.iloc[:200].to_csv(train, index=False)
    test = tmp_path / "test.csv"
    table.iloc[200:].drop(columns="customer_id").to_csv(test, index=False)
    task = get_task("tabular")
    params = {"data_path": str(train), "target_columns": "label", "time_limit": 8, "num_trials": 3}
    params = validate_params(task.params, params)
    row = supervisor.wait(supervisor.submit(task, params), timeout=180)
    assert row["status"] == "succeeded", row["error"]
    model_dir = Path(row["run_dir"]) / "model"

    result = evaluate(tmp_path, "tabular", model_dir, test)
    m = result["metrics"]
    assert result["n_examples"] == 40 and m["accuracy"] > 0.6 and m["confusion_matrix"]["labels"] == ["churn", "stay"]
    rows = read_rows(result["predictions_path"])
    assert len(rows) == 40 and [r["correct"] for r in rows] == sorted(r["correct"] for r in rows)
    assert "city" in rows[0]["input"] and rows[0]["reference"] in ("churn", "stay")

    odd = pd.read_csv(test)
    odd.loc[0, "label"] = "moved away"
    odd.to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(UserError, match="class\\(s\\) 'moved away' that the model never saw"):
        evaluate(tmp_path, "tabular", model_dir, tmp_path / "odd.csv")
    odd.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(UserError, match="no `label` column"):
        evaluate(tmp_path, "tabular", model_dir, tmp_path / "nolabel.csv")


def test_seq2seq_rouge_bleu_chrf_lowest_chrf_first(tmp_path):
    from tests.tiny import build_tiny_t5

    pairs = [("translate: red", "rot"), ("translate: blue", "blau"), ("translate: green", "grün")]
    model_dir = build_tiny_t5(tmp_path / "t5", [t for pair in pairs for t in pair] * 10)
    data = write_csv(tmp_path / "test.csv", [{"text": t, "target": y} for t, y in pairs])
    result = evaluate(tmp_path, "seq2seq", model_dir, data, max_new_tokens=4)
    assert {"rouge1", "rougeL", "bleu", "chrf", "exact_match"} <= set(result["metrics"])
    assert result["key_metric"] == "rougeL"
    rows = read_rows(result["predictions_path"])
    assert len(rows) == 3 and [r["chrf"] for r in rows] == sorted(r["chrf"] for r in rows)
    assert {"input", "reference", "prediction"} <= set(rows[0])


def test_llm_pretrain_held_out_text_perplexity(tiny_llama, tmp_path):
    from tests.tiny import text_rows, write_jsonl

    data = write_jsonl(tmp_path / "held_out.jsonl", text_rows(6, seed=5))
    result = evaluate(tmp_path, "llm_pretrain", tiny_llama, data)
    assert result["key_metric"] == "perplexity" and 1 < result["metrics"]["perplexity"] < 1000
    rows = read_rows(result["predictions_path"])
    assert len(rows) == 6 and all(r["loss"] > 0 for r in rows) and "prediction" not in rows[0]
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True), "the worst-predicted text first"
