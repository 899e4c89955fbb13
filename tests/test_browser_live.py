"""Real-browser test of the Runs page's charts through a live run: a 250-step SFT run draws its Loss curve while it
runs (at least five points, the page open from the start), then the page switches between runs of three tasks and
each chart shows its own run's points. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_browser import CHROMIUM, page, shot, show_run  # noqa: F401  (``page`` is a fixture)
from tests.test_ui_runs import fake_run
from tests.tiny import chat_rows

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)"),
]

# the points of each line of a chart: the commands of each SVG path vega draws (M, then one L per point)
LINE_POINTS = """(id) => Array.from(document.querySelectorAll(`#${id} g.mark-line path`))
  .map((p) => (p.getAttribute("d") || "").match(/[ML]/g)?.length || 0)"""


def line_points(pg, chart: str) -> list[int]:
    return pg.evaluate(LINE_POINTS, f"chart-{chart}")


def losses(ctx, run_id: str, n: int, start: float, task: str) -> None:
    """A finished fake run of ``task`` with ``n`` training-loss points."""
    rows = [
        {"step": i + 1, "epoch": i / n, "name": "loss", "value": start - i * 0.1, "time": time.time()} for i in range(n)
    ]
    fake_run(ctx, run_id, "succeeded", task=task, metrics=rows, step=n, max_steps=n)


def test_a_live_run_draws_its_loss_curve_and_each_run_shows_its_own(studio, page, tiny_llama, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, ctx = studio
    data = tmp_path / "chat.csv"
    rows = [{"prompt": r["messages"][0]["content"], "completion": r["messages"][1]["content"]} for r in chat_rows(64)]
    pd.DataFrame(rows).to_csv(data, index=False)
    pg = page
    pg.goto(url)
    base = pg.locator("#llm_sft-base_model input")
    base.fill(str(tiny_llama))
    base.press("Enter")
    pg.locator("#llm_sft-data_path textarea, #llm_sft-data_path input").first.fill(str(data))
    pg.locator("#llm_sft-data_path textarea, #llm_sft-data_path input").first.press("Enter")
    expect(pg.locator("#llm_sft-preview")).to_be_visible()
    pg.locator("#llm_sft-batch_size input").fill("2")
    pg.locator("#llm_sft-max_length input").fill("32")
    pg.locator("#llm_sft-valid_fraction input").fill("0")  # one series: the training loss
    pg.locator("#llm_sft-advanced").get_by_role("button", name="Advanced").first.click()
    for name, value in (("max_steps", "250"), ("epochs", "100")):  # logging_steps stays automatic: 25 points a run
        field = pg.locator(f"#llm_sft-{name} input")
        for _ in range(5):
            field.fill(value)
            pg.wait_for_timeout(300)
            if field.input_value() == value:
                break
    pg.locator("#llm_sft-start").click()
    expect(pg.locator("#run-status")).to_have_text("running", timeout=90_000)
    run_id = pg.locator("#run-id textarea, #run-id input").first.input_value()
    pg.wait_for_function(f"() => Math.max(0, ...({LINE_POINTS})('chart-loss')) >= 5", timeout=240_000)
    row = ctx.store.get_run(run_id)
    assert row["status"] == "running" and row["max_steps"] >= 200, "five points drawn while it runs"
    shot(pg, "live-1-curve-while-running")
    if ctx.store.get_run(run_id)["status"] == "running":
        pg.locator("#run-stop").click()
    expect(pg.locator("#run-status")).to_have_text(re.compile("stopped|succeeded"), timeout=120_000)
    drawn = max(line_points(pg, "loss"))
    assert drawn == len(ctx.store.metrics(run_id, ["loss"])), "every logged loss is on the curve"

    losses(ctx, "text-run", 7, 2.0, "text_classification")
    losses(ctx, "table-run", 3, 0.9, "tabular")
    for rid, n in (("text-run", 7), ("table-run", 3), (run_id, drawn), ("text-run", 7)):
        show_run(pg, rid)
        pg.wait_for_function(f"() => ({LINE_POINTS})('chart-loss').join() === '{n}'", timeout=30_000)
        expect(pg.locator("#run-header")).to_contain_text(re.compile(re.escape(rid)))
    shot(pg, "live-2-switched-runs")
