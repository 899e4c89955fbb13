"""Evaluations: `trainpad eval` on a run and on its base model (an eval job in its own process), the evaluations
history, and bad input said plainly with nothing recorded."""

from __future__ import annotations

import importlib.util
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


# --- LLM-as-judge against a fake OpenAI-compatible server ------------------------------------


class FakeJudge:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that prefers the answer equal to the reference;
    ``mode`` junk: replies without a verdict; notjson: a page that is not a chat completion."""

    def __init__(self, mode: str = "fair"):
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.mode, self.requests = mode, []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                judge.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "prompt": prompt})
                if judge.mode == "notjson":
                    return self._send(b"<html>gateway</html>")
                ref = re.search(r"A reference answer is: '(.*?)'\. ", prompt)
                a = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End", prompt, re.S)
                b = re.search(r"Assistant B's Answer\]\n(.*?)\n\[The End", prompt, re.S)
                want = ref.group(1).strip() if ref else ""
                verdict = "A" if a.group(1).strip() == want else "B" if b.group(1).strip() == want else "C"
                text = "Both are fine." if judge.mode == "junk" else f"Assistant {verdict} matches. [[{verdict}]]"
                self._send(json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode())

            def _send(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fake_judge(monkeypatch):
    judge = FakeJudge()
    monkeypatch.setenv("TRAINPAD_JUDGE_URL", judge.url)
    monkeypatch.setenv("TRAINPAD_JUDGE_KEY", "sekrit-judge-key")
    monkeypatch.setenv("TRAINPAD_JUDGE_MODEL", "fake-judge")
    yield judge
    judge.close()


@pytest.mark.slow
def test_pairwise_judge_asks_both_orders_and_keeps_reasons(sft_run, tiny_llama, fake_judge, capsys):
    data_dir, run_id, test = sft_run
    args = [run_id, "--data", str(test), "--judge", "pairwise", "--against", str(tiny_llama)]
    result = eval_json(data_dir, *args, capsys=capsys)
    m = result["metrics"]
    assert result["key_metric"] == "win_rate" and m["win_rate"] >= 0.5 and m["loss_rate"] == 0
    assert m["win_rate"] + m["loss_rate"] + m["tie_rate"] == pytest.approx(1.0)
    assert len(fake_judge.requests) == 2 * 16, "each pair judged in both orders"
    assert {r["path"] for r in fake_judge.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in fake_judge.requests} == {"Bearer sekrit-judge-key"}
    rows = [json.loads(line) for line in Path(result["predictions_path"]).read_text().splitlines()]
    won = next(r for r in rows if r["verdict"] == "A")
    assert won["verdict_a_first"] == "A" and won["verdict_b_first"] == "A" and won["consistent"] == 1.0
    assert "[[A]]" in won["reason_a_first"] and "[[B]]" in won["reason_b_first"], "B first: the tuned answer is B"
    assert {"answer_a", "answer_b", "prompt", "reference"} <= set(won)
    assert result["settings"]["judge_source"] == "endpoint" and result["settings"]["against"] == str(tiny_llama)
    stored = (data_dir / "trainpad.db").read_bytes() + (
        Path(result["predictions_path"]).parent / "job.json"
    ).read_bytes()
    assert b"sekrit-judge-key" not in stored and fake_judge.url.encode() not in stored


@pytest.mark.parametrize("mode", ["junk", "notjson", "down"])
def test_a_judge_that_is_down_or_answers_junk_is_said_plainly(tiny_llama, tmp_path, monkeypatch, mode):
    from engine import runfiles as rf
    from engine.errors import UserError
    from engine.eval.job import run_eval
    from tests.conftest import free_port

    judge = FakeJudge("fair" if mode == "down" else mode)
    url = f"http://127.0.0.1:{free_port()}/v1" if mode == "down" else judge.url
    monkeypatch.setenv("TRAINPAD_JUDGE_URL", url)
    data = write_jsonl(tmp_path / "test.jsonl", colour_rows(2, seed=3))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    spec = {"task": "llm_sft", "model": "a", "model_dir": str(tiny_llama), "data": str(data), "data_hash": "x"}
    spec |= {"judge": "pairwise", "against": "b", "against_dir": str(tiny_llama), "max_new_tokens": 2}
    rf.write_json(job_dir / "job.json", spec)
    expected = {
        "junk": "The judge gave no verdict ([[A]], [[B]] or [[C]]) for test row 1; it answered: 'Both are fine.'",
        "notjson": "returned something that is not an OpenAI chat completion: b'<html>gateway</html>'",
        "down": "The judge endpoint (TRAINPAD_JUDGE_URL) cannot be reached",
    }[mode]
    try:
        with pytest.raises(UserError) as err:
            run_eval(job_dir)
    finally:
        judge.close()
    assert expected in str(err.value)
    assert not (job_dir / "predictions.jsonl").exists()


@pytest.mark.slow
def test_judge_requests_are_checked_before_queueing(sft_run, tiny_llama, monkeypatch, capsys):
    data_dir, run_id, test = sft_run
    monkeypatch.delenv("TRAINPAD_JUDGE_URL", raising=False)
    err = eval_error(data_dir, run_id, "--data", str(test), "--judge", "single", capsys=capsys)
    assert "No judge: give --judge-model a local model folder, or set TRAINPAD_JUDGE_URL" in err
    monkeypatch.setenv("TRAINPAD_JUDGE_URL", "http://127.0.0.1:9/v1")
    err = eval_error(data_dir, run_id, "--data", str(test), "--judge", "pairwise", capsys=capsys)
    assert "needs the other model: --against" in err


# --- lm-eval benchmarks, offline ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed (.[eval])")
def test_lm_eval_local_file_task_runs_offline(sft_run, capsys):
    data_dir, run_id, test = sft_run
    tuned = eval_json(data_dir, run_id, "--benchmark", str(test), capsys=capsys)
    assert tuned["key_metric"] == "trainpad_local_0/exact_match" and tuned["n_examples"] == 16
    assert tuned["metrics"]["trainpad_local_0/exact_match"] >= 0.5  # the same answers as the own evaluation's
    rows = [json.loads(line) for line in Path(tuned["predictions_path"]).read_text().splitlines()]
    assert len(rows) == 16 and {"task", "reference", "prediction", "exact_match"} <= set(rows[0])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed (.[eval])")
def test_a_hub_benchmark_offline_says_its_data_cannot_be_fetched(tiny_llama, tmp_path):
    from engine.errors import UserError
    from engine.eval.benchmark import run_benchmark

    with pytest.raises(UserError) as err:
        run_benchmark({"benchmark": "hellaswag", "model_dir": str(tiny_llama)}, tmp_path, {"batch_size": 2})
    assert "The data of benchmark hellaswag cannot be fetched" in str(err.value) and "local-file task" in str(err.value)
