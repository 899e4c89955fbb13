"""Text classification end to end through the supervisor with a tiny in-process BERT; label handling and
bad inputs refused before queueing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from engine.tasks import text_classification as tc
from tests.tiny import metric_values, refused, tiny_bert_for, write_csv

TC = get_task("text_classification")
TOPICS = {
    "sports": ["goal", "match", "team", "coach", "league", "striker", "stadium", "season", "referee", "tournament"],
    "tech": ["laptop", "software", "chip", "server", "app", "browser", "robot", "cloud", "battery", "code"],
    "food": ["pizza", "recipe", "soup", "bakery", "chef", "salad", "pasta", "dessert", "kitchen", "cheese"],
}
FILLER = "the a today we saw really new about with my friend said was great yesterday and this that people talked week city very old big small".split()


def topic_rows(n: int, seed: int = 0, noise: float = 0.05) -> list[dict]:
    """Keyword-driven 3-class texts: filler words plus one or two words of the topic.

    ``noise``: share of rows whose label is redrawn uniformly at random (so about 2/3 of those are wrong).
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(TOPICS))
        words = [rng.choice(FILLER) for _ in range(rng.randint(5, 10))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[label]))
        if rng.random() < noise:
            label = rng.choice(list(TOPICS))
        rows.append({"text": " ".join(words), "target": label})
    return rows


def multi_label_rows(n: int, seed: int = 0) -> list[dict]:
    """Texts about one or two topics; labels as a `|`-delimited string (e.g. ``food|tech``)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = sorted(rng.sample(list(TOPICS), rng.choice([1, 1, 2])))
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))]
        for label in labels:
            for word in rng.sample(TOPICS[label], 2):
                words.insert(rng.randrange(len(words) + 1), word)
        rows.append({"sentence": " ".join(words), "topics": "|".join(labels)})
    return rows


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(tmp_path_factory, [r["text"] for r in topic_rows(400, seed=99)], init_std=0.1)


def params(model: Path, data: Path, **kw):
    base = {"base_model": str(model), "data_path": str(data), "epochs": 5, "batch_size": 16, "learning_rate": 3e-3}
    return validate_params(TC.params, {**base, **kw})


@pytest.mark.slow
def test_multiclass_end_to_end(supervisor, tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    data = write_csv(tmp_path / "train.csv", topic_rows(600, seed=1))
    run_id = supervisor.submit(TC, params(tiny_bert, data, valid_fraction=0.2, epochs=8))
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]

    acc = metric_values(supervisor.store, run_id, "eval_accuracy")
    assert len(acc) >= 5, "one evaluation per epoch plus the final one"
    assert acc[-1] >= 0.9, acc  # chance is 1/3; ~3% of the labels are wrong
    assert row["key_metric_name"] == "eval_f1_macro" and row["key_metric"] >= 0.9
    run_dir = Path(row["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("eval_f1_micro", "eval_f1_weighted", "eval_precision_macro", "eval_recall_weighted"):
        assert 0.85 <= metrics[name] <= 1.0 and name in supervisor.store.metric_names(run_id)
    assert "auc" not in " ".join(metrics), "AUC is for binary tasks only"

    model_dir = run_dir / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert set(config["id2label"].values()) == {"sports", "tech", "food"} and config["label2id"]["food"] == 0
    card = (model_dir / "README.md").read_text()
    assert "eval_accuracy" in card and "text_classification" in card

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    assert model.config.problem_type == "single_label_classification"
    pipe = pipeline("text-classification", model=str(model_dir), device=-1)
    assert pipe("we saw the striker at the stadium")[0]["label"] == "sports"
    out = predict_dir(run_dir, ["my laptop and the new app", "the chef made soup"])
    assert [o["label"] for o in out] == ["tech", "food"]
    assert abs(sum(out[0]["scores"].values()) - 1) < 1e-3 and out[0]["scores"]["tech"] > 0.5
    assert predict_dir(run_dir, "the coach of the team")["label"] == "sports"


@pytest.mark.slow
def test_multi_label_delimited_string(supervisor, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "ml.csv", multi_label_rows(400, seed=3))
    p = params(
        tiny_bert,
        data,
        label_separator="|",
        column_mapping={"text": "sentence", "target": "topics"},
        epochs=10,
        batch_size=8,
    )
    run_id = supervisor.submit(TC, p)
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]

    metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
    assert metrics["eval_f1_micro"] >= 0.85 and metrics["eval_f1_macro"] >= 0.85, metrics
    assert metrics["eval_subset_accuracy"] >= 0.7, metrics  # all labels of a row right; chance is ~1/6
    model_dir = Path(row["run_dir"]) / "model"
    assert json.loads((model_dir / "config.json").read_text())["problem_type"] == "multi_label_classification"
    out = predict_dir(Path(row["run_dir"]), "the chef fixed the laptop")
    assert set(out["labels"]) == {"food", "tech"}, out


def test_same_seed_same_run_and_seed_changes_it(supervisor, tiny_bert, tmp_path):
    """A run is reproducible: the new classification head is seeded too (not only the trainer's shuffling)."""
    data = write_csv(tmp_path / "train.csv", topic_rows(120, seed=4))
    losses = []
    for seed in (7, 7, 8):
        run_id = supervisor.submit(TC, params(tiny_bert, data, epochs=1, seed=seed, eval_strategy="no"))
        row = supervisor.wait(run_id, timeout=200)
        assert row["status"] == "succeeded", row["error"]
        losses.append(json.loads((Path(row["run_dir"]) / "metrics.json").read_text())["train_loss"])
    assert losses[0] == losses[1] and losses[2] != losses[0], losses


# ---- label handling (no training) ---------------------------------------------------------


def test_labels_of_any_type_become_stable_strings():
    from engine.data import cells

    assert [cells.label_name(v) for v in (1, 1.0, "1", " 1 ", True, False, "pos")] == [
        "1", "1", "1", "1", "True", "False", "pos",
    ]  # fmt: skip
    id2label, label2id = cells.label_maps(["10", "2", "b", "A", "2"])
    assert id2label == {0: "2", 1: "10", 2: "A", 3: "b"} and label2id["b"] == 3


def test_multi_label_forms(tmp_path):
    p = params(tmp_path, tmp_path / "x.csv")
    lists = pd.Series([["a", "b"], '["c"]', "['a', 'c']"])
    assert tc.is_multi_label(lists, p)
    assert tc.all_labels(lists, True, p) == ([["a", "b"], ["c"], ["a", "c"]], [])
    assert not tc.is_multi_label(pd.Series(["a", "b,c"]), p)
    sep = params(tmp_path, tmp_path / "x.csv", label_separator=",")
    assert tc.all_labels(pd.Series(["a, b", "c"]), True, sep) == ([["a", "b"], ["c"]], [])


def test_binary_metrics_include_auc():
    from engine.train import metrics as metrics_lib

    m = metrics_lib.classification_metrics([0, 1, 1, 0], [[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
    assert m["accuracy"] == 0.75 and m["auc"] == 1.0 and 0 < m["f1_macro"] < 1
    ml = metrics_lib.multilabel_metrics([[1, 0], [1, 1]], [[5.0, -5.0], [5.0, -5.0]])
    assert ml["subset_accuracy"] == 0.5 and ml["f1_micro"] == pytest.approx(0.8)


# ---- bad inputs, refused before queueing -----------------------------------------------------


def submit_error(supervisor, p) -> str:
    return refused(supervisor, TC, p)


def test_wrong_column_names_refused(supervisor, tmp_path):
    data = write_csv(tmp_path / "d.csv", [{"review": "good", "stars": 1}, {"review": "bad", "stars": 0}] * 5)
    msg = submit_error(supervisor, params(tmp_path, data))
    assert "No column for `text`" in msg and "No column for `target`" in msg and "review, stars" in msg
    msg = submit_error(supervisor, params(tmp_path, data, column_mapping={"text": "review", "target": "grade"}))
    assert "`grade`" in msg and "not in the data" in msg


def test_missing_and_unseen_labels_refused(supervisor, tmp_path):
    rows = topic_rows(20)
    rows[4]["target"] = None
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "a.csv", rows)))
    assert "target" in msg and "5" in msg

    rows = topic_rows(20) + [{"text": "no topic", "target": "[]"}]
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "b.csv", rows)))
    assert "Row 21, column `target`: no label" in msg

    valid = write_csv(tmp_path / "v.csv", [{"text": "x", "target": "sports"}, {"text": "y", "target": "music"}])
    msg = submit_error(
        supervisor, params(tmp_path, write_csv(tmp_path / "c.csv", topic_rows(30)), valid_path=str(valid))
    )
    assert "'music'" in msg and "row(s) 2" in msg


def test_single_class_and_scores_refused(supervisor, tmp_path):
    one = write_csv(tmp_path / "one.csv", [{"text": f"t{i}", "target": "spam"} for i in range(10)])
    assert "single class" in submit_error(supervisor, params(tmp_path, one))
    scores = write_csv(tmp_path / "s.csv", [{"text": f"t{i}", "target": i * 0.37} for i in range(120)])
    assert "text_regression" in submit_error(supervisor, params(tmp_path, scores))


def test_equal_numbers_are_one_class(supervisor, tmp_path):
    """`1`, `1.0` and `"1.0"` are one class, whatever the file type made of them; `"01"` stays a code (text)."""
    from engine.data import cells

    assert [cells.label_name(v) for v in ("1.0", "1.00", "+1", "1e0", 1.0, "0.50", 0.5, "-0")] == [
        "1", "1", "1", "1", "1", "0.5", "0.5", "0",
    ]  # fmt: skip
    assert [cells.label_name(v) for v in ("01", "007", "nan", "12345678901234567890")] == [
        "01", "007", "nan", "12345678901234567890",
    ]  # fmt: skip
    p = params(tmp_path, tmp_path / "x.csv")
    mixed = pd.Series([1, "1.0", 0.0, "0", "01"])  # a CSV column read as text, or JSON with ints and floats
    assert tc.all_labels(mixed, False, p) == ([["1"], ["1"], ["0"], ["0"], ["01"]], [])
    sep = params(tmp_path, tmp_path / "x.csv", label_separator="|")
    assert tc.all_labels(pd.Series(["1.0|2", "2.0"]), True, sep) == ([["1", "2"], ["2"]], [])

    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps({"text": f"t{i}", "target": [1, 1.0, "1.0"][i % 3]}) + "\n" for i in range(9)))
    assert "single class (1)" in submit_error(supervisor, params(tmp_path, data))


def test_early_stopping_with_step_checkpoints_and_epoch_evaluation(supervisor, tiny_bert, tmp_path):
    """save_strategy steps + eval_strategy epoch + early stopping: checkpoints follow the evaluations (transformers
    refuses a mismatch when it keeps the best model) and the log says so."""
    data = write_csv(tmp_path / "train.csv", topic_rows(120, seed=5))
    p = params(
        tiny_bert, data, epochs=2, valid_fraction=0.2, save_strategy="steps", save_steps=2, eval_strategy="epoch"
    )
    assert p.early_stopping_patience > 0, "the encoder default keeps the best model"
    run_id = supervisor.submit(TC, p)
    row = supervisor.wait(run_id, timeout=200)
    assert row["status"] == "succeeded", row["error"]
    run_dir = Path(row["run_dir"])
    assert (
        "checkpoints are saved every epoch, with the evaluations (save_strategy was steps)"
        in (run_dir / "train.log").read_text()
    )
    assert len(metric_values(supervisor.store, run_id, "eval_f1_macro")) >= 3, "two epochs, then the final one"
    steps = sorted(int(c.name.split("-")[1]) for c in (run_dir / "checkpoints").iterdir())
    assert steps == [6, 12], "one checkpoint per epoch (96 rows / 16 per batch), none every 2 steps"
