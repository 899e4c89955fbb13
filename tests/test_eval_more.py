"""Evaluation of the text and LLM tasks beyond classification and SFT: token classification, extractive QA, sentence
embeddings, DPO/ORPO/reward preferences, and KTO/GRPO/RLOO/distillation answers. Each runs the eval job's code
in-process on an untrained tiny model; a "perfect" case is built from the model's own predictions (gold = what it
says), so a metric of 1.0 (or 100) shows the scoring reads the right columns the right way round."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.errors import UserError
from engine.eval.job import read_rows, run_eval
from engine.eval.submit import file_hash
from tests.tiny import build_tiny_bert, write_csv, write_jsonl
from tests.tiny_llm import preference_rows

NER = [
    (["alice", "met", "bob", "in", "paris"], ["B-PER", "O", "B-PER", "O", "O"]),
    (["carol", "dave", "likes", "red"], ["B-PER", "I-PER", "O", "O"]),
    (["the", "chef", "erin", "made", "soup"], ["O", "O", "B-PER", "O", "O"]),
    (["frank", "and", "grace", "went", "home"], ["B-PER", "O", "B-PER", "O", "O"]),
]
TAGS = ["O", "B-PER", "I-PER"]
CONTEXTS = [
    ("alice lives in paris and likes the colour red.", "where does alice live?", "paris"),
    ("bob drives a green car to work every day.", "what colour is the car?", "green"),
    ("carol reads books about history at night.", "what does carol read?", "books about history"),
]
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "the chef made soup", "my laptop runs software"]


def evaluate(tmp_path: Path, task: str, model_dir: Path, data: Path, **extra) -> dict:
    """The eval job's work, in this process (as `trainpad eval` runs it in its job's process)."""
    job_dir = tmp_path / f"job-{len(list(tmp_path.glob('job-*')))}"
    job_dir.mkdir()
    spec = {"task": task, "model": str(model_dir), "model_dir": str(model_dir), "data": str(data)}
    spec |= {"data_hash": file_hash(data), "column_mapping": {}, "batch_size": 2, **extra}
    rf.write_json(job_dir / "job.json", spec)
    return run_eval(job_dir)


def rows_of(result: dict) -> list[dict]:
    return read_rows(result["predictions_path"])


# ---- tiny models ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    texts = [" ".join(w) for w, _ in NER] + [c + " " + q for c, q, _ in CONTEXTS] + SENTENCES
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "bert", texts * 5, init_std=0.1)


def _with_head(bert: Path, out: Path, cls_name: str, **config) -> Path:
    import transformers

    model = getattr(transformers, cls_name).from_pretrained(str(bert), **config)
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(bert)).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def tagger(bert, tmp_path_factory) -> Path:
    ids = dict(enumerate(TAGS))
    out = tmp_path_factory.mktemp("models") / "tagger"
    return _with_head(
        bert,
        out,
        "AutoModelForTokenClassification",
        num_labels=3,
        id2label=ids,
        label2id={v: k for k, v in ids.items()},
    )


@pytest.fixture(scope="module")
def reader(bert, tmp_path_factory) -> Path:
    return _with_head(bert, tmp_path_factory.mktemp("models") / "reader", "AutoModelForQuestionAnswering")


@pytest.fixture(scope="module")
def reward_model(tiny_llama, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    pad = AutoTokenizer.from_pretrained(str(tiny_llama)).pad_token_id
    out = tmp_path_factory.mktemp("models") / "reward"
    return _with_head(tiny_llama, out, "AutoModelForSequenceClassification", num_labels=1, pad_token_id=pad)


# ---- token classification -------------------------------------------------------------------------------------------


def ner_file(path: Path, tags: list[list[str]] | None = None) -> Path:
    rows = [{"tokens": w, "tags": t} for (w, _), t in zip(NER, tags or [t for _, t in NER], strict=True)]
    return write_jsonl(path, rows)


def test_token_classification_entity_f1_per_type_and_wrong_rows_first(tagger, tmp_path):
    result = evaluate(tmp_path, "token_classification", tagger, ner_file(tmp_path / "test.jsonl"))
    m, rows = result["metrics"], rows_of(result)
    assert result["key_metric"] == "f1" and result["n_examples"] == 4
    assert all(0 <= m[k] <= 1 for k in ("precision", "recall", "f1", "token_accuracy"))
    assert m["per_entity"]["PER"]["support"] == 6, "6 gold PER entities"
    assert [r["wrong_entities"] for r in rows] == sorted((r["wrong_entities"] for r in rows), reverse=True)
    assert {"input", "reference", "prediction", "predicted_tags", "token_accuracy"} <= set(rows[0])
    total = sum(len(w) for w, _ in NER)
    right = sum(r["token_accuracy"] * len(r["input"].split()) for r in rows)
    assert m["token_accuracy"] == pytest.approx(right / total)

    by_row = {r["row"]: r["predicted_tags"].split() for r in rows}  # gold = the model's own tags: a perfect score
    assert any(t != "O" for tags in by_row.values() for t in tags), "the untrained head predicts some entities"
    perfect = evaluate(
        tmp_path, "token_classification", tagger, ner_file(tmp_path / "own.jsonl", [by_row[i + 1] for i in range(4)])
    )
    assert perfect["metrics"]["f1"] == 1.0 and perfect["metrics"]["token_accuracy"] == 1.0
    assert all(r["wrong_entities"] == 0 and r["correct"] == 1.0 for r in rows_of(perfect))


def test_token_classification_unknown_tag_named(tagger, tmp_path):
    tags = [["B-LOC" if t == "B-PER" else t for t in tags] for _, tags in NER]
    with pytest.raises(UserError, match="'B-LOC'.*never saw"):
        evaluate(tmp_path, "token_classification", tagger, ner_file(tmp_path / "test.jsonl", tags))


# ---- extractive QA --------------------------------------------------------------------------------------------------


def test_extractive_qa_exact_match_f1_and_worst_first(reader, tmp_path):
    rows = [{"context": c, "question": q, "answer_text": a} for c, q, a in CONTEXTS]
    result = evaluate(tmp_path, "extractive_qa", reader, write_csv(tmp_path / "test.csv", rows))
    m, out = result["metrics"], rows_of(result)
    assert result["key_metric"] == "f1" and 0 <= m["exact_match"] <= m["f1"] <= 100
    assert [r["f1"] for r in out] == sorted(r["f1"] for r in out), "lowest F1 first"
    assert m["f1"] == pytest.approx(sum(r["f1"] for r in out) / 3)
    spans = {r["row"]: r["prediction"] for r in out}
    assert all(spans[i + 1] in c for i, (c, _, _) in enumerate(CONTEXTS)), "answers are spans of their context"

    own = [{"context": c, "question": q, "answer_text": spans[i + 1]} for i, (c, q, _) in enumerate(CONTEXTS)]
    perfect = evaluate(tmp_path, "extractive_qa", reader, write_jsonl(tmp_path / "own.jsonl", own))
    assert perfect["metrics"] == {"exact_match": 100.0, "f1": 100.0}


def test_extractive_qa_without_answers_says_what_is_missing(reader, tmp_path):
    rows = [{"context": c, "question": q} for c, q, _ in CONTEXTS]
    with pytest.raises(UserError, match="needs the gold answers.*`answers` column"):
        evaluate(tmp_path, "extractive_qa", reader, write_csv(tmp_path / "test.csv", rows))


# ---- sentence embeddings --------------------------------------------------------------------------------------------


def test_sentence_pair_scores_correlate(bert, tmp_path):
    pairs = [(a, b) for i, a in enumerate(SENTENCES) for b in SENTENCES[i + 1 :]]
    rows = [{"sentence1": a, "sentence2": b, "score": round(0.1 * i, 1)} for i, (a, b) in enumerate(pairs)]
    result = evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "test.csv", rows))
    m, out = result["metrics"], rows_of(result)
    assert result["key_metric"] == "spearman" and -1 <= m["spearman"] <= 1 and -1 <= m["pearson"] <= 1
    assert [r["rank_error"] for r in out] == sorted((r["rank_error"] for r in out), reverse=True)

    cosine = {(r["input"], r["candidate"]): r["prediction"] for r in out}  # gold = the model's own similarity
    own = [{**r, "score": cosine[(r["sentence1"], r["sentence2"])]} for r in rows]
    perfect = evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "own.csv", own))
    assert perfect["metrics"]["spearman"] == pytest.approx(1.0) and perfect["metrics"]["pearson"] == pytest.approx(1.0)


def test_sentence_triplets_and_pairs_retrieval(bert, tmp_path):
    triplets = [{"anchor": s, "positive": s, "negative": SENTENCES[(i + 1) % 4]} for i, s in enumerate(SENTENCES)]
    result = evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "t.csv", triplets))
    m = result["metrics"]
    assert result["key_metric"] == "accuracy" and m["accuracy"] == 1.0 and m["recall_at_1"] == 1.0, "positive = anchor"
    swapped = [{**t, "positive": t["negative"], "negative": t["positive"]} for t in triplets]
    worse = evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "s.csv", swapped))
    assert worse["metrics"]["accuracy"] == 0.0 and worse["metrics"]["mean_margin"] == pytest.approx(-m["mean_margin"])
    assert [r["margin"] for r in rows_of(worse)] == sorted(r["margin"] for r in rows_of(worse))

    pairs = [{"anchor": s, "positive": SENTENCES[(i + 1) % 4]} for i, s in enumerate(SENTENCES)]
    found = evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "p.csv", pairs))
    assert found["key_metric"] == "recall_at_1" and found["metrics"]["n_candidates"] == 4
    ranks = [r["positive_rank"] for r in rows_of(found)]
    assert ranks == sorted(ranks, reverse=True) and all(1 <= r <= 4 for r in ranks)
    assert found["metrics"]["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 4)


def test_sentence_data_that_fits_no_mode_is_refused(bert, tmp_path):
    with pytest.raises(UserError, match="fit no evaluation.*sentence1, sentence2, score"):
        evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "a.csv", [{"anchor": "x"}] * 2))
    rows = [{"premise": "a", "hypothesis": "b", "label": "entailment"}] * 2
    with pytest.raises(UserError, match="pair_class.*not saved"):
        evaluate(tmp_path, "sentence_transformers", bert, write_csv(tmp_path / "b.csv", rows))


# ---- preferences: DPO / ORPO / reward -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["llm_dpo", "llm_orpo"])
def test_policy_preference_accuracy_follows_log_probability(tiny_llama, tmp_path, task):
    rows = [{**r, "chosen": "4.", "rejected": "no " * 20 + "idea."} for r in preference_rows(3, form="text")]
    result = evaluate(tmp_path, task, tiny_llama, write_jsonl(tmp_path / "test.jsonl", rows))
    m = result["metrics"]
    assert result["key_metric"] == "preference_accuracy" and m["preference_accuracy"] == 1.0, "2 tokens beat 20"
    assert m["mean_margin"] > 0 and m["mean_logp_chosen"] > m["mean_logp_rejected"]
    swapped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    worse = evaluate(tmp_path, task, tiny_llama, write_jsonl(tmp_path / "swapped.jsonl", swapped))
    assert worse["metrics"]["preference_accuracy"] == 0.0
    assert worse["metrics"]["mean_margin"] == pytest.approx(-m["mean_margin"], rel=1e-4)


def test_policy_preferences_in_chat_form_worst_first(tiny_llama, tmp_path):
    rows = preference_rows(4, form="chat")
    result = evaluate(tmp_path, "llm_dpo", tiny_llama, write_jsonl(tmp_path / "test.jsonl", rows))
    out = rows_of(result)
    assert len(out) == 4 and [r["margin"] for r in out] == sorted(r["margin"] for r in out)
    assert out[0]["prompt"].startswith("user: what is") and out[0]["chosen"].startswith("assistant:")
    acc = result["metrics"]["preference_accuracy"]
    assert acc == pytest.approx(sum(r["correct"] for r in out) / 4)


def test_reward_model_accuracy_and_margin(reward_model, tmp_path):
    rows = preference_rows(4, form="text")
    result = evaluate(tmp_path, "llm_reward", reward_model, write_jsonl(tmp_path / "test.jsonl", rows))
    m, out = result["metrics"], rows_of(result)
    assert result["key_metric"] == "preference_accuracy" and 0 <= m["preference_accuracy"] <= 1
    assert [r["margin"] for r in out] == sorted(r["margin"] for r in out)
    assert m["mean_margin"] == pytest.approx(m["mean_reward_chosen"] - m["mean_reward_rejected"], abs=1e-6)
    from engine.tasks.llm_reward import predict

    first = rows[out[0]["row"] - 1]  # the scores are predict's scores of prompt + answer
    assert out[0]["reward_chosen"] == pytest.approx(predict(reward_model, first["prompt"] + first["chosen"]), abs=1e-4)
    swapped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    worse = evaluate(tmp_path, "llm_reward", reward_model, write_jsonl(tmp_path / "swapped.jsonl", swapped))
    assert worse["metrics"]["preference_accuracy"] == pytest.approx(1 - m["preference_accuracy"])


def test_preference_test_file_missing_rejected_is_refused(tiny_llama, tmp_path):
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in preference_rows(2, form="text")]
    with pytest.raises(UserError, match="rejected"):
        evaluate(tmp_path, "llm_dpo", tiny_llama, write_jsonl(tmp_path / "test.jsonl", rows))


# ---- generation against references: GRPO / RLOO / distillation / KTO -----------------------------------------------

PROMPTS = ["what is 1 plus 2?", "what is 3 plus 4?"]


@pytest.mark.slow
def test_grpo_answers_scored_against_answer_column_perfect_when_gold_is_own(tiny_llama, tmp_path):
    rows = [{"prompt": p, "answer": "x"} for p in PROMPTS]
    first = evaluate(tmp_path, "llm_grpo", tiny_llama, write_jsonl(tmp_path / "t.jsonl", rows), max_new_tokens=5)
    assert first["key_metric"] == "exact_match" and first["metrics"]["exact_match"] == 0.0
    said = {r["prompt"]: r["prediction"] for r in rows_of(first)}
    assert all(said.values()), "the tiny model says something"
    own = [{"prompt": p, "answer": said[p]} for p in PROMPTS]
    for task in ("llm_grpo", "llm_rloo"):
        result = evaluate(tmp_path, task, tiny_llama, write_jsonl(tmp_path / "o.jsonl", own), max_new_tokens=5)
        assert result["metrics"]["exact_match"] == 1.0 and result["metrics"]["perplexity"] > 1


@pytest.mark.slow
def test_distill_and_kto_use_chat_references(tiny_llama, tmp_path):
    chats = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": f"answer {i}"}] for i, p in enumerate(PROMPTS)
    ]
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": c} for c in chats])
    result = evaluate(tmp_path, "llm_distill", tiny_llama, data, max_new_tokens=5)
    out = {r["prompt"]: r for r in rows_of(result)}
    assert set(out) == {f"user: {p}" for p in PROMPTS}, "the final assistant turn is cut from the prompt"
    assert [out[f"user: {p}"]["reference"] for p in PROMPTS] == ["answer 0", "answer 1"], "... and is the reference"
    assert result["key_metric"] == "exact_match" and 0 <= result["metrics"]["exact_match"] <= 1
    assert result["metrics"]["perplexity"] > 1

    rated = [
        {"prompt": [c[0]], "completion": c[1]["content"], "label": up}
        for c, up in zip(chats, ("up", "down"), strict=True)
    ]
    kto = evaluate(tmp_path, "llm_kto", tiny_llama, write_jsonl(tmp_path / "k.jsonl", rated), max_new_tokens=5)
    assert kto["metrics"]["n_rated_up"] == 1 and kto["metrics"]["n_rated_down_left_out"] == 1
    (row,) = rows_of(kto)
    assert row["reference"] == "answer 0" and row["prompt"] == f"user: {PROMPTS[0]}"


def test_prompt_tasks_without_references_say_how_to_give_them(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    with pytest.raises(UserError, match=r"2 row\(s\) have none.*`answer` column"):
        evaluate(tmp_path, "llm_grpo", tiny_llama, data)
    with pytest.raises(UserError, match="only prompts: give chat prompts"):
        evaluate(tmp_path, "llm_distill", tiny_llama, data)
    rated = write_jsonl(tmp_path / "k.jsonl", [{"prompt": p, "completion": "no", "label": "down"} for p in PROMPTS])
    with pytest.raises(UserError, match="None of the 2 test rows is rated thumbs up"):
        evaluate(tmp_path, "llm_kto", tiny_llama, rated)


def test_every_task_named_here_is_offered_for_evaluation():
    from engine.task import get_task
    from ui.evals import evaluable_tasks

    names = ["token_classification", "extractive_qa", "sentence_transformers", "llm_dpo", "llm_orpo", "llm_reward"]
    names += ["llm_kto", "llm_grpo", "llm_rloo", "llm_distill"]
    assert all(get_task(n).evaluate is not None for n in names)
    assert set(names) <= set(evaluable_tasks())


@pytest.mark.slow
def test_trainpad_eval_runs_a_new_task_as_a_job(tagger, tmp_path, capsys):
    """`trainpad eval MODEL --task ... --data ... --json`: the eval job in its own process, a mapped column, the
    evaluation recorded with the task's key metric."""
    import json

    from engine.cli import main as cli
    from engine.run.store import Store

    data = write_jsonl(tmp_path / "ner.jsonl", [{"words": w, "tags": t} for w, t in NER])
    capsys.readouterr()
    args = ["--data-dir", str(tmp_path / "data"), "eval", str(tagger), "--task", "token_classification"]
    assert cli([*args, "--data", str(data), "--map", "tokens=words", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_examples"] == 4 and 0 <= result["metrics"]["f1"] <= 1 and "per_entity" in result["metrics"]
    (recorded,) = Store(tmp_path / "data" / "trainpad.db").list_evaluations()
    assert recorded["task"] == "token_classification" and recorded["key_metric_name"] == "f1"
    assert recorded["key_metric"] == result["metrics"]["f1"]
