"""Real-browser tests of the Train page's forms, built when their task is picked (``ui.studio``'s ``gr.render``):
what the user typed survives switching tasks, messages go when the inputs they were computed from change, the base
model box keeps what was typed on Enter and lists the folders earlier runs used, and Start shows the run's page from
its top. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.test_browser import CHROMIUM, fake_run, page, pick, shot  # noqa: F401  (``page`` is a fixture)
from tests.tiny import build_tiny_bert, chat_rows

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)"),
]


def box(pg, elem_id: str):
    return pg.locator(f"#{elem_id} textarea, #{elem_id} input").first


def upload(pg, elem_id: str, path: Path) -> None:
    """Put ``path`` in the File ``elem_id`` (clearing the file it shows first)."""
    clear = pg.locator(f"#{elem_id}").get_by_role("button", name="Clear")
    if clear.count():
        clear.first.click()
    pg.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


def test_switching_tasks_keeps_what_was_typed_and_builds_one_form(studio, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = studio
    pg = page
    pg.goto(url)
    box(pg, "llm_sft-learning_rate").fill("0.003")
    box(pg, "llm_sft-run_name").fill("kept name")
    pick(pg, "llm_sft-packing", "wrapped")
    pg.locator("#llm_sft-advanced").get_by_text("Advanced").first.click()
    expect(pg.locator("#llm_sft-lora_r")).to_be_visible()
    pg.locator("#llm_sft-use_lora input").uncheck()  # a field shown only with LoRA goes (in the browser)
    expect(pg.locator("#llm_sft-lora_r")).to_be_hidden()
    expect(pg.locator("#llm_sft-eval_steps")).to_be_hidden()
    pick(pg, "llm_sft-eval_strategy", "steps")
    expect(pg.locator("#llm_sft-eval_steps")).to_be_visible()
    pg.get_by_role("tab", name="Text", exact=True).click()  # a family: its first task's form
    expect(pg.locator("#text_classification-start")).to_be_visible()
    assert pg.locator("#llm_sft-start").count() == 0, "one task's form on the page at a time"
    pg.get_by_role("tab", name="Token classification", exact=True).click()
    expect(pg.locator("#token_classification-start")).to_be_visible()
    box(pg, "token_classification-epochs").fill("7")
    pg.get_by_role("tab", name="LLM", exact=True).click()
    expect(box(pg, "llm_sft-learning_rate")).to_have_value("0.003")
    expect(box(pg, "llm_sft-run_name")).to_have_value("kept name")
    expect(box(pg, "llm_sft-packing")).to_have_value("wrapped")
    expect(pg.locator("#llm_sft-use_lora input")).not_to_be_checked()
    expect(box(pg, "llm_sft-eval_strategy")).to_have_value("steps")
    pg.get_by_role("tab", name="Text", exact=True).click()  # the family's last picked task, with its edit
    expect(box(pg, "token_classification-epochs")).to_have_value("7")
    shot(pg, "forms-1-switched-back")


def test_messages_go_when_their_inputs_change(studio, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = studio
    good = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["good", "bad"] * 10, "label": ["pos", "neg"] * 10}).to_csv(good, index=False)
    other = tmp_path / "other.csv"
    pd.DataFrame({"body": ["good", "bad"] * 10, "label": ["pos", "neg"] * 10}).to_csv(other, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    pg = page
    pg.goto(url)
    pg.get_by_role("tab", name="Text", exact=True).click()
    p = "text_classification"
    pg.locator(f"#{p}-base_model input").fill(str(build_tiny_bert(tmp_path / "bert", ["good", "bad"])))
    upload(pg, f"{p}-upload", other)  # no `text` column
    expect(pg.locator(f"#{p}-preview")).to_be_visible()
    pg.locator(f"#{p}-check").click()
    expect(pg.locator(f"#{p}-map-text")).to_have_class(re.compile(r"\btp-invalid\b"))
    upload(pg, f"{p}-upload", good)  # a good file: the red mark goes
    expect(pg.locator(f"#{p}-preview").get_by_test_id("cell-0-0").first).to_have_text("good")
    expect(pg.locator(f"#{p}-map-text")).not_to_have_class(re.compile(r"\btp-invalid\b"))
    pg.locator(f"#{p}-check").click()
    expect(pg.locator(f"#{p}-form_msg")).to_contain_text("✓ Parameters are valid")
    box(pg, f"{p}-epochs").fill("2")  # an edit: the verdict was about other values
    expect(pg.locator(f"#{p}-form_msg")).not_to_contain_text("✓")
    pg.locator(f"#{p}-check").click()
    expect(pg.locator(f"#{p}-form_msg")).to_contain_text("✓ Parameters are valid")
    upload(pg, f"{p}-upload", empty)
    expect(pg.locator(f"#{p}-data_msg")).to_contain_text("empty")
    expect(pg.locator(f"#{p}-form_msg")).not_to_contain_text("✓")  # not "valid" above "empty"
    shot(pg, "forms-2-stale-cleared")


def test_base_model_box_keeps_the_typed_id_and_lists_used_folders(studio, page, tiny_llama):  # noqa: F811
    from playwright.sync_api import expect

    url, ctx = studio
    used = ctx.data_dir / "elsewhere" / "my-llama"
    shutil.copytree(tiny_llama, used)
    fake_run(ctx, "old-run", "succeeded", base_model=str(used))
    pg = page
    pg.goto(url)
    base = pg.locator("#llm_sft-base_model input")
    base.fill("HuggingFaceTB/SmolLM2")  # a prefix of a suggested model's id
    base.press("Enter")
    expect(base).to_have_value("HuggingFaceTB/SmolLM2")
    base.fill("")
    base.click()
    option = pg.locator("#llm_sft-base_model").get_by_role("option", name=re.compile("my-llama · used in a run"))
    expect(option).to_be_visible()
    option.click()
    expect(base).to_have_value(re.compile("my-llama"))


def test_start_shows_the_run_from_the_top_and_duplicate_fills_its_task(studio, page, tiny_llama, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, ctx = studio
    data = tmp_path / "chat.csv"
    rows = [{"prompt": r["messages"][0]["content"], "completion": r["messages"][1]["content"]} for r in chat_rows(32)]
    pd.DataFrame(rows).to_csv(data, index=False)
    pg = page
    pg.goto(url)
    pg.get_by_role("tab", name="LLM preference tuning (DPO)", exact=True).click()
    pg.get_by_role("tab", name="LLM fine-tuning (SFT)", exact=True).click()
    base = pg.locator("#llm_sft-base_model input")
    base.fill(str(tiny_llama))
    base.press("Enter")
    box(pg, "llm_sft-data_path").fill(str(data))
    box(pg, "llm_sft-data_path").press("Enter")
    expect(pg.locator("#llm_sft-preview")).to_be_visible()
    box(pg, "llm_sft-max_length").fill("32")
    box(pg, "llm_sft-run_name").fill("from the top")
    pg.locator("#llm_sft-start").scroll_into_view_if_needed()
    assert pg.evaluate("window.scrollY") > 300, "Start is far down the form"
    pg.locator("#llm_sft-start").click()
    header = pg.locator("#run-header")
    expect(header).to_contain_text("from the top", timeout=15_000)
    pg.wait_for_function("() => window.scrollY === 0")
    assert header.bounding_box()["y"] < pg.viewport_size["height"], "the run's header is on screen"
    run_id = box(pg, "run-id").input_value()
    pg.locator("#run-stop").click()
    ctx.engine.wait(run_id, timeout=120)
    pg.get_by_role("tab", name="Train", exact=True).click()
    pg.get_by_role("tab", name="Text", exact=True).click()  # another task shown: Duplicate must bring SFT back
    expect(pg.locator("#text_classification-start")).to_be_visible()
    pg.get_by_role("tab", name="Runs", exact=True).click()
    pg.locator("#run-duplicate").click()
    expect(box(pg, "llm_sft-run_name")).to_have_value("from the top (copy)", timeout=10_000)
    expect(box(pg, "llm_sft-max_length")).to_have_value("32")
    expect(pg.get_by_role("tab", name="LLM fine-tuning (SFT)", exact=True)).to_have_attribute("aria-selected", "true")
    shot(pg, "forms-3-duplicated")
