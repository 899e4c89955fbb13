"""Sweeps: a search space checked before anything is queued, grid and random trials as grouped runs, the best by
the key metric, pruning through Stop (checkpoint kept), Stop of a sweep, the CLI, and trials on a local Ray head."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.cli import main
from engine.config import dump_config
from engine.errors import UserError
from engine.params import validate_params
from engine.run import sweep as sw
from engine.run.supervisor import Supervisor
from engine.task import get_task
from tests import test_backends
from tests.test_text_classification import topic_rows
from tests.tiny import tiny_bert_for, write_csv

TC = get_task("text_classification")
ray_head, on_ray = test_backends.ray_head, test_backends.on_ray  # the session's local Ray head (its fixtures)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(tmp_path_factory, [r["text"] for r in topic_rows(400, seed=99)], init_std=0.1)


def params(model: Path | str, data: Path | str, **kw):
    base = {"base_model": str(model), "data_path": str(data), "epochs": 1, "batch_size": 16, "learning_rate": 3e-3}
    return validate_params(TC.params, {**base, "valid_fraction": 0.2, "cpu_threads": 1, **kw})


def space(*specs: str) -> list[sw.Dim]:
    return [sw.parse_param(s) for s in specs]


# --- fast: the space, refused before anything is queued ---------------------------------------------------------


def test_specs_parse_to_choices_uniform_and_log_ranges():
    lr, rank, sched, drop = space("learning_rate=log:1e-5:1e-3", "lora_r=8,16,32", "scheduler=cosine", "x=0:0.5")
    assert (lr.kind, lr.low, lr.high) == ("log", 1e-5, 1e-3)
    assert rank.choices == (8, 16, 32) and sched.choices == ("cosine",) and (drop.kind, drop.high) == ("uniform", 0.5)
    with pytest.raises(UserError, match="NAME=SPEC"):
        sw.parse_param("learning_rate")
    with pytest.raises(UserError, match="`epochs`.*not a search range"):
        sw.parse_param("epochs=log:1:2:3")


@pytest.mark.parametrize(
    ("specs", "strategy", "trials", "field", "words"),
    [
        (["learnin_rate=log:1e-5:1e-3"], "random", 4, "learnin_rate", "Did you mean `learning_rate`"),
        (["learning_rate=0.1:2"], "random", 4, "learning_rate", "outside the field's bounds"),
        (["learning_rate=1e-4,3e-4,1e-3", "epochs=1,2"], "grid", 4, "learning_rate", "6 combinations"),
        (["scheduler=linear,sometimes"], "random", 2, "scheduler", "cannot be 'sometimes'"),
        (["learning_rate=log:0:1e-3"], "tpe", 4, "learning_rate", "start above 0"),
        (["learning_rate=log:1e-5:1e-3"], "grid", 4, "learning_rate", "a grid needs a list of values"),
        (["batch_size=1.5:8"], "random", 4, "batch_size", "whole numbers"),
    ],
)
def test_bad_spaces_are_refused_naming_the_field_before_anything_is_queued(
    data_dir, tmp_path, specs, strategy, trials, field, words
):
    sup = Supervisor(data_dir)  # not started: nothing could run anyway
    request = sw.SweepRequest(space(*specs), strategy, trials, 2)
    with pytest.raises(UserError) as err:
        sup.submit_sweep(TC, params(tmp_path / "model", tmp_path / "train.csv"), request)
    assert words in str(err.value) and f"`{field}`" in str(err.value), str(err.value)
    assert field in [getattr(p, "field", None) for p in err.value.problems]  # the form marks that field
    assert sup.store.list_runs() == [] and sup.store.list_sweeps() == []


def test_a_data_problem_of_the_first_trial_queues_nothing(data_dir, tmp_path):
    sup = Supervisor(data_dir)
    with pytest.raises(UserError):
        sup.submit_sweep(TC, params(tmp_path / "nope", tmp_path / "none.csv"), sw.SweepRequest(space("epochs=1,2")))
    assert sup.store.list_runs() == [] and sup.store.list_sweeps() == []


def test_grid_queues_exactly_its_grid_grouped_and_stop_cancels_every_queued_trial(data_dir, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "train.csv", topic_rows(60, seed=1))
    sup = Supervisor(data_dir)  # no thread: the trials stay queued
    request = sw.SweepRequest(space("learning_rate=1e-3,3e-3", "batch_size=8,16"), "grid", 0, parallel=4)
    sweep_id = sup.submit_sweep(TC, params(tiny_bert, data), request)
    sweep = sup.store.get_sweep(sweep_id)
    assert sweep["trials"] == 4 and sweep["strategy"] == "grid" and sweep["status"] == "running"
    runs = sup.store.sweep_runs(sweep_id)
    grid = [{"learning_rate": lr, "batch_size": b} for lr in (1e-3, 3e-3) for b in (8, 16)]
    assert [r["trial"] for r in runs] == grid
    assert [(r["params"]["learning_rate"], r["params"]["batch_size"]) for r in runs] == [
        tuple(g.values()) for g in grid
    ]
    assert all(r["status"] == "queued" and r["sweep_id"] == sweep_id for r in runs)

    sup.stop_sweep(sweep_id)
    assert [r["status"] for r in sup.store.sweep_runs(sweep_id)] == ["stopped"] * 4
    assert sup.store.runs_with_status("queued") == []
    sup.tick()
    assert sup.store.get_sweep(sweep_id)["status"] == "stopped" and sup.store.runs_with_status("queued") == []


def test_parallel_and_the_users_queue_cap_bound_the_queued_trials(data_dir, tiny_bert, tmp_path):
    from engine.run.policy import Policy

    data = write_csv(tmp_path / "train.csv", topic_rows(60, seed=1))
    sup = Supervisor(data_dir, policy=Policy(max_queued_per_user=2))
    request = sw.SweepRequest(space("learning_rate=log:1e-4:1e-2"), "random", 6, parallel=4)
    sweep_id = sup.submit_sweep(TC, params(tiny_bert, data), request, user="ann")
    assert len(sup.store.sweep_runs(sweep_id)) == 2  # the user's cap, not the sweep's parallel
    sup.tick()
    assert len(sup.store.sweep_runs(sweep_id)) == 2 and sup.store.get_sweep(sweep_id)["submitted"] == 2
    sup.stop_sweep(sweep_id)


def test_past_its_budget_a_sweep_starts_no_new_trial_and_ends(data_dir, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "train.csv", topic_rows(60, seed=1))
    sup = Supervisor(data_dir)  # no thread: trials stay queued until cancelled here
    request = sw.SweepRequest(space("learning_rate=log:1e-4:1e-2"), "random", 3, parallel=1, budget_s=0.01)
    sweep_id = sup.submit_sweep(TC, params(tiny_bert, data), request)
    (first,) = sup.store.sweep_runs(sweep_id)  # the first trial is queued at once, even with a tiny budget
    sup.stop(first["id"])  # it ends (cancelled): the budget is spent, so no second trial
    sup.tick()
    sweep = sup.store.get_sweep(sweep_id)
    assert (
        len(sup.store.sweep_runs(sweep_id)) == 1
        and sweep["status"] == "failed"
        and "No trial succeeded" in sweep["error"]
    )


def test_median_pruner_judges_at_the_same_evaluation():
    sweep = {"pruner": "median", "greater_is_better": 1}
    assert sw.should_prune(sweep, [0.3], [[0.8, 0.9]])
    assert not sw.should_prune(sweep, [0.85], [[0.8, 0.9]])
    assert not sw.should_prune(sweep, [0.3], [])  # nothing finished yet to compare with
    assert not sw.should_prune({**sweep, "pruner": "none"}, [0.3], [[0.8, 0.9]])
    assert sw.should_prune({"pruner": "median", "greater_is_better": 0}, [2.0], [[1.0, 0.5]])  # a loss


def test_presets_fit_the_form_and_show_their_cost(data_dir, tmp_path):
    sup = Supervisor(data_dir)
    dims, request = sw.preset(TC, params(tmp_path / "m", tmp_path / "d.csv"))
    assert {d.name for d in dims} >= {"learning_rate", "epochs"} and request.strategy == "tpe"
    sw.check_space(TC, params(tmp_path / "m", tmp_path / "d.csv"), dims, request.strategy, request.trials)
    sft = get_task("llm_sft")
    lora = validate_params(sft.params, {"use_lora": True})
    dims, _ = sw.preset(sft, lora)
    assert "lora_r" in {d.name for d in dims}
    tab_dims, tab_request = sw.preset(get_task("tabular"), get_task("tabular").params())
    assert tab_request.strategy == "grid" and tab_dims[0].name == "model"
    text = sw.expected_cost(sup.store, TC, params(tmp_path / "m", tmp_path / "d.csv"), request)
    assert "8 trials" in text and "first trial will tell" in text


# --- slow: trials that train ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_random_sweep_from_the_cli_gives_grouped_runs_and_the_best(data_dir, tiny_bert, tmp_path, capsys):
    data = write_csv(tmp_path / "train.csv", topic_rows(120, seed=1))
    config = tmp_path / "tc.yaml"
    config.write_text(dump_config(TC, params(tiny_bert, data)), encoding="utf-8")
    argv = ["--data-dir", str(data_dir), "sweep", str(config), "--trials", "4", "--parallel", "2", "--json"]
    code = main([*argv, "--param", "learning_rate=log:1e-5:1e-2", "--strategy", "random"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "succeeded"
    sup = Supervisor(data_dir)
    runs = sup.store.sweep_runs(out["sweep_id"])
    assert len(runs) == 4 and len(out["trials"]) == 4
    assert all(r["status"] == "succeeded" and r["sweep_id"] == out["sweep_id"] for r in runs)
    rates = [r["trial"]["learning_rate"] for r in runs]
    assert len(set(rates)) == 4 and all(1e-5 <= x <= 1e-2 for x in rates)
    assert [r["params"]["learning_rate"] for r in runs] == rates
    best = max(runs, key=lambda r: r["key_metric"])  # eval_f1_macro: greater is better
    assert out["best_run_id"] == best["id"] and out["best_metric"] == best["key_metric"]
    assert out["best_params"] == {"learning_rate": best["trial"]["learning_rate"]}
    assert main(["--data-dir", str(data_dir), "runs"]) == 0
    listed = capsys.readouterr().out
    assert listed.count(f"(sweep {out['sweep_id']})") == 4


@pytest.mark.slow
def test_a_trial_behind_at_an_evaluation_is_pruned_and_keeps_its_checkpoint(supervisor, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "train.csv", topic_rows(240, seed=2))
    base = params(tiny_bert, data, epochs=8, eval_strategy="epoch")
    request = sw.SweepRequest(space("learning_rate=3e-3,1e-9"), "grid", 2, parallel=1, pruner="median")
    sweep_id = supervisor.submit_sweep(TC, base, request)
    deadline = 400
    import time

    t0 = time.time()
    while supervisor.store.get_sweep(sweep_id)["status"] == "running" and time.time() - t0 < deadline:
        time.sleep(0.5)
    good, bad = supervisor.store.sweep_runs(sweep_id)
    assert good["status"] == "succeeded", good["error"]
    assert bad["status"] == "pruned", (bad["status"], bad["error"])
    assert rf.last_checkpoint(bad["run_dir"]) is not None, "Stop saved a checkpoint"
    assert (bad["step"] or 0) < (good["step"] or 0), "stopped early"
    result = sw.summary(supervisor.store, sweep_id)
    assert result["status"] == "succeeded" and result["best_run_id"] == good["id"]
    assert result["trials"][1]["metric"] is not None  # the last evaluation's value stands for a pruned trial


@pytest.mark.slow
def test_sweep_trials_on_a_local_ray_head_run_and_are_grouped(on_ray, supervisor, tmp_path):
    from tests.test_backends import TASK, quick

    request = sw.SweepRequest(space("cv_folds=2,3"), "grid", 2, parallel=2)
    sweep_id = supervisor.submit_sweep(TASK, quick(tmp_path), request, backend="ray")
    import time

    t0 = time.time()
    while supervisor.store.get_sweep(sweep_id)["status"] == "running" and time.time() - t0 < 240:
        time.sleep(0.5)
    runs = supervisor.store.sweep_runs(sweep_id)
    assert [r["trial"] for r in runs] == [{"cv_folds": 2}, {"cv_folds": 3}]
    said = [(r["backend"], r["remote_job_id"], r["status"], r["error"]) for r in runs]
    assert all(r["backend"] == "ray" and r["remote_job_id"] for r in runs), said
    assert all(r["status"] == "succeeded" for r in runs), said
    sweep = supervisor.store.get_sweep(sweep_id)
    assert sweep["status"] == "succeeded" and sweep["best_run_id"] in {r["id"] for r in runs}


# --- the studio ---------------------------------------------------------------------------------------------------


def finished_sweep(store, tmp_path: Path) -> tuple[str, str]:
    """A sweep of two succeeded text-classification trials written straight into the store: (sweep id, best run)."""
    base = params("some/bert", tmp_path / "reviews.csv").model_dump(mode="json")
    store.insert_sweep(
        {
            "id": "sweep-test",
            "name": "lr sweep",
            "task": TC.name,
            "strategy": "random",
            "space": json.dumps([sw.parse_param("learning_rate=log:1e-4:1e-2").to_json()]),
            "base": json.dumps(base),
            "trials": 2,
            "parallel": 1,
            "key_metric_name": TC.key_metric,
            "greater_is_better": int(TC.greater_is_better),
            "status": "succeeded",
            "submitted": 2,
        }
    )
    for i, (lr, epochs, f1) in enumerate([(1e-4, 2, 0.41), (3e-3, 4, 0.93)]):
        store.insert_run(
            {
                "id": f"run-{i}",
                "name": f"lr sweep #{i + 1}",
                "task": TC.name,
                "status": "succeeded",
                "params": json.dumps({**base, "learning_rate": lr, "epochs": epochs}),
                "run_dir": str(tmp_path / f"run-{i}"),
                "key_metric_name": TC.key_metric,
                "key_metric": f1,
                "sweep_id": "sweep-test",
                "trial": json.dumps({"learning_rate": lr, "epochs": epochs}),
            }
        )
    return "sweep-test", "run-1"


def test_the_sweep_view_sorts_marks_plots_and_ranks(data_dir, tmp_path):
    from ui import sweep_view

    sup = Supervisor(data_dir)
    sweep_id, best = finished_sweep(sup.store, tmp_path)
    result = sw.summary(sup.store, sweep_id)
    assert result["best_run_id"] == best and result["best_params"] == {"learning_rate": 3e-3, "epochs": 4}
    table = sweep_view.trials_table(result)
    assert list(table["run"]) == ["run-1", "run-0"] and list(table[""]) == ["★", ""]
    assert list(sweep_view.points(result, "learning_rate")[TC.key_metric]) == [0.41, 0.93]
    assert sweep_view.importance(result).empty  # fewer than 3 finished trials: no ranking
    many = {
        **result,
        "trials": [{"params": {"lr": x, "opt": o}, "metric": x} for x, o in [(1, "a"), (2, "a"), (3, "b")]],
    }
    ranked = sweep_view.importance(many)
    assert list(ranked["field"]) == ["lr", "opt"] and ranked["importance"].iloc[0] == 1.0
    assert "★" not in sweep_view.header_md(result) and best in sweep_view.header_md(result)
    base = params("m", "d.csv")
    assert sweep_view.default_spec(TC, base, "learning_rate") == "log:0.0003:0.03"
    assert sweep_view.default_spec(TC, base, "scheduler").startswith("linear,cosine")
    assert sweep_view.default_spec(TC, base, "batch_size") == "8,16,32"
    text = sweep_view.space_text(TC, base, ["learning_rate", "epochs"], "learning_rate=1e-3,2e-3")
    assert text.splitlines()[0] == "learning_rate=1e-3,2e-3" and text.splitlines()[1].startswith("epochs=")
    sw.check_space(TC, base, sweep_view.parse_space(text), "random", 4)  # the defaults are inside the bounds


def test_view_module_does_not_import_gradio():
    import subprocess
    import sys

    code = "import sys, ui.sweep_view; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
@pytest.mark.browser
def test_sweep_button_preset_and_use_best_fill_the_form(studio, tmp_path):
    import shutil

    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import ARGS, CHROMIUM, shot

    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip("needs Chromium (apt-get install -y chromium)")
    url, ctx = studio
    finished_sweep(ctx.engine.store, tmp_path)
    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1600})
        pg.goto(url)
        pg.get_by_role("tab", name="Text", exact=True).click()
        pg.get_by_role("tab", name=TC.title, exact=True).click()
        pg.locator("#text_classification-sweep").click()  # the Sweep button beside Start: the preset
        expect(pg.locator("#text_classification-sweep-space textarea")).to_have_value(re.compile(r"learning_rate=log:"))
        expect(pg.locator("#text_classification-sweep-cost")).to_contain_text("8 trials")
        shot(pg, "sweep-1-preset")
        pg.get_by_role("tab", name="Sweeps", exact=True).click()
        expect(pg.locator("#sweep-header")).to_contain_text("run-1")
        expect(pg.locator("#sweep-trials")).to_contain_text("★")
        shot(pg, "sweep-2-view")
        pg.locator("#sweep-use-best").click()  # the winner's settings in its task form (the Duplicate path)
        expect(pg.locator("#text_classification-epochs input")).to_have_value("4", timeout=90_000)
        expect(
            pg.locator("#text_classification-run_name textarea, #text_classification-run_name input").first
        ).to_have_value("lr sweep best")
        shot(pg, "sweep-3-use-best")
        browser.close()
