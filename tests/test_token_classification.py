"""Token classification end to end through the supervisor with a tiny in-process BERT; tokens/tags in
every accepted form; length mismatches refused before queueing with the row number."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from engine.tasks import token_classification as tk
from tests.tiny import metric_values, refused, tiny_bert_for, write_csv

TK = get_task("token_classification")
PEOPLE = ["alice", "bob", "carol", "dave", "erin"]
PLACES = [["paris"], ["berlin"], ["rome"], ["new", "york"], ["buenos", "aires"]]
FILLER = "went to with met in the yesterday and saw lives near".split()


def ner_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentences of filler words, people (B-PER) and one- or two-word places (B-LOC I-LOC)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(4, 8)):
            r = rng.random()
            if r < 0.2:
                tokens.append(rng.choice(PEOPLE))
                tags.append("B-PER")
            elif r < 0.4:
                place = rng.choice(PLACES)
                tokens += place
                tags += ["B-LOC"] + ["I-LOC"] * (len(place) - 1)
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(tmp_path_factory, [" ".join(r["tokens"]) for r in ner_rows(300, seed=9)], init_std=0.1)


def params(model: Path, data: Path, **kw):
    base = {"base_model": str(model), "data_path": str(data), "epochs": 6, "batch_size": 16, "learning_rate": 3e-3}
    return validate_params(TK.params, {**base, "valid_fraction": 0.2, **kw})


@pytest.mark.slow
def test_token_classification_end_to_end(supervisor, tiny_bert, tmp_path):
    from transformers import AutoModelForTokenClassification, pipeline

    # CSV with space-joined words and tags written as JSON lists: the forms people export.
    rows = [{"words": " ".join(r["tokens"]), "labels": json.dumps(r["tags"])} for r in ner_rows(400, seed=1)]
    data = write_csv(tmp_path / "ner.csv", rows)
    run_id = supervisor.submit(TK, params(tiny_bert, data, column_mapping={"tokens": "words", "tags": "labels"}))
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]

    f1 = metric_values(supervisor.store, run_id, "eval_f1")
    assert len(f1) >= 6 and f1[-1] >= 0.9, f1
    names = supervisor.store.metric_names(run_id)
    for name in ("eval_precision", "eval_recall", "eval_accuracy", "eval_PER_f1", "eval_LOC_f1", "eval_LOC_recall"):
        assert name in names, name
    run_dir = Path(row["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_PER_f1"] >= 0.9 and metrics["eval_LOC_f1"] >= 0.85, metrics
    assert row["key_metric_name"] == "eval_f1" and row["key_metric"] >= 0.9

    model_dir = run_dir / "model"
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir))
    assert set(model.config.label2id) == {"B-LOC", "B-PER", "I-LOC", "O"}
    tagged = pipeline("token-classification", model=str(model_dir), device=-1)("alice went to rome")
    assert [t["entity"] for t in tagged if t["word"] in ("alice", "rome")] == ["B-PER", "B-LOC"]
    entities = predict_dir(run_dir, "bob met carol in new york")
    assert [(e["entity"], e["word"]) for e in entities] == [("PER", "bob"), ("PER", "carol"), ("LOC", "new york")]


# ---- forms, alignment, metrics (no training) ---------------------------------------------------


def test_tokens_and_tags_in_every_form():
    form = {"list": (["a", "b"], ["O", "B-X"]), "json": ('["a", "b"]', '["O", "B-X"]'),
            "python": ("['a', 'b']", "['O', 'B-X']"), "spaces": ("a b", "O B-X")}  # fmt: skip
    for tokens, tags in form.values():
        assert tk.parse_row(tokens, tags, 1) == (["a", "b"], ["O", "B-X"])


def test_tags_go_on_first_sub_word(tmp_path):
    from transformers import AutoTokenizer

    from tests.tiny import build_wordpiece_tokenizer

    build_wordpiece_tokenizer(tmp_path, ["alice went to rome"] * 20, vocab_size=60)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    (row,) = tk.encode([(["alice", "alicent"], ["B-PER", "B-LOC"])], tok, {"B-PER": 0, "B-LOC": 1}, 32)
    pieces = tok.convert_ids_to_tokens(row["input_ids"])
    assert pieces[:3] == ["[CLS]", "alice", "alice"] and pieces[-1] == "[SEP]" and len(pieces) >= 5  # alice + ##…
    assert row["labels"] == [-100, 0, 1] + [-100] * (len(pieces) - 3)  # special tokens and later sub-words ignored


def test_seqeval_metrics_overall_and_per_entity():
    from engine.text import encoders as xu

    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-LOC"]]
    m = xu.seqeval_metrics(true, pred)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3) and m["PER_f1"] == 1.0
    assert m["LOC_recall"] == 0.5 and m["accuracy"] == pytest.approx(5 / 6)
    plain = xu.seqeval_metrics([["PER", "PER", "O", "LOC"]], [["PER", "PER", "O", "O"]])  # tags without B-/I-
    assert plain["PER_f1"] == 1.0 and plain["LOC_f1"] == 0.0


# ---- bad inputs, refused before queueing -----------------------------------------------------------


def submit_error(supervisor, p) -> str:
    return refused(supervisor, TK, p)


def test_length_mismatch_reported_with_row(supervisor, tmp_path):
    rows = [{"tokens": " ".join(r["tokens"]), "tags": " ".join(r["tags"])} for r in ner_rows(12)]
    rows[8]["tags"] += " O"
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "a.csv", rows)))
    assert "Row 9" in msg and "tag(s) in `tags`" in msg and "one tag per word" in msg


def test_unreadable_missing_and_wrong_columns(supervisor, tmp_path):
    rows = [{"tokens": json.dumps(r["tokens"]), "tags": json.dumps(r["tags"])} for r in ner_rows(12)]
    rows[3]["tags"] = '["O", "B-PER"'
    msg = submit_error(supervisor, params(tmp_path, write_csv(tmp_path / "a.csv", rows)))
    assert "Row 4, column `tags`" in msg and "could not be read" in msg

    rows = ner_rows(12)
    rows[5]["tags"] = None
    data = tmp_path / "b.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    msg = submit_error(supervisor, params(tmp_path, data))
    assert "tags" in msg and "6" in msg

    data = write_csv(tmp_path / "c.csv", [{"sentence": "a b", "ner": "O O"}] * 4)
    msg = submit_error(supervisor, params(tmp_path, data))
    assert "No column for `tokens`" in msg and "No column for `tags`" in msg


def test_unseen_validation_tags_refused(supervisor, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in ner_rows(20)))
    valid = tmp_path / "valid.jsonl"
    valid.write_text(json.dumps({"tokens": ["acme"], "tags": ["B-ORG"]}) + "\n")
    msg = submit_error(supervisor, params(tmp_path, train, valid_path=str(valid)))
    assert "'B-ORG'" in msg and "row(s) 1" in msg
