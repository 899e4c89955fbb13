"""A shared instance attacked as a second user, the way the last attack round did (issue 23): each finding as a
test, driven through the Gradio API where a visitor would go that way. Users: ann (the victim), bob (the
attacker), root (an admin). The host has an HF token and an AWS secret in its environment."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

import app
from engine.errors import UserError
from engine.run.policy import Policy, frame_path_problems, named_path_problems
from engine.run.supervisor import Supervisor
from engine.task import get_task
from tests.conftest import free_port
from tests.fakes import fake_predictors
from tests.tiny import chat_rows, write_csv, write_jsonl

USERS = [("ann", "pw-ann"), ("bob", "pw-bob"), ("root", "pw-root")]
SFT = get_task("llm_sft")
SECRET_ROW = "ann-private-row-7f3a"


@pytest.fixture
def studio(data_dir, tiny_llama, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_host_secret_token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-host-secret")
    ctx, demo = app.create(data_dir, shared=True, admins=("root",))
    port = free_port()
    app.launch(ctx, demo, port=port, auth=USERS, prevent_thread_lock=True, quiet=True)
    model = ctx.data_dir / "models" / "tiny"
    shutil.copytree(tiny_llama, model)
    ann_uploads = ctx.engine.user_dirs("ann")[0] / "0123456789"
    ann_uploads.mkdir(parents=True)
    ann_file = write_jsonl(ann_uploads / "chat.jsonl", [*chat_rows(15), {"text": SECRET_ROW}])
    yield {"url": f"http://127.0.0.1:{port}/", "ctx": ctx, "model": model, "ann_file": ann_file}
    demo.close()
    ctx.engine.shutdown(stop_runs=True)


def mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def client(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=(user, dict(USERS)[user]), verbose=False)


def flat(answer) -> str:
    return json.dumps(answer, default=str)


# ---- 1. ${VAR} in a path is never expanded, not even by the worker ----------------------------------------


@pytest.mark.slow
def test_an_environment_variable_in_a_data_path_reaches_nothing(studio, monkeypatch):
    monkeypatch.setenv("ANN_FILE", str(studio["ann_file"]))
    bob = client(studio["url"], "bob")
    for path in ("${ANN_FILE}", "${TRAINPAD_DATA_DIR}/uploads/ann/0123456789/chat.jsonl"):
        out = bob.predict("llm_sft", {"base_model": str(studio["model"]), "data_path": path}, api_name="/start")
        run_id = out[2] if isinstance(out[2], str) else ""
        assert SECRET_ROW not in flat(out)
        if not run_id:  # refused at Start: a path outside bob's uploads, or a Hub id that does not exist
            assert "must be one of your uploads" in flat(out) or "ANN_FILE" in flat(out), out
            continue
        row = studio["ctx"].engine.wait(run_id, timeout=180)
        assert row["status"] == "failed"
        log = (Path(row["run_dir"]) / "train.log").read_text()
        assert SECRET_ROW not in row["error"] + log and "0123456789" not in row["error"] + log
        assert "${ANN_FILE}" in (Path(row["run_dir"]) / "config.yaml").read_text(), "kept as written, not expanded"


def test_the_worker_reads_a_run_config_as_written(tmp_path, monkeypatch):
    from engine.config import load_run_config

    monkeypatch.setenv("SOMEWHERE", "/etc")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("task: llm_sft\nname: ${HOME}${PWD}\nparams:\n  base_model: m\n  data_path: ${SOMEWHERE}/passwd\n")
    _, params = load_run_config(cfg)
    assert params.data_path == "${SOMEWHERE}/passwd"


def test_the_worker_checks_the_policy_again_before_opening_anything(tmp_path, data_dir, tiny_llama):
    """A run folder whose config names another user's file (e.g. edited after the check) is refused by the worker
    itself, before any data is read."""
    from engine.run import worker

    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    mine = write_jsonl(mk(sup.user_dirs("bob")[0] / "x" / "c.jsonl"), chat_rows(8))
    models = sup.data_dir / "models" / "tiny"
    shutil.copytree(tiny_llama, models)
    run_id = sup.submit(SFT, SFT.params(base_model=str(models), data_path=str(mine)), user="bob", check=False)
    run_dir = sup.runs_dir / run_id
    other = write_jsonl(tmp_path / "ann.jsonl", [{"text": SECRET_ROW}])
    cfg = run_dir / "config.yaml"
    cfg.write_text(cfg.read_text().replace(str(mine), str(other)))
    with pytest.raises(UserError, match="must be one of your uploads") as e:
        worker.run(run_dir)
    assert SECRET_ROW not in str(e.value)


def test_media_cells_of_loaded_data_are_checked_whatever_the_source(tmp_path):
    """Hub datasets and folders too: the worker checks the image/audio cells it is about to open."""
    import pandas as pd

    guard = {"roots": [str(tmp_path / "uploads" / "bob")]}
    params = SFT.params(base_model="m", data_path="org/some-dataset")
    frame = pd.DataFrame({"image": [{"path": "/etc/shadow", "bytes": None}], "label": ["a"]})
    found = frame_path_problems(guard, params, [frame, None])
    assert found and "shadow" in found[0] and "/etc" not in found[0]


# ---- 2. resume_from only from the user's own runs --------------------------------------------------------


def test_resume_from_another_users_checkpoint_is_refused(data_dir, tiny_llama):
    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    data = write_jsonl(mk(sup.user_dirs("ann")[0] / "x" / "c.jsonl"), chat_rows(8))
    models = sup.data_dir / "models" / "tiny"
    shutil.copytree(tiny_llama, models)
    ann_run = sup.submit(SFT, SFT.params(base_model=str(models), data_path=str(data)), user="ann", check=False)
    ckpt = sup.runs_dir / ann_run / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    bob_data = write_jsonl(mk(sup.user_dirs("bob")[0] / "y" / "c.jsonl"), chat_rows(8))
    with pytest.raises(UserError, match="checkpoint of one of your own runs"):
        sup.submit(SFT, SFT.params(base_model=str(models), data_path=str(bob_data), resume_from=str(ckpt)), user="bob")
    mine = sup.submit(SFT, SFT.params(base_model=str(models), data_path=str(data), resume_from=str(ckpt)), user="ann")
    assert json.loads((sup.runs_dir / mine / "guard.json").read_text())["resume_from"] == str(ckpt.resolve())


# ---- 3. exports are served per user, under names nobody can guess ---------------------------------------


def test_exports_are_not_served_from_the_data_folder(studio):
    ann = client(studio["url"], "ann")
    out = ann.predict(
        "llm_sft", {"base_model": str(studio["model"]), "data_path": str(studio["ann_file"])}, api_name="/config"
    )
    exports = studio["ctx"].data_dir / "exports" / "ann"
    made = next(exports.glob("llm_sft-*.yaml"))
    assert len(made.stem.split("-")[-1]) == 8, "a random part in the name"
    auth = httpx.post(studio["url"] + "login", data={"username": "bob", "password": "pw-bob"})
    for path in (made, exports / made.name):
        answer = httpx.get(f"{studio['url']}gradio_api/file={path}", cookies=auth.cookies, timeout=10)
        assert answer.status_code in (403, 404), f"bob fetched {path.name}"
    from ui.context import gradio_cache

    offered = list((gradio_cache() / "trainpad-exports").glob(f"*/{made.name}"))
    assert offered and len(offered[0].parent.name) == 32, "offered from a random folder of Gradio's cache"
    assert any(str(made.name) in flat(o) for o in out)


# ---- 4. path columns match whatever their case -----------------------------------------------------------


@pytest.mark.parametrize("column", ["Image", "IMAGE", "File_Name", "Audio"])
def test_a_path_column_in_any_case_is_checked(tmp_path, column):
    table = write_csv(mk(tmp_path / "uploads" / "bob" / "d.csv"), [{column: "/etc/shadow", "label": "a"}])
    params = get_task("image_classification").params(base_model="m", data_path=str(table))
    found = named_path_problems(params, [tmp_path / "uploads" / "bob"])
    assert found and f"column `{column}`" in found[0] and "/etc" not in found[0]


# ---- 5. chat templates render in a bounded child process ------------------------------------------------


def test_a_chat_template_bomb_is_bounded_outside_the_app(tiny_llama, monkeypatch):
    import psutil

    from engine.llm import data as ld
    from engine.preflight import bounded

    monkeypatch.setattr(bounded, "TIMEOUT_S", 8.0)
    monkeypatch.setattr(bounded, "MEMORY_MB", 700)
    import pandas as pd

    df = pd.DataFrame({"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]] * 4})
    before = psutil.Process().memory_info().rss
    bomb = "{% set s = 'x' * 900000000 %}{{ s|length }}"
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    for template, said in [(bomb, "MemoryError"), (loops, "took more than 8 s")]:
        p = SFT.params(
            base_model=str(tiny_llama), data_path="d.jsonl", chat_template="custom", custom_chat_template=template
        )
        t0 = time.time()
        try:
            answer = ld.formatted_examples(df, p)[1]
        except UserError as e:
            answer = e.problems
        assert said in " ".join(answer) and time.time() - t0 < 20, answer
    assert psutil.Process().memory_info().rss - before < 100 * 2**20, "the app's memory did not grow"
    p = SFT.params(base_model=str(tiny_llama), data_path="d.jsonl")
    texts, problems, _, chats = ld.formatted_examples(df, p)
    assert len(texts) == 4 and not problems and chats, "a normal template still renders"


# ---- 6. the small ones -----------------------------------------------------------------------------------


def test_a_relative_path_is_refused_the_same_whether_or_not_it_exists(data_dir, tiny_llama):
    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    answers = []
    for target in ("engine/../../../etc/hostname", "engine/../../../etc/no-such-file"):
        with pytest.raises(UserError) as e:
            sup.submit(SFT, SFT.params(base_model="org/model", data_path=target), user="bob")
        answers.append(str(e.value))
    assert answers[0] == answers[1] and "must be one of your uploads" in answers[0]


def test_a_huge_run_name_is_refused(data_dir, tiny_llama, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(8))
    with pytest.raises(UserError, match="at most 200"):
        sup.submit(SFT, SFT.params(base_model=str(tiny_llama), data_path=str(data)), name="x" * 2_000_000)
    assert sup.store.list_runs() == []


def test_queue_position_counts_only_the_users_own_runs(studio):
    from ui.context import UserSupervisor

    ctx, engine = studio["ctx"], studio["ctx"].engine
    rows = [{"id": f"r{i}", "user": u} for i, u in enumerate(["ann", "ann", "bob"])]
    for r in rows:
        run_dir = engine.runs_dir / r["id"]
        run_dir.mkdir(parents=True)
        engine.store.insert_run(
            {**r, "name": r["id"], "task": "llm_sft", "status": "queued", "params": "{}", "run_dir": str(run_dir),
             "key_metric_name": "eval_loss", "owner_pid": 1, "owner_started": 1.0, "events_offset": 0}
        )  # fmt: skip
    ctx.user = lambda: "bob"  # type: ignore[method-assign]
    assert UserSupervisor(ctx).queue_position("r2")[1] == 0, "ann's two queued runs are not counted for bob"
    with pytest.raises(UserError):
        UserSupervisor(ctx).queue_position("r0")


def test_playground_slots_are_per_user(data_dir, monkeypatch):
    from ui import predictor
    from ui.context import Context

    fake_predictors(monkeypatch, max_processes=2)
    ctx = Context(Supervisor(data_dir, manage_all=False, policy=Policy(shared=True)), shared=True)
    who = {"user": "ann"}
    ctx.user = lambda: who["user"]  # type: ignore[method-assign]
    ann_model = predictor.predictor_for(ctx, "ann-1", "/runs/a")
    who["user"] = "bob"
    predictor.predictor_for(ctx, "bob-1", "/runs/b1")
    predictor.predictor_for(ctx, "bob-2", "/runs/b2")  # bob's second evicts bob's first, not ann's
    assert not ann_model.closed and "ann-1" in predictor._SESSIONS
    who["user"] = "cid"
    with pytest.raises(UserError, match="Playground is busy"):
        predictor.predictor_for(ctx, "cid-1", "/runs/c")
    assert not ann_model.closed


def test_uploads_have_a_per_user_quota_and_cleanup_trims_the_biggest_user_first(tmp_path):
    from ui import datasource

    big = tmp_path / "big.csv"
    big.write_bytes(b"a,b\n" + b"1,2\n" * 300_000)
    uploads = tmp_path / "uploads" / "bob"
    with pytest.raises(UserError, match="per user"):
        datasource.keep_upload(big, uploads, quota_bytes=100_000)
    assert not uploads.exists() or not any(uploads.iterdir()), "nothing half-kept"
    items = [
        (tmp_path / "uploads" / "ann" / "aaaaaaaaaa", 1.0, 10),  # ann's idle, old, small upload
        (tmp_path / "uploads" / "bob" / "bbbbbbbbbb", 5.0, 600),
        (tmp_path / "uploads" / "bob" / "cccccccccc", 6.0, 600),
    ]
    doomed = datasource._over_limits(items, before=None, max_bytes=700)
    assert items[0][0] not in doomed and items[1][0] in doomed


def test_a_model_folder_with_a_junk_config_is_refused_before_launch(tmp_path):
    from engine.preflight.models import base_model_problems

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text('{"hello": "world"}')
    for task in ("image_classification", "llm_sft", "text_classification"):
        found = base_model_problems(get_task(task), str(junk))
        assert found and "not a model's" in found[0], task
    (junk / "config.json").write_text('{"model_type": "vit", "architectures": ["ViTForImageClassification"]}')
    found = base_model_problems(get_task("image_classification"), str(junk))
    assert found and "image processor" in found[0]
    (junk / "config.json").write_text('{"model_type": "no-such-arch"}')
    assert "does not know" in base_model_problems(get_task("llm_sft"), str(junk))[0]


def test_workers_get_no_host_secret(monkeypatch):
    from engine.run.procs import worker_env

    monkeypatch.setenv("HF_TOKEN", "hf_host_secret_token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-host-secret")
    env = worker_env()
    assert "hf_host_secret_token" not in env.values() and "aws-host-secret" not in env.values()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "aws-host-secret"


def test_a_model_named_by_run_id_must_be_the_users_own_run(data_dir, tiny_llama):
    """A reward model, a judge or a teacher may be named by run id: on a shared instance, only one of the user's
    own runs (else bob would train with ann's model); the worker checks it again."""
    from engine.run.policy import guard_problems

    grpo = get_task("llm_grpo")
    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    models = sup.data_dir / "models" / "tiny"
    shutil.copytree(tiny_llama, models)
    data = write_jsonl(mk(sup.user_dirs("ann")[0] / "x" / "p.jsonl"), [{"prompt": "2+2?", "answer": "4"}] * 8)
    ann_run = sup.submit(SFT, SFT.params(base_model=str(models), data_path=str(data)), user="ann", check=False)
    bob_data = write_jsonl(mk(sup.user_dirs("bob")[0] / "y" / "p.jsonl"), [{"prompt": "2+2?", "answer": "4"}] * 8)
    values = {"base_model": str(models), "data_path": str(bob_data), "reward_functions": ["reward_model"]}
    with pytest.raises(UserError, match=f"reward_model: `{ann_run}` is not one of your runs"):
        sup.submit(grpo, grpo.params(**values, reward_model=ann_run), user="bob", check=False)
    guard = {"roots": [str(p) for p in sup.user_dirs("bob")], "runs_dir": str(sup.runs_dir), "runs": []}
    assert "not one of your runs" in " ".join(guard_problems(guard, grpo.params(**values, reward_model=ann_run)))


def test_a_shared_instance_calls_no_endpoint_a_visitor_names(data_dir, tiny_llama):
    grpo = get_task("llm_grpo")
    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    data = write_jsonl(mk(sup.user_dirs("bob")[0] / "y" / "p.jsonl"), [{"prompt": "2+2?", "answer": "4"}] * 8)
    values = {"base_model": "org/model", "data_path": str(data), "reward_functions": ["judge"]}
    with pytest.raises(UserError, match="does not call endpoints its users name"):
        sup.submit(grpo, grpo.params(**values, judge_model="http://169.254.169.254/v1"), user="bob", check=False)


def test_a_user_evaluates_only_on_test_data_they_may_read(supervisor, tiny_llama, tmp_path):
    """A folder (no suffix) outside the user's uploads is refused like a file: image/audio test sets are folders."""
    from engine.eval.submit import EvalRequest
    from tests.test_sharing_limits import as_user
    from ui.context import Context

    bob = as_user(Context(supervisor, shared=True), "bob")
    model = shutil.copytree(tiny_llama, supervisor.user_dirs("bob")[0] / "m")  # a model bob may read
    elsewhere = mk(tmp_path / "someone" / "images" / "cat" / "1.png").parent.parent
    for data in (str(elsewhere), str(elsewhere / "cat" / "1.png")):
        with pytest.raises(UserError, match="is not among your uploads"):
            bob.supervisor.submit_eval(EvalRequest(model=str(model), task="image_classification", data=data))
