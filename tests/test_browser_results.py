"""Real-browser tests of the result pages (issues 24 and 25): the Playground's side by side (two tiny models answer
one message, a vote saved as a preference row), a run's evaluations on the Runs page handed to the Evaluate page,
and empty or one-point results shown in words. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.test_browser import (  # noqa: F401 - the same Chromium set-up
    ARGS,
    CHROMIUM,
    page,  # noqa: F401 - fixture
    shot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)"),
]


def model_run(ctx, run_id: str, model: Path, task: str = "llm_sft", params: dict | None = None) -> Path:
    """A succeeded run whose model folder is ``model`` (nothing trained)."""
    run_dir = ctx.engine.runs_dir / run_id
    run_dir.mkdir(parents=True)
    shutil.copytree(model, run_dir / "model")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": task, "params": params or {}}))
    (run_dir / "train.log").write_text("done\n")
    now = time.time()
    row = {"id": run_id, "name": run_id, "task": task, "status": "succeeded", "run_dir": str(run_dir)}
    ctx.store.insert_run(row | {"params": json.dumps(params or {}), "started_at": now - 5, "ended_at": now})
    return run_dir


def open_page(pg, page_id: str, shown: str) -> None:
    """Show a page by its tab button once the page has loaded (its load event shows the page it was on last)."""
    from playwright.sync_api import expect

    button = pg.locator(f"#tab-{page_id}-button")
    expect(button).to_be_visible()
    for _ in range(10):
        button.click()
        pg.wait_for_timeout(1000)
        if pg.locator(shown).is_visible():
            return
    expect(pg.locator(shown)).to_be_visible()


def settled(pg, selectors: list[str], quiet_ms: int = 2000) -> None:
    """Wait until the values of these inputs have not changed for ``quiet_ms`` (a stream has ended)."""
    read = f"() => {json.dumps(selectors)}.map(s => document.querySelector(s)?.value ?? '').join('\\u0000')"
    last, since = None, time.time()
    while time.time() - since < quiet_ms / 1000:
        now = pg.evaluate(read)
        if now != last:
            last, since = now, time.time()
        pg.wait_for_timeout(200)


def choose(pg, elem_id: str, run_id: str) -> None:
    """Pick the run ``run_id`` in a Dropdown of runs (its choices may arrive after it opens): type the id, click the
    option that names it."""
    from playwright.sync_api import expect

    box = pg.locator(f"#{elem_id} input")
    option = pg.locator(f"#{elem_id}").get_by_role("option", name=re.compile(rf"· {re.escape(run_id)}$"))
    for _ in range(10):
        box.click()
        box.fill(run_id)
        pg.wait_for_timeout(300)
        if option.count():
            break
        box.blur()
        pg.wait_for_timeout(700)
    option.first.click()
    expect(box).to_have_value(re.compile(re.escape(run_id)))


def talking_llama(out_dir: Path, seed: int) -> Path:
    """A tiny random Llama that says something: its output layer is its own (with tied embeddings a random model
    repeats the prompt's last token, a newline, and an answer box looks empty); each seed answers differently."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny import CHATML, build_tokenizer, causal_lm_config

    tok = build_tokenizer(out_dir, chat_template=CHATML)
    torch.manual_seed(seed)
    config = LlamaConfig(**causal_lm_config(tok, 32, 2), tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(str(out_dir))
    return out_dir


def test_side_by_side_two_models_answer_and_a_vote_is_saved(studio, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    from engine.eval import preferences as prefs

    url, ctx = studio
    model_run(ctx, "run-a", talking_llama(tmp_path / "llama-a", seed=1))
    model_run(ctx, "run-b", talking_llama(tmp_path / "llama-b", seed=3))
    pg = page
    pg.goto(url)
    open_page(pg, "playground", "#sbs")
    pg.locator("#sbs").get_by_role("button", name="Side by side").first.click()
    expect(pg.locator("#sbs-note")).to_contain_text("Both models are loaded at once")
    for side, run_id in (("a", "run-a"), ("b", "run-b")):  # choices are read when a box gets the focus
        choose(pg, f"sbs-{side}", run_id)
    pg.locator("#sbs-text textarea").fill("what is 2 plus 3?")
    # every value each answer box shows, recorded in the page: a streamed answer grows through several
    pg.evaluate(
        """() => { window.seen = {a: new Set(), b: new Set()};
        setInterval(() => { for (const s of ['a', 'b']) {
          const t = document.querySelector('#sbs-out-' + s + ' textarea'); if (t && t.value) window.seen[s].add(t.value);
        } }, 10); }"""
    )
    pg.locator("#sbs-go").click()
    out_a, out_b = pg.locator("#sbs-out-a textarea"), pg.locator("#sbs-out-b textarea")
    pg.wait_for_function(
        "() => document.querySelector('#sbs-out-a textarea').value && "
        "document.querySelector('#sbs-out-b textarea').value",
        timeout=120_000,
    )
    settled(pg, ["#sbs-out-a textarea", "#sbs-out-b textarea"])
    answer_a, answer_b = out_a.input_value(), out_b.input_value()
    assert answer_a.strip() and answer_b.strip() and answer_a != answer_b, "each model answered, in its own column"
    seen = pg.evaluate("() => [window.seen.a.size, window.seen.b.size]")
    assert seen[0] + seen[1] > 2, f"the answers streamed in (values seen: {seen})"
    shot(pg, "side_by_side_answered")
    pg.locator("#sbs-vote-b").click()
    expect(pg.locator("#sbs-voted")).to_contain_text("Saved (1 votes)")
    votes = prefs.read_votes(prefs.votes_file(ctx.data_dir, ""))
    assert len(votes) == 1 and votes[0]["vote"] == "B"
    assert (votes[0]["model_a"], votes[0]["model_b"]) == ("run-a", "run-b")
    assert prefs.as_dpo(votes) == [{"prompt": "what is 2 plus 3?", "chosen": answer_b, "rejected": answer_a}]
    shot(pg, "side_by_side_voted")


def test_playground_forgets_an_error_and_the_answer_when_another_run_is_picked(studio, page):  # noqa: F811
    """Issue 24 item 3: a red "Error" and the previous answer stayed on the Playground after picking another run."""
    from playwright.sync_api import expect

    url, ctx = studio
    for run_id in ("broken", "other"):
        run_dir = model_run(ctx, run_id, Path(__file__).parent, task="text_classification")
        shutil.rmtree(run_dir / "model")  # its prediction fails: no model/ folder
    pg = page
    pg.goto(url)
    open_page(pg, "playground", "#play-run")
    choose(pg, "play-run", "broken")
    expect(pg.locator("#play-text")).to_be_visible()
    pg.locator("#play-text textarea").fill("a great film")
    pg.locator("#play-predict").click()
    output = pg.locator("#play-output")
    expect(output).to_contain_text("Error")  # the failed prediction marks its output
    shot(pg, "playground_error")
    choose(pg, "play-run", "other")
    expect(pg.locator("#play-info")).to_contain_text("other")
    pg.wait_for_timeout(1500)
    expect(output).not_to_contain_text("Error")
    shot(pg, "playground_error_cleared")


def evaluation(ctx, eval_id: str, run_id: str, metrics: dict, rows: list[dict]) -> None:
    """An evaluation of ``run_id`` as the supervisor records a finished eval job, with its predictions file."""
    job_dir = ctx.data_dir / "jobs" / eval_id
    job_dir.mkdir(parents=True)
    predictions = job_dir / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = ctx.engine.store
    store.insert_job({"id": eval_id, "kind": "eval", "run_id": run_id, "user": "", "job_dir": str(job_dir)})
    assert store.update_job_if(eval_id, "queued", {"status": "running"})
    row = {"id": eval_id, "job_id": eval_id, "user": "", "run_id": run_id, "model": run_id, "task": "llm_sft"}
    row |= {"data": f"/data/{eval_id}.jsonl", "data_hash": eval_id, "n_examples": len(rows)}
    row |= {"metrics": json.dumps(metrics), "key_metric_name": "exact_match", "key_metric": metrics["exact_match"]}
    row |= {"greater_is_better": 1, "predictions_path": str(predictions), "settings": "{}"}
    assert store.finish_job_with_evaluation(eval_id, {"status": "succeeded", "ended_at": time.time()}, row)


def test_runs_page_shows_evaluations_and_hands_the_run_to_the_evaluate_page(studio, page, tmp_path):  # noqa: F811
    """Issue 25: a run's page shows its evaluations (newest first, the worst rows of one inline), and Evaluate this
    run opens the Evaluate page with the run picked. Issue 24 item 7 on the same page: importance as horizontal bars,
    single values in words, no stray legend."""
    import pandas as pd
    from playwright.sync_api import expect

    from tests.test_browser import show_run

    url, ctx = studio
    (tmp_path / "model").mkdir()
    run_dir = model_run(ctx, "tuned", tmp_path / "model")
    pd.DataFrame({"feature": [f"a_long_column_name_{i}" for i in range(30)], "importance": range(30)}).to_csv(
        run_dir / "model" / "feature_importance.csv", index=False
    )
    t0 = time.time() - 60
    metrics = [{"step": s, "epoch": s / 4, "name": "loss", "value": 3.0 / s, "time": t0 + s} for s in range(1, 5)]
    metrics += [{"step": 1, "epoch": 0.25, "name": "learning_rate", "value": 2e-4, "time": t0 + 1}]
    metrics += [
        {"step": s, "epoch": s / 4, "name": f"eval_{m}", "value": s / 10, "time": t0 + s}
        for s in (2, 4)
        for m in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "exact_match", "rouge_l")
    ]
    ctx.store.add_metrics("tuned", metrics)
    evaluation(ctx, "ev-old", "tuned", {"exact_match": 0.25}, [{"prompt": "2+2", "prediction": "5", "score": 0}])
    worst = [{"prompt": "capital of Peru?", "prediction": "Paris", "reference": "Lima", "score": 0}]
    evaluation(ctx, "ev-new", "tuned", {"exact_match": 0.75, "chrf": 80.5}, worst)
    pg = page
    pg.goto(url)
    open_page(pg, "runs", "#run-id")
    show_run(pg, "tuned")
    table = pg.locator("#run-evals")
    expect(table).to_be_visible()
    expect(table.get_by_test_id("cell-0-0").first).to_have_text("ev-new")
    expect(table.get_by_test_id("cell-1-0").first).to_have_text("ev-old")
    expect(pg.locator("#run-evals-note")).to_contain_text("2 evaluations")
    table.get_by_test_id("cell-0-1").first.click()
    expect(pg.locator("#run-eval-worst")).to_contain_text("capital of Peru?")
    # the charts: single values said in words, one line per chart drawn, importance bars readable
    expect(pg.locator("#run-points")).to_contain_text("learning rate 0.0002 (step 1)")
    expect(pg.locator("#chart-lr")).to_be_hidden()
    expect(pg.locator("#chart-other")).to_be_visible()
    expect(pg.locator("#result-importance")).to_be_visible()
    pg.locator("#chart-other").scroll_into_view_if_needed()
    shot(pg, "runs_page_evaluations")
    other = pg.locator("#chart-other").bounding_box()
    drawn = pg.locator("#chart-other canvas, #chart-other svg").first.bounding_box()
    assert drawn["y"] + drawn["height"] <= other["y"] + other["height"] + 1, "the long title keeps its plot inside"
    expect(pg.locator("#chart-loss")).not_to_contain_text("series")
    pg.locator("#run-evaluate").click()
    expect(pg.locator("#eval-go")).to_be_visible()
    expect(pg.locator("#eval-model input")).to_have_value(re.compile("tuned"))
    expect(pg.locator("#eval-history")).to_contain_text("ev-new")
    shot(pg, "evaluate_page_from_run")


def test_a_one_point_chart_is_a_number_until_its_second_point_draws_a_line(studio, page):  # noqa: F811
    """Issue 24 item 2: a live run's chart with one point is said in words; the tick that brings its second point
    shows the chart with its line (it is rebuilt then: see ui.runs.mark_redraws)."""
    from playwright.sync_api import expect

    from tests.test_browser import show_run
    from tests.test_ui_runs import fake_run

    url, ctx = studio
    t0 = time.time() - 30
    first = [
        {"step": 1, "epoch": 0.1, "name": n, "value": v, "time": t0}
        for n, v in (("loss", 3.0), ("learning_rate", 2e-4))
    ]
    fake_run(ctx, "live", "running", metrics=first, step=1, max_steps=10)
    pg = page
    pg.goto(url)
    open_page(pg, "runs", "#run-id")
    show_run(pg, "live")
    expect(pg.locator("#run-points")).to_contain_text("learning rate 0.0002 (step 1)")
    expect(pg.locator("#run-points")).to_contain_text("training loss 3 (step 1)")
    expect(pg.locator("#chart-lr")).to_be_hidden()
    ctx.store.add_metrics("live", [{"step": 2, "epoch": 0.2, "name": "learning_rate", "value": 1e-4, "time": t0 + 1}])
    ctx.store.update_if("live", "running", {"step": 2})
    expect(pg.locator("#chart-lr")).to_be_visible()
    expect(pg.locator("#run-points")).not_to_contain_text("learning rate")
    expect(pg.locator("#chart-lr g.mark-line path").first).to_be_attached()
    expect(pg.locator("#chart-lr")).to_contain_text("learning rate (blue)")
    shot(pg, "one_point_then_line")
