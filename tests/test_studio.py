"""Studio items a new user trips on (issue 17): the base model settled by Check, charts, ETA, run actions."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.preflight import models
from engine.task import get_task
from engine.train import charts
from tests.test_browser import shot
from ui import task_view
from ui.context import Context


@pytest.fixture
def ctx(supervisor) -> Context:
    return Context(supervisor)


def model_folder(path, model_type: str, arch: str):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": [arch]}))
    (path / "tokenizer_config.json").write_text("{}")  # a saved model's tokenizer (Check asks for one)
    return path


# --- 1. the base model is settled before launch -------------------------------------------------


def test_base_model_problems_say_what_is_wrong_beside_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sft = get_task("llm_sft")
    bert = model_folder(tmp_path / "bert", "bert", "BertForMaskedLM")
    llama = model_folder(tmp_path / "llama", "llama", "LlamaForCausalLM")
    (tmp_path / "empty").mkdir()
    t0 = time.time()
    missing = models.base_model_problems(sft, str(tmp_path / "nope"))
    not_model = models.base_model_problems(sft, str(tmp_path / "empty"))
    wrong_class = models.base_model_problems(sft, str(bert))
    offline = models.base_model_problems(sft, "someone/not-downloaded-model")
    assert time.time() - t0 < 1.0  # offline: no waiting on the network
    assert "does not exist" in missing[0]
    assert "not a model" in not_model[0] and "config.json" in not_model[0]
    assert "BertForMaskedLM" in wrong_class[0] and "causal language model" in wrong_class[0]
    assert "offline" in offline[0] and "works online" in offline[0]
    assert all(p.field == "base_model" for p in missing + not_model + wrong_class + offline)
    assert models.base_model_problems(sft, str(llama)) == []
    # the same BERT fits text classification; tabular takes no base model at all
    assert models.base_model_problems(get_task("text_classification"), str(bert)) == []
    assert models.base_model_problems(get_task("tabular"), "") == []
    vit = model_folder(tmp_path / "vit", "vit", "ViTForImageClassification")
    assert "image model" in models.base_model_problems(get_task("text_classification"), str(vit))[0]


def test_check_refuses_a_missing_model_and_marks_the_field(tmp_path, ctx):
    from tests.test_ui_forms import write_chat_csv

    task = get_task("llm_sft")
    values = {"base_model": str(tmp_path / "no-such-model"), "data_path": str(write_chat_csv(tmp_path / "qa.csv"))}
    form_md, _, problems = task_view.check_report(ctx, task, values)
    assert "✓" not in form_md and "does not exist" in form_md
    targets = task_view.problem_targets(problems, values, ["base_model", "data_path"], ["prompt"])
    assert "does not exist" in targets["base_model"][0]
    run_id, param_problems, _ = task_view.try_start(ctx, task, values)
    assert run_id == "" and ctx.store.list_runs() == []


# --- 2, 3. what the worker reports for the charts and the ETA ---------------------------------


def test_events_keep_train_loss_apart_report_interval_throughput_and_pace(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from engine import runfiles as rf
    from engine.train import trainer as train_utils

    clock = [1000.0]
    monkeypatch.setattr(train_utils.time, "time", lambda: clock[0])
    monkeypatch.setattr(train_utils, "set_threads", lambda *a: 1)
    cb = train_utils.EventsCallback(tmp_path)
    args = SimpleNamespace(
        per_device_train_batch_size=4, gradient_accumulation_steps=1, world_size=1, num_train_epochs=1
    )
    state = SimpleNamespace(global_step=100, max_steps=200, epoch=1.0, num_input_tokens_seen=0)  # resumed at 100
    cb.on_train_begin(args, state, None)
    for step in range(101, 111):  # 10 steps, 0.5 s each
        clock[0] += 0.5
        state.global_step = step
        cb.on_step_end(args, state, SimpleNamespace(should_save=False, should_training_stop=False))
    cb.on_log(args, state, None, logs={"loss": 1.5, "learning_rate": 1e-4})
    cb.on_log(args, state, None, logs={"train_loss": 2.0, "train_runtime": 5.0})
    events = [e for e in rf.read_events(tmp_path, 0)[0] if isinstance(e, dict)]
    logs = [e for e in events if e["type"] == "log"]
    assert logs[0]["samples_per_second"] == pytest.approx(10 * 4 / 5.0)  # the interval's rate: no resume spike
    assert "loss" not in logs[1] and logs[1]["train_loss"] == 2.0  # no fake last `loss` point
    paces = [e for e in events if e["type"] == "progress"]
    assert paces and paces[-1]["step_time"] == pytest.approx(0.5) and paces[-1]["step"] > 101


# --- in a real browser: one studio for the module ----------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The studio launched once for this module, its supervisor thread stopped (fake runs stay as written),
    and one Chromium page: (url, engine supervisor, page)."""
    from playwright.sync_api import expect, sync_playwright

    import app
    from tests.conftest import free_port
    from tests.test_browser import ARGS

    data_dir = tmp_path_factory.mktemp("studio") / "data"
    old = os.environ.get("TRAINPAD_DATA_DIR")
    os.environ["TRAINPAD_DATA_DIR"] = str(data_dir)
    ctx, demo = app.create(data_dir)
    ctx.engine.shutdown()
    port = free_port()
    app.launch(ctx, demo, port=port, prevent_thread_lock=True, quiet=True)
    expect.set_options(timeout=60_000)  # the machine is shared with other agents
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        yield f"http://127.0.0.1:{port}/", ctx.engine, page
        browser.close()
    demo.close()
    if old is None:
        os.environ.pop("TRAINPAD_DATA_DIR", None)
    else:
        os.environ["TRAINPAD_DATA_DIR"] = old


def insert_run(sup, run_id: str, status: str, metrics: list[dict], **row) -> None:
    run_dir = sup.runs_dir / run_id
    (run_dir / rf.CHECKPOINTS / "checkpoint-4").mkdir(parents=True)
    (run_dir / rf.LOG).write_text("step 1\n")
    sup.store.insert_run(
        {
            "id": run_id,
            "name": run_id,
            "task": "llm_sft",
            "status": status,
            "backend": "local",
            "params": json.dumps({"base_model": "m"}),
            "base_model": "m",
            "run_dir": str(run_dir),
            "key_metric_name": "eval_loss",
            "created_at": time.time(),
            "started_at": time.time() - 60,
            **row,
        }
    )
    sup.store.add_metrics(run_id, metrics)


def curve(steps, t0: float, eval_every: int = 0) -> list[dict]:
    out = []
    for s in steps:
        out.append({"step": s, "epoch": s / 10, "name": "loss", "value": 3.0 / s, "time": t0 + s})
        if eval_every and s % eval_every == 0:
            out.append({"step": s, "epoch": s / 10, "name": "eval_loss", "value": 2.0 / s, "time": t0 + s})
    return out


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)")
def test_browser_check_marks_a_missing_model_and_runs_page_reads_well(live, tmp_path):
    from playwright.sync_api import expect

    url, sup, pg = live
    t0 = time.time() - 100
    insert_run(sup, "parent-run", "stopped", curve(range(1, 5), t0, eval_every=2), step=4, max_steps=10)
    insert_run(sup, "child-run", "succeeded", curve(range(5, 11), t0, eval_every=2), step=10, max_steps=10)
    sup.store.update_if("child-run", "succeeded", {"parent_id": "parent-run"})
    insert_run(sup, "waiting-1", "queued", [], started_at=None)
    insert_run(sup, "waiting-2", "queued", [], started_at=None)
    pg.goto(url)

    # 1. Check settles the base model: the problem sits beside the field
    base = pg.locator("#llm_sft-base_model")
    base.locator("input").fill(str(tmp_path / "no-such-model"))
    base.locator("input").press("Enter")
    pg.locator("#llm_sft-check").click()
    expect(base).to_have_class(re.compile(r"\btp-invalid\b"))
    expect(base).to_contain_text("does not exist")
    shot(pg, "11-missing-model-marked")
    red = "el => getComputedStyle(el).color"
    assert pg.locator("#llm_sft-form_msg li").first.evaluate(red) == "rgb(185, 28, 28)"  # problems in red
    expect(pg.locator("#llm_sft-train_split")).to_be_hidden()  # Hub-only: no Hub id or folder given
    pg.locator("#llm_sft-data_path textarea, #llm_sft-data_path input").first.fill("someone/dataset")
    expect(pg.locator("#llm_sft-train_split")).to_be_visible()

    # 2, 7. the resumed run's charts include its parent's curve, colours named; succeeded: no Resume
    pg.get_by_role("tab", name="Runs").click()
    run_box = pg.locator("#run-id textarea, #run-id input").first
    run_box.fill("child-run")
    run_box.press("Enter")
    expect(pg.locator("#run-status")).to_have_text("succeeded")
    expect(pg.locator("#chart-loss")).to_contain_text("training loss (blue), validation loss (orange)")
    expect(pg.locator("#run-resume")).to_be_disabled()
    expect(pg.locator("#chart-lr")).to_be_hidden()  # nothing logged: no empty panel
    shot(pg, "12-resumed-run-charts")

    run_box.fill("waiting-2")
    run_box.press("Enter")
    expect(pg.locator("#run-header")).to_contain_text("1 run ahead in the queue")
    shot(pg, "13-queued-place")


# 4. results that fit the task: each task's run page, from the files its runs write (fake runs written here)
INJECTION = "**x**<img src=x onerror=alert(1)>"
SAMPLE = {"prompt": "user: what is 2 plus 3?", "reference": "2 plus 3 is 5."}
RESULT_RUNS = {  # run -> (task, {file in the run folder: content}, result views shown)
    "text-classification": (
        "text_classification",
        {"confusion_matrix.json": json.dumps({"labels": ["neg", "pos"], "matrix": [[8, 2], [1, 9]]})},
        {"confusion": "pos", "per_class": "precision"},
    ),
    "token-classification": (
        "token_classification",
        {
            "per_entity.json": json.dumps(
                {
                    "PER": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "support": 41},
                    "LOC": {"precision": 0.7, "recall": 0.5, "f1": 0.583, "support": 12},
                }
            )
        },
        {"per_entity": "PER"},
    ),
    "text-regression": (
        "text_regression",
        {"predictions.csv": "true,predicted\n1.0,1.2\n2.0,1.8\n3.0,3.1\n4.0,3.7\n"},
        {"scatter": None},
    ),
    "tabular": (
        "tabular",
        {
            "model/leaderboard.csv": "model,cv_score,fit_seconds\nxgboost,0.91,3.2\nlinear,0.85,0.4\n",
            "model/feature_importance.csv": "feature,importance\nage,0.1\nfare,0.3\nclass,0.2\n",
            "confusion_matrix.json": json.dumps({"labels": ["died", "survived"], "matrix": [[50, 9], [12, 29]]}),
        },
        {"leaderboard": "xgboost", "importance": None, "confusion": "survived", "per_class": "recall"},
    ),
    "object-detection": (
        "object_detection",
        {"per_class_ap.json": json.dumps({"circle": 0.61, "square": 0.42, "triangle": -1.0})},
        {"per_class_ap": "not in validation"},
    ),
    "llm-sft": (
        "llm_sft",
        {
            "samples.jsonl": "".join(
                json.dumps({"step": s, **SAMPLE, "generated": g}) + "\n"
                for s, g in ((4, "2 plus"), (8, "2 plus 3 is 5."), (8, "3 plus 4 is 7."), (8, "9 plus 1 is 10."))
            )
        },
        {"samples": "2 plus 3 is 5."},
    ),
}


def show_run(pg, run_id: str) -> None:
    """Show ``run_id`` on the Runs page (again if the page's load, restoring the last watched run and its tab,
    overwrote it)."""
    from playwright.sync_api import expect

    box = pg.locator("#run-id textarea, #run-id input").first
    for _ in range(3):
        for _ in range(20):  # the page's load selects its tab once it is done: Runs again until it stays
            pg.get_by_role("tab", name="Runs").click()
            pg.wait_for_timeout(250)
            if box.is_visible():
                break
        box.fill(run_id)
        box.press("Enter")
        try:
            expect(pg.locator("#run-header")).to_contain_text(run_id, timeout=10_000)
            return
        except AssertionError:
            continue
    expect(pg.locator("#run-header")).to_contain_text(run_id)


def shot_of_run(pg, name: str) -> None:
    """A screenshot of the run's view, from its header to its last result view shown."""
    from tests.test_browser import ARTIFACTS

    boxes = [pg.locator("#run-header").bounding_box()]
    boxes += [el.bounding_box() for el in pg.locator("[id^=result-]").all() if el.is_visible()]
    top, bottom = min(b["y"] for b in boxes), max(b["y"] + b["height"] for b in boxes)
    ARTIFACTS.mkdir(exist_ok=True)
    scroll = pg.evaluate("window.scrollY")
    clip = {"x": 0, "y": top + scroll, "width": 1400, "height": bottom - top + 40}  # + a plot's axis labels
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, clip=clip)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)")
def test_browser_every_tasks_results_view_and_a_hostile_error_shown_as_text(live, tmp_path):
    from playwright.sync_api import expect

    url, sup, pg = live
    t0 = time.time() - 100
    for run_id, (task, files, _) in RESULT_RUNS.items():
        insert_run(sup, run_id, "succeeded", curve(range(1, 9), t0, eval_every=4), step=8, max_steps=8, task=task)
        for path, text in files.items():
            (sup.runs_dir / run_id / path).parent.mkdir(parents=True, exist_ok=True)
            (sup.runs_dir / run_id / path).write_text(text)
    error = f"Column `{INJECTION}` is not in the data. Columns found: {INJECTION}, body."
    insert_run(sup, "hostile-run", "failed", [], step=0, max_steps=8, name=INJECTION, error=error)
    if not pg.url.startswith(url):  # run alone (else the page the test above left is reused)
        pg.goto(url)
    views = {f"result-{k}" for k in charts.RESULTS}
    for run_id, (_, _, shown) in RESULT_RUNS.items():
        show_run(pg, run_id)
        for view, text in shown.items():
            box = pg.locator(f"#result-{view}")
            if text is None:  # a plot
                expect(box.locator("canvas, svg").first).to_be_visible()
            else:
                expect(box).to_contain_text(text)
        for hidden in views - {f"result-{v}" for v in shown}:
            expect(pg.locator(f"#{hidden}")).to_be_hidden()  # no empty panels
        shot_of_run(pg, f"results-{run_id}")
    expect(pg.locator("#result-samples").get_by_role("row")).to_have_count(1 + 3)  # the latest evaluation's only

    # stored text (a run name, a column named in an error) is shown as written, never as Markdown or HTML
    show_run(pg, "hostile-run")
    expect(pg.locator("#run-error")).to_contain_text(f"Columns found: {INJECTION}")
    expect(pg.locator("#run-header")).to_contain_text(INJECTION)
    assert pg.locator("#run-error img, #run-header img, #run-error strong:text('x')").count() == 0
    shot(pg, "results-hostile-error-as-text")

    # 8. Check on classification data: class counts and notes, as information (not drawn as problems, in red)
    rows = ["text,target"] + [f"good thing {i},pos" for i in range(40)] + [f"bad {i},neg" for i in range(30)]
    (tmp_path / "reviews.csv").write_text("\n".join([*rows, "meh,neutral", "so so,neutral"]) + "\n")
    pg.get_by_role("tab", name="Train").click()
    pg.get_by_role("tab", name="Text", exact=True).click()
    pg.get_by_role("tab", name="Text classification", exact=True).click()
    pg.locator("#text_classification-base_model input").fill("m")
    pg.locator("#text_classification-data_path textarea, #text_classification-data_path input").first.fill(
        str(tmp_path / "reviews.csv")
    )
    pg.locator("#text_classification-check").click()
    data_msg = pg.locator("#text_classification-data_msg")
    expect(data_msg).to_contain_text("Class counts in the")
    expect(data_msg).to_contain_text("Imbalanced classes: neutral")
    red = "el => getComputedStyle(el).color"
    assert all(li.evaluate(red) != "rgb(185, 28, 28)" for li in data_msg.locator("li").all())
    shot(pg, "check-class-counts")


# --- 5. the base model picker ---------------------------------------------------------------------


def test_model_picker_offers_suggested_then_local_folders_and_skips_the_hub_offline(ctx, monkeypatch):
    from ui import task_tab

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sft = get_task("llm_sft")
    assert sft.suggested_models[0] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for name in ("llm_dpo", "text_classification", "seq2seq", "image_classification", "object_detection", "asr"):
        assert get_task(name).suggested_models, name
    model_folder(ctx.models_dir / "my-llama", "llama", "LlamaForCausalLM")  # added after the app started
    t0 = time.time()
    update = task_tab.model_choices_update(ctx, sft)
    assert time.time() - t0 < 0.5  # offline: no Hub search, no waiting
    values = [v for _, v in update["choices"]]
    assert values[: len(sft.suggested_models)] == sft.suggested_models
    assert str(ctx.models_dir / "my-llama") in values
    assert ("my-llama · local folder", str(ctx.models_dir / "my-llama")) in update["choices"]
    assert sft.hub_pipeline == "text-generation" and get_task("tabular").hub_pipeline is None


# --- 8. forms --------------------------------------------------------------------------------------


def test_hub_only_fields_apply_to_a_hub_id_or_a_folder(tmp_path):
    (tmp_path / "d.csv").write_text("a\n1\n")
    assert task_view.hub_fields_shown("someone/dataset") and task_view.hub_fields_shown(str(tmp_path))
    assert not task_view.hub_fields_shown(str(tmp_path / "d.csv")) and not task_view.hub_fields_shown("")


# --- 10. experiment trackers ------------------------------------------------------------------


def test_report_to_a_tracker_that_is_installed_or_says_how_to_install_it(tmp_path, monkeypatch):
    from engine.train import trainer as train_utils

    params = get_task("text_classification").params.model_construct(report_to="wandb")
    monkeypatch.setattr(models, "tracker_installed", lambda name: False)
    problem = models.tracker_problems(params)[0]
    assert problem.field == "report_to" and "pip install wandb" in problem
    assert train_utils.trackers(params, tmp_path) == "none"  # the worker goes on without it
    monkeypatch.setattr(models, "tracker_installed", lambda name: True)
    for key in (
        "WANDB_MODE",
        "WANDB_API_KEY",
        "WANDB_DIR",
        "MLFLOW_TRACKING_URI",
        "TENSORBOARD_LOGGING_DIR",
        "TRACKIO_DIR",
    ):
        monkeypatch.delenv(key, raising=False)
    assert models.tracker_problems(params) == [] and train_utils.trackers(params, tmp_path) == "wandb"
    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_DIR"] == str(tmp_path)  # offline-safe
    none = get_task("text_classification").params.model_construct()
    assert none.report_to == "none" and train_utils.trackers(none, tmp_path) == "none"


# --- 6. playground ------------------------------------------------------------------------------


def test_playground_chat_settings_end_of_turn_and_class_bars():
    from ui import playground

    request = playground.chat_request([{"role": "user", "content": "hi"}], 64.0, 0.7, "Be brief.")
    assert request["messages"][0] == {"role": "system", "content": "Be brief."} and request["max_new_tokens"] == 64
    assert request["temperature"] == 0.7 and playground.chat_request([], 16, 0, " ")["messages"] == []
    assert playground.trim_reply("Paris.\nuser\nAnd Spain?\nassistant\nMadrid.") == "Paris."
    assert playground.trim_reply("Sure<|im_end|><|im_start|>user") == "Sure"
    assert playground.trim_reply("A user manual is useful.") == "A user manual is useful."
    bars = playground.label_view({"label": "pos", "scores": {"pos": 0.9, "neg": 0.1}})
    assert bars["visible"] and bars["value"] == {"pos": 0.9, "neg": 0.1}
    assert not playground.label_view({"text": "no scores"})["visible"]


def test_hub_probe_is_bounded_and_remembered(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_up", None)
    monkeypatch.setattr(models, "_connects", lambda host: time.sleep(10) or True)  # a hanging name lookup
    t0 = time.time()
    assert models.hub_offline() and time.time() - t0 < models.TIMEOUT_S + 1.5
    t0 = time.time()
    assert models.hub_offline() and time.time() - t0 < 0.1  # remembered: no second wait
    assert models.hub_suggestions(get_task("llm_sft")) == []


# --- 4. results: the confusion matrix a classification task writes ------------------------------


def test_write_confusion_feeds_the_run_pages_matrix_and_per_class_scores(tmp_path):
    from engine.train import charts
    from ui import runs_view

    charts.write_confusion(tmp_path, [0, 0, 1, 1, 2], [0, 1, 1, 1, 2], ["neg", "pos", "neutral"])
    found = runs_view.results(tmp_path)
    assert found["confusion"]["pos"].tolist() == [1, 2, 0]
    assert found["per_class"].set_index("class").loc["neg", "recall"] == 0.5
    charts.write_predictions(tmp_path, [1.0, 2.0, 3.0], [1.1, 1.9, 3.2])
    scatter = runs_view.results(tmp_path)["scatter"]
    assert scatter["true"].tolist() == [1.0, 2.0, 3.0] and scatter["predicted"].tolist()[2] == 3.2
