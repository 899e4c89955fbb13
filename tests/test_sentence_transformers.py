"""Sentence transformers end to end through the supervisor in all five modes with a tiny in-process BERT
(wrapped as Transformer + mean pooling); bad inputs refused before queueing."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from tests.tiny import NAMES, metric_values, tiny_bert_for, write_csv

ST = get_task("sentence_transformers")
# Colour classes of synonyms: the model must learn that "crimson" is close to "red" (no shared words).
CLASSES = [
    ("red", "crimson", "scarlet"),
    ("blue", "azure", "navy"),
    ("green", "emerald", "olive"),
    ("yellow", "golden", "amber"),
    ("black", "ebony", "coal"),
    ("white", "ivory", "snow"),
]

# pair/qa documents name people by nickname, so retrieval must learn names too (no word shared with the query).
NICKS = dict(zip(NAMES, ["ace", "buzz", "cee", "dee", "em", "fox", "gigi", "hex"], strict=True))


def st_rows(mode: str, n: int, seed: int = 0) -> list[dict]:
    """Learnable synthetic rows for ``mode``: texts are similar when their colours are synonyms."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.sample(range(len(CLASSES)), 2)
        n1, n2 = rng.sample(NAMES, 2)
        wa, wa2 = rng.sample(CLASSES[a], 2)
        wb = rng.choice(CLASSES[b])
        if mode == "pair_score":
            same = i % 2 == 0
            rows.append(
                {
                    "sentence1": f"{n1} wears {wa}",
                    "sentence2": f"{n2} wears {wa2 if same else wb}",
                    "score": 1.0 if same else 0.0,
                }
            )
        elif mode == "triplet":
            rows.append(
                {
                    "anchor": f"{n1} wears {wa}",
                    "positive": f"the {wa2} coat of {n2}",
                    "negative": f"the {wb} coat of {n2}",
                }
            )
        elif mode == "pair_class":
            label = ["same", "different", "none"][i % 3]
            hyp = {"same": f"{n2} wears {wa2}", "different": f"{n2} wears {wb}", "none": f"{n2} sleeps at home"}[label]
            rows.append({"premise": f"{n1} wears {wa}", "hypothesis": hyp, "label": label})
        elif mode == "pair":
            rows.append({"anchor": f"{n1} wears {wa}", "positive": f"the {wa2} coat of {NICKS[n1]}"})
        else:
            rows.append({"query": f"is {n1} in {wa}?", "answer": f"{NICKS[n1]} wears {wa2} today"})
    return rows


# mode -> (metric that must beat chance, threshold, chance level, epochs)
CHECKS = {
    "pair_score": ("eval_spearman_cosine", 0.6, 0.0, 3),
    "triplet": ("eval_cosine_accuracy", 0.75, 0.5, 3),
    "pair_class": ("eval_accuracy", 0.6, 1 / 3, 3),
    "pair": ("eval_cosine_ndcg@10", 0.6, 0.18, 2),  # chance: one relevant document ranked at random among 24
    "qa": ("eval_cosine_ndcg@10", 0.6, 0.18, 2),
}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(
        tmp_path_factory, [str(v) for mode in CHECKS for r in st_rows(mode, 60, seed=7) for v in r.values()]
    )


def st_params(model: Path, train: Path, valid: Path | None = None, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(train),
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "max_length": 16,
    }
    if valid:
        base["valid_path"] = str(valid)
    return validate_params(ST.params, {**base, **kw})


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(CHECKS))
def test_sentence_transformers_end_to_end(supervisor, tiny_bert, tmp_path, mode):
    train = write_csv(tmp_path / "train.csv", st_rows(mode, 160))
    valid = write_csv(tmp_path / "valid.csv", st_rows(mode, 24, seed=1))
    name, threshold, chance, epochs = CHECKS[mode]
    # Early stopping keeps the best model: the final evaluation scores it, even if a late epoch overshot.
    params = st_params(tiny_bert, train, valid, mode=mode, epochs=epochs, early_stopping_patience=3)
    run_id = supervisor.submit(ST, params)
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]

    values = metric_values(supervisor.store, run_id, name)
    scores = metric_values(supervisor.store, run_id, "eval_score")
    assert len(values) >= 3 and values == scores, "the mode's main metric is logged per eval, also as eval_score"
    assert values[-1] >= threshold > chance, (mode, values)
    assert row["key_metric_name"] == "eval_score" and row["key_metric"] == pytest.approx(values[-1], rel=1e-3)

    from sentence_transformers import SentenceTransformer

    run_dir = Path(row["run_dir"])
    assert json.loads((run_dir / "model" / "trainpad.json").read_text())["mode"] == mode
    assert SentenceTransformer(str(run_dir / "model"), device="cpu").encode(["bob wears red"]).shape == (1, 32)
    ranked = predict_dir(run_dir, "alice wears red\nbob wears navy\nbob wears crimson")
    sims = [r["similarity"] for r in ranked["ranking"]]
    assert len(sims) == 2 and sims == sorted(sims, reverse=True)
    if mode == "triplet":  # learnt synonyms: crimson is closer to red than navy is
        assert ranked["ranking"][0]["text"] == "bob wears crimson", ranked["ranking"]
    matrix = predict_dir(run_dir, ["alice wears red", "bob wears crimson"])
    assert matrix["dimension"] == 32 and len(matrix["similarity"]) == 2


def test_mode_columns_missing_refused(supervisor, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "d.csv", [{"sentence1": "a", "sentence2": "b", "similarity": 0.5}] * 6)
    with pytest.raises(UserError) as err:
        supervisor.submit(ST, st_params(tiny_bert, data, mode="pair_score"))
    message = str(err.value)
    assert "pair_score" in message and "missing: score" in message and "column_mapping" in message
    assert supervisor.store.list_runs() == []


def test_blank_cells_and_bad_scores_named(supervisor, tiny_bert, tmp_path):
    rows = [{"s1": r["sentence1"], "s2": r["sentence2"], "sim": r["score"]} for r in st_rows("pair_score", 12)]
    rows[3]["s2"] = " "
    mapping = {"sentence1": "s1", "sentence2": "s2", "score": "sim"}
    with pytest.raises(UserError) as err:
        supervisor.submit(ST, st_params(tiny_bert, write_csv(tmp_path / "d.csv", rows), column_mapping=mapping))
    assert "`s2`" in str(err.value) and "row(s): 4" in str(err.value)
    rows[3]["s2"] = "fine"
    rows[5]["sim"] = "high"
    with pytest.raises(UserError) as err:
        supervisor.submit(ST, st_params(tiny_bert, write_csv(tmp_path / "d.csv", rows), column_mapping=mapping))
    message = str(err.value)
    assert "`sim`" in message and re.search(r"\b6\b", message) and "'high'" in message, message
    assert supervisor.store.list_runs() == []


def test_unseen_validation_label_refused(tiny_bert, tmp_path):
    from engine.data.splits import check_data

    train = write_csv(tmp_path / "t.csv", st_rows("pair_class", 12))
    valid_rows = st_rows("pair_class", 4, seed=1)
    valid_rows[2]["label"] = "maybe"
    valid = write_csv(tmp_path / "v.csv", valid_rows)
    problems = check_data(ST, st_params(tiny_bert, train, valid, mode="pair_class"))
    assert len(problems) == 1 and "'maybe'" in problems[0] and "row(s) 3" in problems[0] and "`label`" in problems[0]
