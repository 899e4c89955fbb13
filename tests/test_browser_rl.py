"""Real-browser test of the GRPO tab: two reward functions chosen in the form, the run page shows a reward chart
with one series per function and the rollouts view (completions with each reward's score)."""

from __future__ import annotations

import json

import pytest

from tests.test_browser import (  # noqa: F401 - the same Chromium set-up
    ARGS,
    CHROMIUM,
    page,  # noqa: F401 - fixture
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_grpo_tab_two_rewards_charts_and_rollouts(studio, page, tiny_llama, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = studio
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"what is {i} plus 1?", "answer": str(i + 1)}) + "\n" for i in range(16))
    )
    pg = page
    pg.goto(url)
    pg.get_by_role("tab", name="LLM reinforcement learning (GRPO)").click()
    pg.locator("#llm_grpo-base_model input").fill(str(tiny_llama))
    pg.locator("#llm_grpo-upload input[type=file]").set_input_files(str(prompts))
    expect(pg.locator("#llm_grpo-preview").get_by_test_id("cell-0-0").first).to_have_text("what is 0 plus 1?")
    pg.locator("#llm_grpo-reward_functions textarea, #llm_grpo-reward_functions input").first.fill(
        "length, exact_match"
    )
    pg.locator("#llm_grpo-max_completion_length input").fill("4")
    pg.locator("#llm_grpo-target_length input").fill("2")
    pg.locator("#llm_grpo-valid_fraction input").fill("0")
    pg.locator("#llm_grpo-advanced").get_by_role("button", name="Advanced").first.click()
    from tests.test_browser import fill_settled

    fill_settled(pg, "#llm_grpo-max_steps input", "3")
    fill_settled(pg, "#llm_grpo-logging_steps input", "1")
    pg.locator("#llm_grpo-start").click()
    expect(pg.locator("#run-status")).to_have_text("succeeded", timeout=180_000)
    chart = pg.locator("#chart-reward")
    expect(chart).to_be_visible()
    expect(chart).to_contain_text("length reward")
    expect(chart).to_contain_text("exact match reward")
    rollouts = pg.locator("#result-rollouts")
    expect(rollouts).to_be_visible()
    expect(rollouts).to_contain_text("exact_match")
    expect(rollouts).to_contain_text("what is")
    shot(pg, "grpo_run_page")
