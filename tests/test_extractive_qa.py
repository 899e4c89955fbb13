"""Extractive QA end to end through the supervisor with a tiny in-process BERT (long contexts split into
windows, unanswerable questions); the SQuAD metric; bad inputs refused before queueing."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pandas as pd
import pytest

from engine.errors import UserError
from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from engine.text import qa
from tests.tiny import COLORS, NAMES, metric_values, tiny_bert_for, write_csv

QA = get_task("extractive_qa")
FILLER = ["the sun was warm.", "it rained at noon.", "we went home late.", "the bus was slow.", "a cat sat on the mat."]


def qa_rows(n: int, seed: int = 0, unanswerable_every: int = 10) -> list[dict]:
    """A "<name> likes <colour>." sentence hidden among filler; every 10th question has no answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name, colour = rng.choice(NAMES), rng.choice(COLORS)
        parts, at = rng.sample(FILLER, 4), rng.randrange(5)
        no_answer = unanswerable_every and i % unanswerable_every == unanswerable_every - 1
        parts.insert(at, f"{name} sleeps." if no_answer else f"{name} likes {colour}.")
        context = " ".join(parts)
        answers = {"text": [], "answer_start": []}
        if not no_answer:
            answers = {"text": [colour], "answer_start": [context.index(f"{name} likes ") + len(f"{name} likes ")]}
        rows.append({"context": context, "question": f"what does {name} like?", "answers": json.dumps(answers)})
    return rows


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(tmp_path_factory, [r["context"] + " " + r["question"] for r in qa_rows(200, seed=7)])


def qa_params(model: Path, data: Path, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(data),
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "max_length": 32,
        "doc_stride": 8,
        "valid_fraction": 0.15,
        "allow_unanswerable": True,
    }
    return validate_params(QA.params, {**base, **kw})


@pytest.mark.slow
def test_extractive_qa_end_to_end(supervisor, tiny_bert, tmp_path):
    run_id = supervisor.submit(QA, qa_params(tiny_bert, write_csv(tmp_path / "train.csv", qa_rows(260))))
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]
    run_dir = Path(row["run_dir"])
    questions, windows = map(
        int, re.search(r"(\d+) training questions -> (\d+) windows", (run_dir / "train.log").read_text()).groups()
    )
    assert windows > questions, "long contexts are split into overlapping windows"

    f1 = metric_values(supervisor.store, run_id, "eval_f1")
    em = metric_values(supervisor.store, run_id, "eval_exact_match")
    assert len(f1) >= 3 and len(em) == len(f1)
    assert em[-1] >= 80 and f1[-1] >= 80, (em, f1)  # a first-word or random-span baseline scores ~0
    assert row["key_metric_name"] == "eval_f1" and row["key_metric"] == pytest.approx(f1[-1], rel=1e-3)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_no_answer_accuracy"] >= 80

    from transformers import AutoModelForQuestionAnswering

    assert AutoModelForQuestionAnswering.from_pretrained(str(run_dir / "model")).config.num_hidden_layers == 2
    context = "it rained at noon. the bus was slow. erin likes green. we went home late."
    answer = predict_dir(run_dir, {"question": "what does erin like?", "context": context})
    assert answer["answer"] == "green" and context[answer["start"] : answer["end"]] == "green"
    assert 0 < answer["score"] <= 1
    none = predict_dir(run_dir, [{"question": "what does bob like?", "context": "bob sleeps. it rained at noon."}])
    assert none[0]["answer"] == ""


def test_features_label_answer_tokens_in_every_window(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    rows = qa_rows(30, seed=3)
    df = pd.DataFrame(rows)
    answers = qa.answers_of(df, {})
    feats = qa.features(tok, list(df["question"]), list(df["context"]), answers, max_length=32, doc_stride=8)
    assert len(feats) > len(rows), "long contexts give several windows"
    for feat in feats:
        texts, _ = answers[feat["example"]]
        s, e = feat["start_positions"], feat["end_positions"]
        if s == 0:
            continue  # CLS: no answer, or the answer lies outside this window
        a, b = feat["offsets"][s][0], feat["offsets"][e][1]
        assert rows[feat["example"]]["context"][a:b] == texts[0]
    windows_with_answer = {f["example"] for f in feats if f["start_positions"] > 0}
    assert windows_with_answer == {i for i, (texts, _) in enumerate(answers) if texts}


def test_answer_forms_parse_alike():
    squad = pd.DataFrame(
        {
            "answers": [
                '{"text": ["red"], "answer_start": [4]}',
                "{'text': array(['red'], dtype=object), 'answer_start': array([4], dtype=int32)}",
                {"text": [], "answer_start": []},
            ]
        }
    )
    plain = pd.DataFrame({"answer_text": ["red", "red", None], "answer_start": [4, 4.0, None]})
    assert qa.answers_of(squad, {}) == qa.answers_of(plain, {}) == [(["red"], [4]), (["red"], [4]), ([], [])]


def test_squad_metric():
    assert qa.normalize_answer("The  Big, red Ball!") == "big red ball"
    assert qa.squad_metrics(["the red ball"], [["Red ball"]]) == {"exact_match": 100.0, "f1": 100.0}
    partial = qa.squad_metrics(["red ball today"], [["a red ball", "blue"]])
    assert partial["exact_match"] == 0 and partial["f1"] == pytest.approx(80.0)
    v2 = qa.squad_metrics(["", "x", "red"], [[], [], ["red"]])
    assert v2["exact_match"] == pytest.approx(200 / 3) and v2["no_answer_accuracy"] == 50.0


def test_answer_not_in_context_refused_with_row_and_column(supervisor, tiny_bert, tmp_path):
    rows = [{"passage": r["context"], "question": r["question"], "gold": r["answers"]} for r in qa_rows(20)]
    ok = json.loads(rows[1]["gold"])
    rows[1]["gold"] = json.dumps({"text": ok["text"], "answer_start": [ok["answer_start"][0] + 2]})
    rows[3]["gold"] = json.dumps({"text": ["purple"], "answer_start": [0]})
    rows[4]["gold"] = "not json"
    rows[5]["gold"] = json.dumps({"text": [], "answer_start": []})
    params = qa_params(
        tiny_bert,
        write_csv(tmp_path / "d.csv", rows),
        allow_unanswerable=False,
        column_mapping={"context": "passage", "answers": "gold"},
    )
    with pytest.raises(UserError) as err:
        supervisor.submit(QA, params)
    problems = err.value.problems
    assert any("row 2" in p and "`gold`" in p and "`passage`" in p and "fix answer_start" in p for p in problems)
    assert any("row 4" in p and "'purple'" in p and "does not occur" in p for p in problems), problems
    assert any("Row 5" in p and "`gold`" in p and "SQuAD-form" in p for p in problems), problems
    assert any("row 6" in p and "no answer" in p and "allow_unanswerable" in p for p in problems), problems
    assert supervisor.store.list_runs() == []


def test_plain_answer_columns_checked(tiny_bert, tmp_path):
    from engine.data.splits import check_data

    rows = [{"context": "bob likes red.", "question": "what does bob like?", "answer_text": "red", "answer_start": 10}]
    rows.append(
        {"context": "amy likes tea.", "question": "what does amy like?", "answer_text": "tea", "answer_start": 3}
    )
    rows.append({"context": "", "question": "what does amy like?", "answer_text": "tea", "answer_start": 3})
    problems = check_data(QA, qa_params(tiny_bert, write_csv(tmp_path / "d.csv", rows)))
    assert problems and "`context`" in problems[0] and "row(s): 3" in problems[0], problems
    rows.pop()
    problems = check_data(QA, qa_params(tiny_bert, write_csv(tmp_path / "d.csv", rows)))
    assert len(problems) == 1 and "row 2" in problems[0] and "starts at 10" in problems[0], problems


def test_missing_answer_columns_refused(tiny_bert, tmp_path):
    from engine.data.splits import check_data

    rows = [{"context": r["context"], "question": r["question"], "answer_text": "red"} for r in qa_rows(5)]
    problems = check_data(QA, qa_params(tiny_bert, write_csv(tmp_path / "d.csv", rows)))
    assert len(problems) == 1 and "`answer_start` is missing" in problems[0]
