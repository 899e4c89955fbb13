"""Real-browser tests (Playwright driving Debian's Chromium): a run clicked through from upload to stop,
and a bad upload that is explained and queues nothing. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ARTIFACTS
from tests.tiny import chat_rows

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)"),
]


@pytest.fixture
def page():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1600})
        yield pg
        browser.close()


def shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(pg, elem_id: str, option: str) -> None:
    """Choose ``option`` in the Dropdown ``elem_id``."""
    pg.locator(f"#{elem_id} input").click()
    pg.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def fill_settled(pg, selector: str, value: str) -> None:
    """Fill an input in a just-opened accordion: Gradio mounts its children on opening and may set their
    initial value once more right after, over text typed in the same instant, so fill until it sticks."""
    from playwright.sync_api import expect

    box = pg.locator(selector)
    expect(box).to_be_visible()
    for _ in range(5):
        box.fill(value)
        pg.wait_for_timeout(300)
        if box.input_value() == value:
            return
    expect(box).to_have_value(value)


def show_run(pg, run_id: str) -> None:
    """Type a run id in the Runs page's box; its header shows."""
    from playwright.sync_api import expect

    box = pg.locator("#run-id textarea, #run-id input").first
    box.fill(run_id)
    box.press("Enter")
    expect(pg.locator("#run-header")).to_contain_text(run_id)


def fake_run(ctx, run_id: str, status: str, **row) -> Path:
    """A finished run's row and folder, as the supervisor leaves them (nothing to launch)."""
    import json
    import time

    run_dir = ctx.engine.runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").write_text("step 1\n")
    (run_dir / "config.yaml").write_text(f"task: llm_sft\nname: {run_id}\n")
    base = {"id": run_id, "name": run_id, "task": "llm_sft", "status": status, "backend": "local"}
    params = json.dumps({"base_model": "m"})
    now = time.time()
    ctx.store.insert_run(
        {**base, "params": params, "base_model": "m", "run_dir": str(run_dir), "started_at": now - 9, "ended_at": now}
        | row
    )
    return run_dir


def step_of(pg) -> int:
    m = re.search(r"step (\d+)/", pg.locator("#run-header").inner_text())
    return int(m.group(1)) if m else 0


def test_upload_map_start_watch_reload_stop(studio, page, tiny_llama, tmp_path):
    from playwright.sync_api import expect

    url, ctx = studio
    rows = [{"question": r["messages"][0]["content"], "answer": r["messages"][1]["content"]} for r in chat_rows(64)]
    csv = tmp_path / "qa.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    pg = page
    pg.goto(url)
    expect(pg.get_by_role("tab", name="LLM fine-tuning (SFT)")).to_be_visible()
    # the Train page opens first and its tab reads first
    tab_x = {t: pg.get_by_role("tab", name=t, exact=True).bounding_box()["x"] for t in ("Train", "Runs", "Docs")}
    assert tab_x["Train"] < tab_x["Runs"] < tab_x["Docs"]
    pg.locator("#tp-docs").click()  # the header's Docs button shows the Docs page (ui.nav)
    expect(pg.get_by_text("Trainpad is a no-code training studio")).to_be_visible()
    pg.get_by_role("tab", name="Train", exact=True).click()

    base = pg.locator("#llm_sft-base_model input")
    base.fill(str(tiny_llama))
    base.press("Enter")
    pg.locator("#llm_sft-upload input[type=file]").set_input_files(str(csv))
    expect(pg.locator("#llm_sft-preview").get_by_test_id("cell-0-0").first).to_have_text(re.compile("what is"))
    expect(pg.locator("#llm_sft-data_path textarea, #llm_sft-data_path input").first).to_have_value(
        re.compile(r"uploads/[0-9a-f]{10}/qa\.csv")
    )
    pick(pg, "llm_sft-map-prompt", "question")
    pick(pg, "llm_sft-map-completion", "answer")
    pg.locator("#llm_sft-batch_size input").fill("2")
    pg.locator("#llm_sft-max_length input").fill("64")
    pg.locator("#llm_sft-advanced").get_by_role("button", name="Advanced").first.click()
    fill_settled(pg, "#llm_sft-max_steps input", "4000")
    fill_settled(pg, "#llm_sft-epochs input", "500")  # a long run either way: it must still be running after reload
    fill_settled(pg, "#llm_sft-logging_steps input", "5")
    pg.locator("#llm_sft-run_name textarea, #llm_sft-run_name input").first.fill("browser run")
    shot(pg, "1-form-filled")

    pg.locator("#llm_sft-start").click()
    expect(pg.locator("#run-status")).to_have_text("running", timeout=60_000)
    run_id = pg.locator("#run-id textarea, #run-id input").first.input_value()
    assert ctx.store.get_run(run_id)["params"]["column_mapping"] == {"prompt": "question", "completion": "answer"}
    expect(pg.locator("#run-log textarea")).to_have_value(re.compile(r"\[trainpad\]"), timeout=60_000)
    pg.wait_for_function(
        "() => { const m = document.querySelector('#run-header')?.innerText.match(/step (\\d+)\\//); "
        "return m && +m[1] >= 10; }",
        timeout=90_000,
    )
    expect(pg.locator("#chart-loss canvas, #chart-loss svg").first).to_be_visible()
    # the log tail reads as lines, not the trainer's dict reprs (issue 17 item 9), on its real output
    expect(pg.locator("#run-log textarea")).to_have_value(re.compile(r"epoch \d+\.\d\d · loss \d"))
    expect(pg.locator("#run-log textarea")).not_to_have_value(re.compile(r"\{'loss'"))
    shot(pg, "2-running")

    before = step_of(pg)
    pg.reload()
    run_box = pg.locator("#run-id textarea, #run-id input").first
    expect(run_box).to_have_value(run_id)
    expect(pg.locator("#run-status")).to_have_text("running")
    pg.wait_for_function(
        f"() => {{ const m = document.querySelector('#run-header')?.innerText.match(/step (\\d+)\\//); "
        f"return m && +m[1] > {before}; }}",
        timeout=60_000,
    )
    shot(pg, "3-reloaded-still-running")

    # issue 17 item 7: Duplicate fills the form at once; the copy, started, shows its place in the queue
    pg.locator("#run-duplicate").click()
    expect(pg.locator("#llm_sft-run_name textarea, #llm_sft-run_name input").first).to_have_value(
        "browser run (copy)", timeout=10_000
    )
    expect(pg.locator("#llm_sft-start")).to_be_visible()  # the Train page and the task's tab are shown (ui.nav)
    expect(pg.locator("#runs-refresh")).to_be_hidden()
    expect(pg.locator("#llm_sft-batch_size input")).to_have_value("2")
    expect(pg.locator("#llm_sft-map-prompt input")).to_have_value("question")
    shot(pg, "3b-duplicated")
    pg.locator("#llm_sft-start").click()
    expect(pg.locator("#run-header")).to_contain_text("browser run (copy)", timeout=10_000)
    expect(pg.locator("#run-header")).to_be_visible()  # on the Runs page, shown by Start's own answer
    expect(pg.locator("#llm_sft-start")).to_be_hidden()
    expect(pg.locator("#run-header")).to_contain_text("next in the queue")
    copy_id = run_box.input_value()
    assert copy_id != run_id and ctx.store.get_run(copy_id)["params"]["max_steps"] == 4000
    pg.locator("#run-stop").click()  # a queued run is cancelled
    expect(pg.locator("#run-status")).to_have_text("stopped")

    show_run(pg, run_id)
    pg.locator("#run-stop").click()
    expect(pg.locator("#run-status")).to_have_text("stopped", timeout=90_000)
    assert ctx.store.get_run(run_id)["status"] == "stopped"
    expect(pg.locator("#run-resume")).to_be_enabled()
    shot(pg, "4-stopped")

    # switching runs: the previous run's error message and download link go; a succeeded run offers no Resume
    fake_run(ctx, "failed-run", "failed", error="CUDA out of memory")
    done = fake_run(ctx, "done-run", "succeeded")
    (done / "model").mkdir()
    (done / "model" / "config.json").write_text("{}")
    show_run(pg, "failed-run")
    expect(pg.locator("#run-error")).to_contain_text("CUDA out of memory")
    show_run(pg, "done-run")
    expect(pg.locator("#run-error")).to_be_hidden()
    expect(pg.locator("#run-resume")).to_be_disabled()
    pg.locator("#run-download").click()
    expect(pg.locator("#run-file")).to_contain_text("done-run")
    show_run(pg, "failed-run")
    expect(pg.locator("#run-file")).to_be_hidden()
    expect(pg.locator("#run-header")).to_contain_text("failed-run")


def test_bad_upload_is_explained_and_queues_nothing(studio, page, tmp_path):
    from playwright.sync_api import expect

    url, ctx = studio
    bad = tmp_path / "broken.csv"
    bad.write_text("question,answer\n")
    pg = page
    pg.goto(url)
    pg.locator("#llm_sft-upload input[type=file]").set_input_files(str(bad))
    expect(pg.locator("#llm_sft-data_msg")).to_contain_text("has a header but no data rows")
    pg.locator("#llm_sft-base_model input").fill("some/model")
    pg.locator("#llm_sft-start").click()
    expect(pg.locator("#llm_sft-data_msg")).to_contain_text("Add at least one row")
    expect(pg.get_by_text(re.compile("Not started"))).to_be_visible()
    shot(pg, "5-bad-upload")
    assert ctx.store.list_runs() == []
    assert list(ctx.engine.runs_dir.iterdir()) == []


def test_problems_marked_beside_fields_and_load_config_fills_a_form(studio, page, tmp_path):
    from playwright.sync_api import expect

    url, ctx = studio
    pg = page
    pg.goto(url)
    lr = pg.locator("#llm_sft-learning_rate")
    lr.locator("input").fill("-1")
    pg.locator("#llm_sft-base_model input").fill("some/model")
    pg.locator("#llm_sft-check").click()
    expect(lr).to_have_class(re.compile(r"\btp-invalid\b"))
    expect(lr).to_contain_text("⚠ Parameter")
    expect(pg.locator("#llm_sft-batch_size")).not_to_have_class(re.compile(r"\btp-invalid\b"))
    shot(pg, "6-field-marked")
    lr.locator("input").fill("0.0002")
    pg.locator("#llm_sft-config").click()  # Config validates the parameters too: the mark goes
    expect(lr).not_to_have_class(re.compile(r"\btp-invalid\b"))
    expect(lr).not_to_contain_text("⚠")
    lr.locator("input").fill("7")
    pg.locator("#llm_sft-config").click()
    expect(lr).to_have_class(re.compile(r"\btp-invalid\b"))
    expect(lr).to_contain_text("<= 1")
    lr.locator("input").fill("0.0002")
    pg.locator("#llm_sft-check").click()
    expect(lr).not_to_have_class(re.compile(r"\btp-invalid\b"))

    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good", "bad"] * 10, "stars": ["pos", "neg"] * 10}).to_csv(csv, index=False)
    config = tmp_path / "saved.yaml"
    config.write_text(
        "task: text_classification\nname: loaded run\nparams:\n"
        f"  base_model: some/bert\n  data_path: {csv}\n  epochs: 7\n"
        "  column_mapping: {text: review, target: stars}\n"
    )
    pg.get_by_test_id("Load config-upload-button").set_input_files(str(config))  # the button's file input
    # the server fills the form within seconds; Chromium applying it took 15-40 s on a loaded 2-core box
    expect(pg.locator("#text_classification-epochs input")).to_have_value("7", timeout=90_000)
    expect(pg.locator("#text_classification-map-text input")).to_have_value("review")
    expect(pg.locator("#text_classification-preview").get_by_test_id("cell-0-0").first).to_have_text("good")
    shot(pg, "7-config-loaded")
    pg.locator("#text_classification-config").click()
    expect(pg.locator("#tp-config_yaml")).to_contain_text("task: text_classification")
    expect(pg.locator("#tp-config_yaml")).to_contain_text("epochs: 7")
    expect(pg.locator("#tp-config_cmd")).to_contain_text("trainpad --data-dir")
    assert ctx.store.list_runs() == []
