"""Studio UI benchmark: start time vs a bare Gradio app, UI process RSS with 20 runs, chart latency.
Prints one JSON line.

- start: process launch -> first HTTP 200 on ``/``, for a one-Textbox Gradio app and for
  ``python app.py`` (alternating, ``--repeat`` times each; medians).
- rss: the ``app.py`` process's RSS after the page was served and ``/poll`` was called for each of
  20 runs in the history (each with 200 metric points).
- chart latency: a tiny SFT run started through ``/start_llm_sft``; ``/poll`` is called once a second
  (as the page's ``gr.Timer`` does); for each loss point, the time from the worker writing it to
  ``events.jsonl`` to ``/poll`` first returning it.

    .venv/bin/python bench/bench_ui.py [--repeat 3] [--no-latency] [--only-latency]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BARE = "import gradio as gr\nwith gr.Blocks() as d:\n    gr.Textbox()\nd.launch(server_port={port})\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_200(port: int, proc: subprocess.Popen, timeout: float = 120) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return time.time()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError("no HTTP 200")


def launch(cmd: list[str], port: int, env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, wait_200(port, proc) - t0


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def app_cmd(port: int, data_dir: Path) -> list[str]:
    return [sys.executable, "app.py", "--port", str(port), "--data-dir", str(data_dir)]


def start_times(repeat: int, env: dict[str, str], data_dir: Path) -> dict[str, float]:
    bare, studio = [], []
    for _ in range(repeat):
        port = free_port()
        proc, t = launch([sys.executable, "-c", BARE.format(port=port)], port, env)
        stop(proc)
        bare.append(t)
        port = free_port()
        proc, t = launch(app_cmd(port, data_dir), port, env)
        stop(proc)
        studio.append(t)
    return {
        "bare_start_s": round(statistics.median(bare), 2),
        "app_start_s": round(statistics.median(studio), 2),
        "app_start_overhead_s": round(statistics.median(studio) - statistics.median(bare), 2),
    }


def fill_history(data_dir: Path, n: int = 20, points: int = 200) -> list[str]:
    """``n`` finished runs, each with a folder, a log and ``points`` steps of metrics."""
    from engine.store import Store

    store = Store(data_dir / "trainpad.db")
    ids = []
    for i in range(n):
        run_id = f"bench-{i:02d}"
        run_dir = data_dir / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(f"task: llm_sft\nname: bench {i}\nparams:\n  epochs: 1\n")
        (run_dir / "train.log").write_text("line\n" * 500)
        store.insert_run(
            {
                "id": run_id,
                "name": f"bench {i}",
                "task": "llm_sft",
                "status": "succeeded",
                "backend": "local",
                "params": json.dumps({"epochs": 1, "learning_rate": 1e-4 * (i + 1)}),
                "base_model": "m",
                "run_dir": str(run_dir),
                "key_metric_name": "eval_loss",
                "key_metric": 1.0,
                "step": points,
                "max_steps": points,
                "started_at": time.time() - 100,
                "ended_at": time.time(),
            }
        )
        store.add_metrics(
            run_id,
            [
                {"step": s, "epoch": s / points, "name": name, "value": 1.0 / s, "time": time.time()}
                for s in range(1, points + 1)
                for name in ("loss", "learning_rate", "tokens_per_second")
            ],
        )
        ids.append(run_id)
    return ids


def rss_with_history(env: dict[str, str], data_dir: Path, ids: list[str]) -> dict[str, float]:
    from gradio_client import Client

    port = free_port()
    proc, _ = launch(app_cmd(port, data_dir), port, env)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for run_id in ids:
            client.predict(run_id, "all", "all", "step", api_name="/poll")
        t0 = time.time()
        client.predict(ids[0], "all", "all", "step", api_name="/poll")
        poll_s = time.time() - t0
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
    finally:
        stop(proc)
    return {"app_rss_mb_20_runs": round(rss, 1), "poll_call_s": round(poll_s, 3)}


def chart_latency(env: dict[str, str], data_dir: Path) -> dict[str, float]:
    from gradio_client import Client

    from tests.tiny import build_tiny_llama, chat_rows, write_jsonl
    from ui.runs import DETAIL_KEYS

    model = build_tiny_llama(data_dir / "models" / "tiny-llama")
    data = write_jsonl(data_dir / "chat.jsonl", chat_rows(400))
    port = free_port()
    proc, _ = launch(app_cmd(port, data_dir), port, env)
    seen: dict[int, float] = {}
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = client.predict(
            api_name="/start_llm_sft",
            upload=None,
            base_model=str(model),
            data_path=str(data),
            max_length=64,
            batch_size=2,
            logging_steps=5,
            epochs=1,
            eval_strategy="no",
            use_lora=False,
        )
        run_id = out[2]
        events = data_dir / "runs" / run_id / "events.jsonl"
        deadline = time.time() + 180
        while time.time() < deadline:
            tick = time.time()
            result = client.predict(run_id, "all", "all", "step", api_name="/poll")
            now = time.time()
            for step in loss_steps(result[1 + DETAIL_KEYS.index("loss")]):
                seen.setdefault(step, now)
            if run_id in str(result[0]) and any(s in str(result[0]) for s in ("succeeded", "failed")) and seen:
                break
            time.sleep(max(0.0, 1.0 - (time.time() - tick)))
        written = {
            int(e["step"]): e["time"]
            for e in map(json.loads, events.read_text().splitlines())
            if e.get("type") == "log" and "loss" in e
        }
    finally:
        stop(proc)
    lat = [seen[s] - written[s] for s in written if s in seen]
    if not lat:
        return {"chart_latency_points": 0}
    return {
        "chart_latency_points": len(lat),
        "chart_latency_median_s": round(statistics.median(lat), 2),
        "chart_latency_max_s": round(max(lat), 2),
    }


def loss_steps(plot: object) -> list[int]:
    """Steps of the `loss` series in a LinePlot value returned by gradio_client."""
    value = plot.get("value", plot) if isinstance(plot, dict) else {}
    if not isinstance(value, dict):
        print("unexpected plot payload:", str(plot)[:300], file=sys.stderr)
        return []
    columns, rows = value.get("columns") or [], value.get("data") or []
    if "step" not in columns or "series" not in columns:
        return []
    si, ci = columns.index("step"), columns.index("series")
    return [int(r[si]) for r in rows if r[ci] == "loss"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--only-latency", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        result: dict[str, object] = {"bench": "ui", "cpus": os.cpu_count()}
        if not args.only_latency:
            result.update(start_times(args.repeat, env, data_dir))
            result.update(rss_with_history(env, data_dir, fill_history(data_dir)))
        if not args.no_latency:
            result.update(chart_latency(env, Path(tmp) / "latency"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
