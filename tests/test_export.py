"""Exports and endpoints: GGUF (llama.cpp's converter) loaded back by llama.cpp, the Ollama Modelfile's template,
ONNX checked with onnxruntime, `trainpad serve` answering like the Playground, jobs queued and stopped."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import yaml

from engine.cli import main as cli
from engine.errors import UserError
from engine.run.store import Store
from engine.ship import tools

HAS_GGUF = not tools.missing("gguf")
HAS_ONNX = not tools.missing("onnx")
needs_gguf = pytest.mark.skipif(not HAS_GGUF, reason=tools.missing("gguf") or "")
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason=tools.missing("onnx") or "")
PROMPTS = ["what is 2 plus 3?", "what is 7 plus 1?", "alice likes the colour"]


def finished_run(data_dir: Path, task: str, model_dir: Path, run_id: str = "r1", **params) -> str:
    """A succeeded run whose model/ is ``model_dir`` (a copy), as the worker leaves it."""
    import shutil

    run_dir = data_dir / "runs" / run_id
    shutil.copytree(model_dir, run_dir / "model")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": task, "name": f"tiny-{task}", "params": params}))
    Store(data_dir / "trainpad.db").insert_run({"id": run_id, "name": run_id, "task": task, "status": "succeeded"})
    Store(data_dir / "trainpad.db").update_run(run_id, run_dir=str(run_dir))
    return run_id


def export(data_dir: Path, run_id: str, *flags: str, capsys) -> dict:
    capsys.readouterr()
    code = cli(["--data-dir", str(data_dir), "export", run_id, *flags, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def export_error(data_dir: Path, run_id: str, *flags: str, capsys) -> str:
    capsys.readouterr()
    assert cli(["--data-dir", str(data_dir), "export", run_id, *flags]) == 2
    return capsys.readouterr().err


# --- what each task can export -----------------------------------------------------------


def test_formats_per_task_say_why_not():
    from engine.ship.export import formats_for

    assert formats_for("llm_sft")["gguf"] == tools.missing("gguf")
    assert "ONNX export covers the encoder tasks" in formats_for("llm_sft")["onnx"]
    assert "GGUF is for the LLM tasks" in formats_for("text_classification")["gguf"]
    for task in ("text_classification", "text_regression", "token_classification", "sentence_transformers"):
        assert formats_for(task)["onnx"] == tools.missing("onnx"), task
    assert formats_for("image_classification")["onnx"] == tools.missing("onnx")
    assert "not one of them" in formats_for("seq2seq")["onnx"] and "not one" in formats_for("seq2seq")["gguf"]


def test_an_unavailable_format_names_its_install_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert tools.missing("gguf") == f"GGUF export needs llama_cpp, gguf: `{tools.INSTALL_LINE}`"
    assert "pip install" in tools.missing("onnx")


# --- GGUF ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory):
    """A tiny Llama fine-tuned by SFT in full, and with LoRA kept as an adapter (merged at export)."""
    from engine.params import validate_params
    from engine.run.supervisor import Supervisor
    from engine.task import get_task
    from tests.tiny import build_tiny_llama, chat_rows, write_jsonl

    root = tmp_path_factory.mktemp("sft")
    base = build_tiny_llama(root / "tiny-llama")
    data = write_jsonl(root / "chat.jsonl", chat_rows(160))
    sup = Supervisor(root / "data", poll_interval=0.2).start()
    runs = {}
    for lora in (False, True):
        params = {"base_model": str(base), "data_path": str(data), "epochs": 3, "batch_size": 8, "max_length": 64}
        params |= {"learning_rate": 1e-2 if lora else 3e-3, "valid_fraction": 0.0, "use_lora": lora}
        params |= {"merge_adapter": False} if lora else {}
        run_id = sup.submit(get_task("llm_sft"), validate_params(get_task("llm_sft").params, params))
        assert sup.wait(run_id, timeout=300)["status"] == "succeeded"
        runs["lora" if lora else "full"] = run_id
    sup.shutdown()
    return root / "data", runs


def hf_greedy(model_dir: Path, prompt_ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, eos_token_id=None)
    return out[0, len(prompt_ids) :].tolist()


def llama_cpp_greedy(gguf: str, prompt_ids: list[int], n: int) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=256, verbose=False, seed=0)
    out = []
    for tok in llm.generate(prompt_ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        out.append(tok)
        if len(out) == n:
            break
    return out


@needs_gguf
@pytest.mark.slow
@pytest.mark.parametrize("which", ["full", "lora"])
def test_gguf_round_trip_gives_the_hf_models_greedy_tokens(sft_runs, which, capsys):
    from transformers import AutoTokenizer

    data_dir, runs = sft_runs
    run_dir = data_dir / "runs" / runs[which]
    f16 = export(data_dir, runs[which], "--format", "gguf", "--quant", "f16", capsys=capsys)
    assert f16["format"] == "gguf" and f16["bytes"] == Path(f16["path"]).stat().st_size > 0
    assert len(f16["sha256"]) == 64 and "ollama create" in f16["ollama"]
    model_dir = run_dir / ("merged" if which == "lora" else "model")  # the LoRA run was merged for the export
    assert (model_dir / "config.json").exists()

    from gguf import GGUFReader

    fields = GGUFReader(f16["path"]).fields
    template = bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    assert template == tok.chat_template  # the chat template travels in the GGUF

    q8 = export(data_dir, runs[which], "--format", "gguf", "--quant", "q8_0", capsys=capsys)
    assert q8["bytes"] < f16["bytes"]
    same_f16 = same_q8 = total = 0
    for prompt in PROMPTS:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(text, add_special_tokens=False)["input_ids"]  # as the Playground encodes a chat
        want = hf_greedy(model_dir, ids, 12)
        got16, got8 = llama_cpp_greedy(f16["path"], ids, 12), llama_cpp_greedy(q8["path"], ids, 12)
        assert got16 == want, (prompt, tok.decode(want), tok.decode(got16))
        same_f16 += sum(a == b for a, b in zip(got16, want, strict=True))
        same_q8 += sum(a == b for a, b in zip(got8, want, strict=False))
        total += len(want)
    print(f"gguf {which}: f16 {same_f16}/{total} tokens, q8_0 {same_q8}/{total} tokens as HF greedy")
    assert same_q8 >= 0.9 * total


@needs_gguf
@pytest.mark.slow
def test_gguf_q4_k_m_by_llama_cpps_quantizer_loads(sft_runs, capsys):
    data_dir, runs = sft_runs
    q4 = export(data_dir, runs["full"], "--format", "gguf", "--quant", "q4_k_m", capsys=capsys)
    assert q4["path"].endswith("-q4_k_m.gguf") and not list(Path(q4["path"]).parent.glob("*.tmp.gguf"))
    assert len(llama_cpp_greedy(q4["path"], [1, 5, 6], 4)) == 4


@needs_gguf
@pytest.mark.slow
def test_the_modelfiles_template_renders_chats_as_the_tokenizer_does(sft_runs, capsys):
    from transformers import AutoTokenizer

    from engine.ship.gguf import CHECK_CHATS, render_go_template

    data_dir, runs = sft_runs
    result = export(data_dir, runs["full"], "--format", "gguf", capsys=capsys)
    text = Path(result["modelfile"]).read_text()
    assert text.startswith(f"FROM ./{Path(result['path']).name}\n")
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    tok = AutoTokenizer.from_pretrained(str(data_dir / "runs" / runs["full"] / "model"))
    chats = [*CHECK_CHATS, [{"role": "system", "content": "s"}, {"role": "user", "content": "a\nb"}]]
    for chat in chats:
        assert render_go_template(template, chat) == tok.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=True
        )


@needs_gguf
@pytest.mark.slow
def test_a_model_llama_cpp_cannot_convert_gets_a_plain_message(data_dir, tmp_path, capsys):
    from transformers import OPTConfig, OPTForCausalLM

    from tests.tiny import build_tokenizer

    model = tmp_path / "tiny-opt"
    tok = build_tokenizer(model)
    config = OPTConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2)
    OPTForCausalLM(config).save_pretrained(str(model))
    run_id = finished_run(data_dir, "llm_sft", model)
    err = export_error(data_dir, run_id, "--format", "gguf", capsys=capsys)
    assert "llama.cpp cannot convert this model: its architecture `OPTForCausalLM`" in err
    assert "Traceback" not in err
    job = Store(data_dir / "trainpad.db").list_jobs(run_id)[0]
    assert job["status"] == "failed" and job["kind"] == "export" and (Path(job["job_dir"]) / "job.log").exists()


def test_gguf_of_an_encoder_run_is_refused_before_any_job(data_dir, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    run_id = finished_run(data_dir, "text_classification", tmp_path / "m")
    err = export_error(data_dir, run_id, "--format", "gguf", capsys=capsys)
    assert "GGUF is for the LLM tasks' language models" in err
    assert Store(data_dir / "trainpad.db").list_jobs(run_id) == []


# --- ONNX ----------------------------------------------------------------------------------


@needs_onnx
@pytest.mark.slow
def test_bert_classifier_to_onnx_matches_torch(data_dir, tmp_path, capsys):
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.tiny import build_tiny_bert

    base = build_tiny_bert(tmp_path / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=3)
    model.save_pretrained(str(tmp_path / "cls"))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(tmp_path / "cls"))
    run_id = finished_run(data_dir, "text_classification", tmp_path / "cls")

    result = export(data_dir, run_id, "--format", "onnx", "--int8", capsys=capsys)
    assert result["format"] == "onnx" and result["bytes"] > 0 and result["max_diff"] <= 1e-4
    folder = Path(result["path"]).parent
    assert (folder / "tokenizer.json").exists() and (folder / "config.json").exists()

    tok = AutoTokenizer.from_pretrained(str(folder))
    texts = ["bob likes the colour red.", "a much longer sentence about alice and the colour green and blue"]
    enc = tok(texts, padding=True, return_tensors="np")
    feeds = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    got = ort.InferenceSession(result["path"]).run(None, feeds)[0]
    with torch.no_grad():
        want = model.eval()(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    assert np.abs(got - want).max() < 1e-4
    int8 = ort.InferenceSession(result["int8"]).run(None, feeds)[0]
    assert int8.shape == want.shape and (int8.argmax(-1) == want.argmax(-1)).mean() >= 0.5


# --- served endpoints and jobs --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="transformers serve needs openai")
def test_serve_answers_chat_completions_with_the_playgrounds_greedy_reply(sft_runs, tmp_path):
    import subprocess
    import sys

    import httpx

    from engine.run.predict import predict_dir
    from tests.conftest import free_port

    data_dir, runs = sft_runs
    port = free_port()
    command = [sys.executable, "-m", "engine.cli", "--data-dir", str(data_dir), "serve", runs["full"]]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_for(proc, "serving; Ctrl-C stops the server", timeout=240)
        chat = [{"role": "user", "content": "what is 2 plus 3?"}]
        body = {"model": str(data_dir / "runs" / runs["full"] / "model"), "messages": chat, "max_tokens": 16}
        reply = httpx.post(f"{url}/chat/completions", json=body | {"temperature": 0}, timeout=120).json()
        answer = reply["choices"][0]["message"]["content"]
        assert answer == predict_dir(data_dir / "runs" / runs["full"], {"messages": chat, "max_new_tokens": 16})
        job = Store(data_dir / "trainpad.db").list_jobs(runs["full"], "serve")[-1]
        assert job["status"] == "running"
    finally:
        proc.send_signal(2)  # Ctrl-C: the CLI stops its server
        proc.wait(timeout=60)
    job = Store(data_dir / "trainpad.db").list_jobs(runs["full"], "serve")[-1]
    assert job["status"] == "stopped"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/models", timeout=2)


def _wait_for(proc, text: str, timeout: float) -> None:
    deadline, seen = time.time() + timeout, ""
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {text!r} in:\n{seen}")


def test_a_queued_export_waits_for_its_slot_and_stop_cancels_it(data_dir, tmp_path):
    from engine.run.supervisor import Supervisor

    (tmp_path / "m").mkdir()
    run_id = finished_run(data_dir, "text_classification", tmp_path / "m")
    sup = Supervisor(data_dir)  # ticked by hand: no background thread
    first = sup.submit_job("export", run_id, {"format": "onnx"})
    second = sup.submit_job("export", run_id, {"format": "onnx"})
    sup.tick()
    store = sup.store
    assert store.get_job(first)["status"] == "running" and store.get_job(second)["status"] == "queued"
    sup.stop_job(second)
    assert store.get_job(second)["status"] == "stopped"
    done = sup.wait_job(first, timeout=120)
    assert done["status"] == "failed" and "no model/ folder" not in done["error"]
    assert "ONNX" in done["error"] or "config" in done["error"], done["error"]  # an empty model folder: no model
    assert Path(done["job_dir"], "job.log").read_text()


def test_the_export_panel_lists_formats_and_shows_jobs(data_dir, tmp_path, monkeypatch):
    from engine.run.supervisor import Supervisor
    from ui import run_exports
    from ui.context import Context

    (tmp_path / "m").mkdir()
    run_id = finished_run(data_dir, "llm_sft", tmp_path / "m")
    ctx = Context(Supervisor(data_dir))
    monkeypatch.setattr(tools, "missing", lambda fmt: "GGUF export needs llama_cpp: `pip install x`")
    choices = run_exports.export_choices(ctx, run_id)
    assert [label for label, _ in choices][0].startswith("GGUF f16 — unavailable: GGUF export needs llama_cpp")
    assert all(value == "" for _, value in choices)  # nothing unavailable can be started
    monkeypatch.setattr(tools, "missing", lambda fmt: "")
    assert [v for _, v in run_exports.export_choices(ctx, run_id)] == ["gguf:f16", "gguf:q8_0", "gguf:q4_k_m"]
    job_id = run_exports.start_export(ctx, run_id, "gguf:q8_0")
    assert f"**export** `{job_id}` — queued" in run_exports.jobs_markdown(ctx, run_id)
    run_exports.stop_job(ctx, job_id)
    assert "— stopped" in run_exports.jobs_markdown(ctx, run_id)


def test_the_runs_page_exports_and_offers_the_newest_file(data_dir, tmp_path, monkeypatch):
    """The Export panel on the Runs page: the newest finished export's file is offered through a served link."""
    from engine.run.supervisor import Supervisor
    from ui import run_exports
    from ui.context import Context

    (tmp_path / "m").mkdir()
    run_id = finished_run(data_dir, "llm_sft", tmp_path / "m")
    ctx = Context(Supervisor(data_dir))
    with pytest.raises(UserError, match="no finished export yet"):
        run_exports.newest_export(ctx, run_id)
    job_id = run_exports.start_export(ctx, run_id, "gguf:q8_0")
    made = tmp_path / "model-q8_0.gguf"
    made.write_bytes(b"GGUF")
    ctx.engine.store.update_job(job_id, status="succeeded", result=json.dumps({"path": str(made)}))
    assert run_exports.newest_export(ctx, run_id) == made
    link = Path(ctx.served(made))
    assert link.read_bytes() == b"GGUF" and len(link.parent.name) == 32


def test_an_export_is_pushed_to_a_model_repo_with_a_card_and_no_token(tmp_path, monkeypatch):
    """`trainpad export … --push-to REPO`: the export's folder (file, Modelfile) and a card saying it is GGUF go to
    a private model repo, uploaded by the process that holds the token."""
    import huggingface_hub.constants

    from engine.ship.export import push
    from tests.fake_hub import TOKEN, FakeHub

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    try:
        folder = tmp_path / "exports" / "gguf-q8_0"
        folder.mkdir(parents=True)
        gguf_file = folder / "run-q8_0.gguf"
        gguf_file.write_bytes(b"GGUF\x03fake")
        (folder / "Modelfile").write_text("FROM ./run-q8_0.gguf\n")
        result = {"path": str(gguf_file), "format": "gguf", "quant": "q8_0", "sha256": "ab" * 32}
        with pytest.raises(UserError, match="write token"):
            push(result, "team/tiny-gguf", "")
        assert push(result, "team/tiny-gguf", TOKEN) == "team/tiny-gguf"
        repo = hub.repos["team/tiny-gguf"]
        assert repo["private"] is True and {"run-q8_0.gguf", "Modelfile", "README.md"} <= set(repo["files"])
        card = repo["files"]["README.md"].decode()
        assert "library_name: gguf" in card and "q8_0" in card
        assert all(TOKEN.encode() not in body for body in repo["files"].values())
    finally:
        hub.close()
