"""Evaluations: `trainpad eval` on a run and on its base model (an eval job in its own process), the evaluations
history, and bad input said plainly with nothing recorded."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.cli import main as cli
from engine.run.store import Store
from tests.tiny import COLORS, NAMES, write_jsonl

FAVOURITE = {n: COLORS[i % len(COLORS)] for i, n in enumerate(NAMES)}


def colour_rows(n: int, seed: int) -> list[dict]:
    """Prompt/completion facts a tiny model learns in a few steps: each name has one colour."""
    rng = random.Random(seed)
    names = [rng.choice(NAMES) for _ in range(n)]
    return [{"prompt": f"{name} likes the colour", "completion": f" {FAVOURITE[name]}"} for name in names]


def eval_json(data_dir: Path, *args: str, capsys) -> dict:
    capsys.readouterr()
    code = cli(["--data-dir", str(data_dir), "eval", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def eval_error(data_dir: Path, *args: str, capsys) -> str:
    capsys.readouterr()
    assert cli(["--data-dir", str(data_dir), "eval", *args]) == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_llama):
    """(data folder, run id, test file): a tiny Llama taught the colour facts by SFT."""
    from engine.params import validate_params
    from engine.run.supervisor import Supervisor
    from engine.task import get_task

    root = tmp_path_factory.mktemp("eval")
    train = write_jsonl(root / "train.jsonl", colour_rows(80, seed=0))
    test = write_jsonl(root / "test.jsonl", colour_rows(16, seed=1))
    task = get_task("llm_sft")
    params = {"base_model": str(tiny_llama), "data_path": str(train), "epochs": 2, "batch_size": 8, "max_length": 32}
    params |= {"learning_rate": 1e-2, "valid_fraction": 0.0, "packing": "none", "completion_only_loss": True}
    sup = Supervisor(root / "data", poll_interval=0.2)
    run_id = sup.submit(task, validate_params(task.params, params))
    row = sup.wait(run_id, timeout=300, drive=True)
    assert row["status"] == "succeeded", row["error"]
    return root / "data", run_id, test


@pytest.mark.slow
def test_tuned_beats_base_on_a_held_out_test_file(sft_run, tiny_llama, capsys):
    data_dir, run_id, test = sft_run
    tuned = eval_json(data_dir, run_id, "--data", str(test), capsys=capsys)
    base = eval_json(data_dir, str(tiny_llama), "--data", str(test), "--task", "llm_sft", capsys=capsys)
    for result in (tuned, base):
        assert result["n_examples"] == 16
        assert {"exact_match", "normalized_match", "rougeL", "chrf", "perplexity"} <= set(result["metrics"])
        assert result["settings"]["do_sample"] is False and result["settings"]["max_new_tokens"] > 0
    assert tuned["metrics"]["exact_match"] > base["metrics"]["exact_match"]
    assert tuned["metrics"]["exact_match"] >= 0.5
    assert tuned["metrics"]["perplexity"] < base["metrics"]["perplexity"]

    rows = [json.loads(line) for line in Path(base["predictions_path"]).read_text().splitlines()]
    assert len(rows) == 16 and {"prompt", "reference", "prediction", "exact_match", "loss"} <= set(rows[0])
    tuned_rows = [json.loads(line) for line in Path(tuned["predictions_path"]).read_text().splitlines()]
    scores = [r["normalized_match"] for r in tuned_rows]
    assert scores == sorted(scores), "worst errors first"

    history = Store(data_dir / "trainpad.db").list_evaluations()
    by_model = {e["model"]: e for e in history}
    assert by_model[run_id]["run_id"] == run_id and by_model[str(tiny_llama)]["run_id"] == ""
    for e in history:
        assert e["task"] == "llm_sft" and e["n_examples"] == 16 and e["key_metric_name"] == "exact_match"
        assert e["data"] == str(test.resolve()) and len(e["data_hash"]) == 64
        assert e["settings"]["decoding"] == "greedy" and Path(e["predictions_path"]).exists()
    assert by_model[str(tiny_llama)]["data_hash"] == by_model[run_id]["data_hash"]
    assert by_model[run_id]["key_metric"] == tuned["metrics"]["exact_match"]


@pytest.mark.slow
def test_bad_test_data_is_refused_plainly_and_nothing_is_recorded(sft_run, tiny_llama, tmp_path, capsys):
    data_dir, run_id, _ = sft_run
    store = Store(data_dir / "trainpad.db")
    before = len(store.list_evaluations())

    renamed = write_jsonl(tmp_path / "renamed.jsonl", [{"question": "q", "answer": "a"}])
    err = eval_error(data_dir, run_id, "--data", str(renamed), "--map", "prompt=query", capsys=capsys)
    assert "Column `query` (mapped to role `prompt`) is not in the data" in err and "question, answer" in err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "`empty.jsonl` is empty" in eval_error(data_dir, run_id, "--data", str(empty), capsys=capsys)
    header_only = tmp_path / "header.csv"
    header_only.write_text("prompt,completion\n")
    assert "no data rows" in eval_error(data_dir, run_id, "--data", str(header_only), capsys=capsys)
    assert "not found" in eval_error(data_dir, run_id, "--data", str(tmp_path / "nope.csv"), capsys=capsys)
    assert "needs its task" in eval_error(data_dir, str(tiny_llama), "--data", str(renamed), capsys=capsys)
    assert "neither a run id nor a model folder" in eval_error(data_dir, "r-404", capsys=capsys)
    assert "no validation split" in eval_error(data_dir, str(tiny_llama), "--task", "llm_sft", capsys=capsys)

    # found only once the job reads the chats: the job fails with the row, and records nothing
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    err = eval_error(data_dir, run_id, "--data", str(chats), capsys=capsys)
    assert "Test row 1: the chat must end with an assistant turn" in err
    assert len(store.list_evaluations()) == before
    failed = [j for j in store.list_jobs(run_id, "eval") if j["status"] == "failed"]
    assert failed and not (Path(failed[-1]["job_dir"]) / "result.json").exists()
