"""Seq2seq end to end through the supervisor with a tiny in-process T5; bad inputs refused before queueing."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from tests.tiny import COLORS, NAMES, build_tiny_t5, metric_values, write_csv

S2S = get_task("seq2seq")


def colour_rows(n: int, seed: int = 0) -> list[dict]:
    """Learnable rewriting: "alice likes the colour red today" -> "red alice"."""
    rng = random.Random(seed)
    pairs = ((rng.choice(NAMES), rng.choice(COLORS)) for _ in range(n))
    return [{"text": f"{name} likes the colour {colour} today", "target": f"{colour} {name}"} for name, colour in pairs]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    rows = colour_rows(200, seed=7)
    return build_tiny_t5(
        tmp_path_factory.mktemp("models") / "tiny-t5", [r["text"] for r in rows] + [r["target"] for r in rows]
    )


def s2s_params(model: Path, data: Path, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(data),
        "epochs": 5,
        "batch_size": 16,
        "learning_rate": 6e-3,
        "max_length": 16,
        "max_target_length": 8,
        "valid_fraction": 0.15,
    }
    return validate_params(S2S.params, {**base, **kw})


@pytest.mark.slow
def test_seq2seq_end_to_end(supervisor, tiny_t5, tmp_path):
    from engine.train.metrics import generation_metrics

    rows = colour_rows(300)
    run_id = supervisor.submit(S2S, s2s_params(tiny_t5, write_csv(tmp_path / "train.csv", rows)))
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]

    rouge_l = metric_values(supervisor.store, run_id, "eval_rougeL")
    assert len(rouge_l) >= 5, "one ROUGE-L per epoch plus the final evaluation"
    refs = [r["target"] for r in rows[:60]]
    constant = Counter(refs).most_common(1)[0][0]  # trivial baseline: always the most frequent target
    baseline = generation_metrics([constant] * len(refs), refs)["rougeL"]
    assert rouge_l[-1] >= 50 and rouge_l[-1] > baseline + 25, (rouge_l, baseline)
    assert row["key_metric_name"] == "eval_rougeL" and row["key_metric"] == pytest.approx(rouge_l[-1], rel=1e-3)

    run_dir = Path(row["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("eval_rouge1", "eval_rouge2", "eval_rougeLsum", "eval_bleu", "eval_chrf", "eval_gen_len"):
        assert name in metrics and name in supervisor.store.metric_names(run_id)
    assert 1 <= metrics["eval_gen_len"] <= 8
    assert "eval_rougeL" in (run_dir / "model" / "README.md").read_text()

    from transformers import AutoModelForSeq2SeqLM

    assert AutoModelForSeq2SeqLM.from_pretrained(str(run_dir / "model")).config.num_layers == 2
    held_out = colour_rows(12, seed=99)
    outputs = predict_dir(run_dir, {"text": [r["text"] for r in held_out]})
    assert isinstance(outputs, list) and len(outputs) == 12
    right = sum(r["target"].split()[0] in out for r, out in zip(held_out, outputs, strict=True))
    assert right >= 8, list(zip(outputs, [r["target"] for r in held_out], strict=True))
    single = predict_dir(run_dir, "carol likes the colour green today")
    assert isinstance(single, str) and single.strip()


@pytest.mark.slow
def test_seq2seq_lora_merged(supervisor, tiny_t5, tmp_path):
    from safetensors.torch import load_file

    data = write_csv(tmp_path / "train.csv", colour_rows(120))
    params = s2s_params(tiny_t5, data, epochs=1, use_lora=True, lora_r=4, lora_target_modules="q,v", valid_fraction=0.1)
    row = supervisor.wait(supervisor.submit(S2S, params), timeout=300)
    assert row["status"] == "succeeded", row["error"]
    run_dir = Path(row["run_dir"])
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert not (run_dir / "model" / "adapter_config.json").exists(), "the saved model is standalone (merged)"
    before, after = (
        load_file(str(tiny_t5 / "model.safetensors")),
        load_file(str(run_dir / "model" / "model.safetensors")),
    )
    changed = [k for k in before if k in after and not (before[k] == after[k]).all()]
    assert changed and all(".q." in k or ".v." in k for k in changed), changed
    assert isinstance(predict_dir(run_dir, "dave likes the colour red today"), str)


def test_wrong_column_names_refused(supervisor, tiny_t5, tmp_path):
    data = write_csv(tmp_path / "d.csv", [{"source": r["text"], "summary": r["target"]} for r in colour_rows(20)])
    with pytest.raises(UserError) as err:
        supervisor.submit(S2S, s2s_params(tiny_t5, data))
    message = str(err.value)
    assert "`text`" in message and "`target`" in message and "source" in message
    assert supervisor.store.list_runs() == []


def test_missing_values_named_by_row_and_column(supervisor, tiny_t5, tmp_path):
    rows = [{"source": r["text"], "summary": r["target"]} for r in colour_rows(20)]
    rows[2]["summary"] = "   "
    valid = [{"source": r["text"], "summary": r["target"]} for r in colour_rows(5, seed=1)]
    valid[1]["source"] = ""
    params = s2s_params(
        tiny_t5,
        write_csv(tmp_path / "d.csv", rows),
        valid_path=str(write_csv(tmp_path / "v.csv", valid)),
        column_mapping={"text": "source", "target": "summary"},
    )
    with pytest.raises(UserError) as err:
        supervisor.submit(S2S, params)
    problems = err.value.problems
    assert any("Training" in p and "`summary`" in p and "row(s): 3" in p for p in problems), problems
    assert any("Validation" in p and "`source`" in p and "row(s): 2" in p for p in problems), problems
    assert supervisor.store.list_runs() == []


def test_generation_metrics_scale():
    from engine.train.metrics import generation_metrics

    perfect = generation_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert perfect["rouge1"] == pytest.approx(100) and perfect["rougeLsum"] == pytest.approx(100)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    half = generation_metrics(["red bob"], ["red alice"])
    assert half["rouge1"] == pytest.approx(50) and half["rouge2"] == pytest.approx(0)
