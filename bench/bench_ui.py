"""Studio UI benchmark: start time vs a bare Gradio app, UI process RSS with 20 runs, chart latency, and
click-to-update latency in Chromium. Prints one JSON line.

- start: process launch -> first HTTP 200 on ``/``, for a one-Textbox Gradio app, the same app with the studio's
  start-up setting (garbage collection off while importing and building: like for like), and ``python app.py``
  (alternating, ``--repeat`` times each; medians).
- rss: the ``app.py`` process's RSS after the page was served and ``/poll`` was called for each of
  20 runs in the history (each with 200 metric points).
- chart latency: a tiny SFT run started through ``/start_llm_sft``; ``/poll`` is called once a second
  (as the page's ``gr.Timer`` does); for each loss point, the time from the worker writing it to
  ``events.jsonl`` to ``/poll`` first returning it.
- clicks (Playwright driving Chromium, ``app.py`` in its own process, 20 runs in the history): the time from
  a click to the page showing its result — a task tab (its form shown: forms are built when picked), Duplicate
  (the task form shows the copied run name), Start (the
  Runs page shows the new run), a row of the runs table (the header shows that run) and Compare (the key
  metrics table lists both runs); medians of ``--clicks`` clicks each, with the load average. Each click starts
  on a settled page (idle three times in a row); ``*_settled_median_s``: until the page settles again after it.

    .venv/bin/python bench/bench_ui.py [--repeat 3] [--no-latency] [--only-latency] [--only-clicks] [--clicks 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
# the same app with the studio's start-up setting (no garbage collection while it is imported and built, app.create):
# the like-for-like baseline, as the setting also speeds Gradio's own import
BARE_GC = "import gc\ngc.disable()\n" + BARE.replace("d.launch", "gc.freeze()\ngc.enable()\nd.launch")


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
    times: dict[str, list[float]] = {"bare": [], "bare_gc": [], "app": []}
    for _ in range(repeat):
        for name, source in (("bare", BARE), ("bare_gc", BARE_GC), ("app", None)):
            port = free_port()
            cmd = app_cmd(port, data_dir) if source is None else [sys.executable, "-c", source.format(port=port)]
            proc, t = launch(cmd, port, env)
            stop(proc)
            times[name].append(t)
    bare, bare_gc, app = (statistics.median(times[k]) for k in ("bare", "bare_gc", "app"))
    return {
        "bare_start_s": round(bare, 2),
        "bare_gc_off_start_s": round(bare_gc, 2),
        "app_start_s": round(app, 2),
        "app_start_overhead_s": round(app - bare, 2),
        "app_start_overhead_like_for_like_s": round(app - bare_gc, 2),
    }


def fill_history(data_dir: Path, n: int = 20, points: int = 200, params: dict | None = None) -> list[str]:
    """``n`` finished runs, each with a folder, a log and ``points`` steps of metrics (``params``: more params)."""
    from engine.run.store import Store

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
                "params": json.dumps({**(params or {}), "epochs": 1, "learning_rate": 1e-4 * (i + 1)}),
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
        values = {"base_model": str(model), "data_path": str(data), "max_length": 64, "batch_size": 2}
        values |= {"logging_steps": 5, "epochs": 1, "eval_strategy": "no", "use_lora": False}
        out = client.predict("llm_sft", values, api_name="/start")
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
    from engine.train import charts

    value = plot.get("value", plot) if isinstance(plot, dict) else {}
    if not isinstance(value, dict):
        print("unexpected plot payload:", str(plot)[:300], file=sys.stderr)
        return []
    columns, rows = value.get("columns") or [], value.get("data") or []
    if "step" not in columns or "series" not in columns:
        return []
    si, ci = columns.index("step"), columns.index("series")
    return [int(r[si]) for r in rows if r[ci] == charts.label("loss")]  # the series as the page names it


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-sync"]
RUN_ID_BOX = "#run-id textarea, #run-id input"
HEADER_SHOWS = "n => (document.querySelector('#run-header')?.innerText || '').includes(n)"
VALUE_IS = "([sel, v]) => [...document.querySelectorAll(sel)].some(e => e.value === v)"


# resolves once the page has been idle three times in a row (charts drawn, widgets mounted), or after 5 s
SETTLE = """() => new Promise((done) => {
  let n = 0;
  const tick = () => requestIdleCallback(() => (++n >= 3 ? done(true) : tick()), {timeout: 5000});
  tick();
})"""


def timed(pg, click, condition: str, arg: object, timeout: float = 120) -> float:
    """Seconds from ``click()`` to the JS ``condition(arg)`` holding on the page. The page is left to settle first
    (what an earlier click still draws is not this click's time); how long it then takes to settle again is kept
    in ``SETTLED`` (the whole cost of the click: charts drawn, every widget mounted)."""
    pg.evaluate(SETTLE)
    t0 = time.perf_counter()
    click()
    try:
        pg.wait_for_function(condition, arg=arg, polling=20, timeout=timeout * 1000)
    except Exception:
        pg.screenshot(path=str(Path(tempfile.gettempdir()) / "bench_ui_timeout.png"), full_page=True)
        raise
    shown = time.perf_counter() - t0
    pg.evaluate(SETTLE)
    SETTLED.append(time.perf_counter() - t0)
    print(f"{arg}: {shown:.2f} s (settled {SETTLED[-1]:.2f} s)", file=sys.stderr)
    return shown


SETTLED: list[float] = []


def open_runs(pg) -> None:
    """The Runs page shown (clicked until it stays: the page's load event restores the last page once)."""
    for _ in range(60):
        pg.get_by_role("tab", name="Runs", exact=True).click()
        pg.wait_for_timeout(500)
        if pg.locator("#runs-refresh").is_visible():
            pg.wait_for_timeout(1000)
            if pg.locator("#runs-refresh").is_visible():
                return
    raise TimeoutError("the Runs page did not open")


def show_run(pg, run_id: str) -> None:
    box = pg.locator(RUN_ID_BOX).first
    box.fill(run_id)
    box.press("Enter")
    pg.wait_for_function(HEADER_SHOWS, arg=run_id, timeout=120_000)


def click_latency(env: dict[str, str], data_dir: Path, clicks: int) -> dict[str, object]:
    """Click-to-update latencies in Chromium (see the module docstring); medians and maxima in seconds."""
    from playwright.sync_api import sync_playwright

    from tests.tiny import build_tiny_llama, chat_rows, write_jsonl

    model = build_tiny_llama(data_dir / "models" / "tiny-llama")
    data = write_jsonl(data_dir / "chat.jsonl", chat_rows(32))
    params = {"base_model": str(model), "data_path": str(data), "max_length": 64, "batch_size": 2, "max_steps": 2}
    ids = fill_history(data_dir, params={**params, "eval_strategy": "no", "use_lora": False})
    port = free_port()
    proc, _ = launch(app_cmd(port, data_dir), port, env)
    times: dict[str, list[float]] = {"switch": [], "duplicate": [], "start": [], "select": [], "compare": []}
    settled: dict[str, list[float]] = {name: [] for name in times}

    def add(name: str, shown: float) -> None:
        times[name].append(shown)
        settled[name].append(SETTLED[-1])

    load = [os.getloadavg()[0]]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1600})
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.locator("#llm_sft-start").wait_for()
            for _ in range(clicks):
                for family, task, name in SWITCHES:
                    add("switch", switch(pg, family, task, name))
            open_runs(pg)
            pg.locator("#runs-refresh").click()
            pg.locator("#runs-table [aria-rowcount='21']").wait_for()
            for i in range(clicks):
                add("select", select_row(pg, i + 1))
            for i in range(clicks):
                add("duplicate", duplicate(pg, ids[i], f"bench {i} (copy)"))
                add("start", start(pg, f"bench {i} (copy)"))
            for i in range(clicks):
                add("compare", compare(pg, ids[2 * i], ids[2 * i + 1], i == 0))
            browser.close()
    finally:
        stop(proc)
    load.append(os.getloadavg()[0])
    out: dict[str, object] = {"click_load_avg_1min": [round(x, 2) for x in load]}
    for name, xs in times.items():
        out[f"click_{name}_median_s"] = round(statistics.median(xs), 2)
        out[f"click_{name}_max_s"] = round(max(xs), 2)
        out[f"click_{name}_settled_median_s"] = round(statistics.median(settled[name]), 2)
    return out


# task tabs clicked in turn: (family tab or None, task tab, the task's name); each shows another task's form
SWITCHES = [
    ("Text", "Text classification", "text_classification"),
    (None, "Token classification", "token_classification"),
    ("Vision", "Image classification", "image_classification"),
    ("Tabular", "Tabular (classification & regression)", "tabular"),
    ("LLM", "LLM fine-tuning (SFT)", "llm_sft"),
    (None, "LLM preference tuning (DPO)", "llm_dpo"),
]
FORM_SHOWN = "t => !!document.querySelector(`#${t}-start`)?.offsetParent"


def switch(pg, family: str | None, task: str, name: str) -> float:
    """A task tab clicked (its family's first, when given) -> that task's form is shown (its Start button)."""

    def click() -> None:
        if family:
            pg.get_by_role("tab", name=family, exact=True).click()
        tab = pg.get_by_role("tab", name=task, exact=True)
        if tab.get_attribute("aria-selected") != "true":
            tab.click()

    return timed(pg, click, FORM_SHOWN, name)


def select_row(pg, row: int) -> float:
    """A click on a row of the runs table -> the header names that run."""
    run_id = pg.locator("#runs-table").get_by_test_id(f"cell-{row}-0").inner_text().strip()
    cell = pg.locator("#runs-table").get_by_test_id(f"cell-{row}-1")
    return timed(pg, cell.click, HEADER_SHOWS, run_id)


def duplicate(pg, run_id: str, copy_name: str) -> float:
    """Duplicate on the Runs page -> the task tab shows the copy's name (the last field filled)."""
    pg.get_by_role("tab", name="Runs", exact=True).click()
    show_run(pg, run_id)
    return timed(pg, pg.locator("#run-duplicate").click, VALUE_IS, ["#llm_sft-run_name textarea", copy_name])


def start(pg, run_name: str) -> float:
    """Start in the (duplicated) task form -> the Runs page's header shows the new run."""
    return timed(pg, pg.locator("#llm_sft-start").click, HEADER_SHOWS, run_name)


def compare(pg, a: str, b: str, first: bool) -> float:
    """Two runs picked, Compare clicked -> the key metrics table lists both."""
    pg.get_by_role("tab", name="Runs", exact=True).click()
    if first:
        pg.locator("#compare").get_by_role("button", name="Compare runs").first.click()
    box = pg.locator("#compare-runs")
    for chip in box.locator("button[aria-label^='Remove']").all():
        chip.click()
    for run_id in (a, b):
        box.locator("input").click()
        box.get_by_role("option", name=re.compile(re.escape(run_id) + "$")).click()
    names = [f"bench {int(a[-2:])}", f"bench {int(b[-2:])}"]
    cond = "ns => ns.every(n => [...document.querySelectorAll('#compare-metrics [data-testid^=cell-]')].some(td => td.innerText.trim() === n))"
    return timed(pg, pg.locator("#compare-go").click, cond, names)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--only-latency", action="store_true")
    ap.add_argument("--only-clicks", action="store_true")
    ap.add_argument("--clicks", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        result: dict[str, object] = {"bench": "ui", "cpus": os.cpu_count()}
        if args.only_clicks:
            result.update(click_latency(env, Path(tmp) / "clicks", args.clicks))
        else:
            if not args.only_latency:
                result.update(start_times(args.repeat, env, data_dir))
                result.update(rss_with_history(env, data_dir, fill_history(data_dir)))
            if not args.no_latency:
                result.update(chart_latency(env, Path(tmp) / "latency"))
                result.update(click_latency(env, Path(tmp) / "clicks", args.clicks))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
