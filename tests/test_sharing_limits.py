"""Limits of a shared instance that cost disk, time and memory: one export zip per run, the cleanup of old uploads
and exports, the bounded pre-launch data check, and paths named inside data files."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.errors import UserError
from ui import run_actions
from ui.context import Context


def finished_run(ctx: Context, run_id: str, name: str, user: str = "") -> Path:
    """A succeeded run with a small model folder, as the worker leaves it."""
    run_dir = ctx.engine.runs_dir / run_id
    (run_dir / rf.MODEL_DIR).mkdir(parents=True)
    (run_dir / rf.MODEL_DIR / "config.json").write_text("{}")
    (run_dir / rf.MODEL_DIR / "weights.bin").write_bytes(os.urandom(2000))
    row = {"id": run_id, "name": name, "task": "llm_sft", "status": "succeeded", "params": "{}"}
    ctx.engine.store.insert_run({**row, "run_dir": str(run_dir), "key_metric_name": "eval_loss", "user": user})
    return run_dir


def as_user(ctx: Context, user: str) -> Context:
    ctx.user = lambda: user  # the user a request would carry
    return ctx


def test_one_export_zip_per_run_reused_replaced_and_deleted_with_the_run(supervisor, monkeypatch):
    import shutil

    zipped = []
    make_archive = shutil.make_archive
    monkeypatch.setattr(shutil, "make_archive", lambda *a, **kw: zipped.append(a) or make_archive(*a, **kw))
    ctx = Context(supervisor)
    run_dir = finished_run(ctx, "r1", "x" * 300 + "/évil name")  # a long name with a slash: no "name too long"
    first = run_actions.download_zip(ctx, "r1")
    assert first.parent == ctx.exports_dir and len(first.name) < 120 and "r1" in first.name
    assert sorted(zipfile.ZipFile(first).namelist()) == ["config.json", "weights.bin"]
    assert run_actions.download_zip(ctx, "r1") == first and len(zipped) == 1, "reused, not re-zipped"
    (run_dir / rf.MODEL_DIR / "extra.json").write_text("{}")  # the model folder changed (e.g. merged)
    second = run_actions.download_zip(ctx, "r1")
    assert second != first and not first.exists() and "extra.json" in zipfile.ZipFile(second).namelist()
    assert len(zipped) == 2
    assert [p.name for p in ctx.exports_dir.iterdir()] == [second.name], "one zip per run, no half-built files"
    ctx.supervisor.delete("r1")
    assert not second.exists(), "deleting the run deletes its zip"


def test_exports_stay_per_user_on_a_shared_instance(supervisor):
    ann = as_user(Context(supervisor, shared=True), "ann")
    finished_run(ann, "ra", "mine", user="ann")
    zipped = run_actions.download_zip(ann, "ra")
    assert zipped.parent.name == "ann"
    bob = as_user(Context(supervisor, shared=True), "bob")
    with pytest.raises(UserError, match="No run with id `ra`"):
        run_actions.download_zip(bob, "ra")
    assert list(bob.exports_dir.iterdir()) == []
    ann.supervisor.delete("ra")
    assert not zipped.exists()


# ---- the pre-launch check reads a bounded part of each file ---------------------------------

CHECK_SCRIPT = """
import sys, time
from engine.data import splits
from engine.task import get_task
task = get_task("text_classification")
params = task.params.model_validate({"base_model": "m", "data_path": sys.argv[1]})
t0 = time.time()
problems = splits.check_data(task, params)
# VmHWM: this program's peak (ru_maxrss would carry the forking test process's size across exec)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.time() - t0, peak / 1024, len(problems))
print(splits.check_note(params))
"""


def check_in_a_process(path: Path) -> tuple[float, float, int, str]:
    """(seconds, peak memory MB of the whole process, number of problems, the note) of a Check of ``path``."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    first, note = out.stdout.splitlines()[-2:]
    seconds, peak, problems = first.split()
    return float(seconds), float(peak), int(problems), note


def test_a_huge_file_is_checked_in_seconds_and_megabytes_and_trained_whole(tmp_path):
    from engine.data import splits
    from engine.task import get_task

    rows = tmp_path / "million.csv"
    with rows.open("w") as f:
        f.write("text,label\n")
        f.writelines(f"some text number {i} with words,{i % 2}\n" for i in range(1_000_000))
    seconds, peak, problems, note = check_in_a_process(rows)
    assert problems == 0 and seconds < 3, seconds  # was 5.5 s and 324 MB (99 s and 1.4 GB for chats + the summary)
    assert peak < 300, peak
    assert note.startswith("Checked the first 20,000 of ~1,0") and "rows of `million.csv`" in note

    cell = tmp_path / "cell.csv"
    cell.write_text(
        "text,label\n" + '"' + "hello world " * 4_400_000 + '",1\n' + "".join(f"r{i},{i % 2}\n" for i in range(9))
    )
    seconds, peak, problems, note = check_in_a_process(cell)  # one 50 MB cell
    assert problems == 0 and seconds < 3 and peak < 400 and note == "", (seconds, peak, note)

    task = get_task("text_classification")
    params = task.params.model_validate({"base_model": "m", "data_path": str(rows), "valid_fraction": 0.0})
    train, _ = splits.load_splits(task, params)  # what the worker trains on
    assert len(train) == 1_000_000


def test_only_the_head_of_a_big_json_list_or_parquet_file_is_read(tmp_path, monkeypatch):
    import pandas as pd

    from engine.data import splits
    from engine.data import tables as data

    monkeypatch.setattr(data, "JSON_STREAM_BYTES", 1000)
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(5000)]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    head = data.read_table(tmp_path / "list.json", nrows=30)
    assert list(head["text"]) == [f"t{i}" for i in range(30)]
    (tmp_path / "broken.json").write_text(json.dumps(rows)[:-2000])  # the head is fine, the end is cut
    assert len(data.read_table(tmp_path / "broken.json", nrows=30)) == 30
    with pytest.raises(UserError, match="not valid JSON"):
        data.read_table(tmp_path / "broken.json")
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    assert len(data.read_table(tmp_path / "t.parquet", nrows=30)) == 30
    assert splits.row_estimate(tmp_path / "t.parquet") == 5000 and splits.row_estimate(tmp_path / "list.json") is None


@pytest.mark.parametrize(
    "suffix, body", [(".json", '[{"text": "caf\xe9", "label": 1}]'), (".jsonl", '{"text": "caf\xe9"}\n')]
)
def test_non_utf8_json_data_is_refused_plainly(tmp_path, suffix, body):
    from engine.data import tables as data

    path = tmp_path / f"latin{suffix}"
    path.write_bytes(body.encode("latin-1"))
    with pytest.raises(UserError, match=rf"`latin{suffix}` is not UTF-8 text \(byte \d+\)\. Save it as UTF-8 JSON"):
        data.read_table(path)


def test_check_says_how_much_of_the_file_it_read(supervisor, tmp_path, monkeypatch):
    from engine.task import get_task
    from ui import task_view

    monkeypatch.setenv("TRAINPAD_CHECK_ROWS", "100")
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(1000)))
    _, data_md, _ = task_view.check_report(
        Context(supervisor), get_task("text_classification"), {"base_model": "m", "data_path": str(path)}
    )
    assert "Checked the first 100 of ~1,000 rows of `d.csv`; the run trains on every row" in data_md


# ---- files named inside data files stay in the user's uploads -----------------------------------


def image_params(data_path: Path, **kw):
    from engine.task import get_task

    return get_task("image_classification").params.model_validate(
        {"base_model": "m", "data_path": str(data_path), **kw}
    )


def submit_problems(sup, params, user: str = "ann") -> str:
    """The refusal of a submission ("" when it was queued)."""
    try:
        sup.submit("image_classification", params, user=user, check=False)
    except UserError as e:
        return str(e)
    return ""


def test_paths_named_in_data_files_stay_in_the_users_uploads(data_dir, tmp_path):
    import pandas as pd

    from engine.run.policy import Policy
    from engine.run.supervisor import Supervisor

    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    uploads = sup.user_dirs("ann")[0]
    mine = uploads / "a1b2c3d4e5"
    (mine / "imgs").mkdir(parents=True)
    (uploads / "f0f0f0f0f0").mkdir()

    def table(name: str, paths: list, column: str = "image") -> Path:
        path = mine / name
        frame = pd.DataFrame({column: paths, "label": ["a", "b"][: len(paths)]})
        if name.endswith(".parquet"):
            frame.to_parquet(path)
        elif name.endswith(".jsonl"):
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_csv(path, index=False)
        return path

    ok = table("ok.csv", ["imgs/1.png", "../f0f0f0f0f0/2.png"])  # in the upload, and in another upload of hers
    assert submit_problems(sup, image_params(ok)) == ""

    said = submit_problems(sup, image_params(table("host.csv", ["imgs/1.png", "/etc/hostname"])))
    assert "`host.csv`, column `image`, row 2: `hostname` (an absolute path) is not in your uploads" in said
    assert "/etc" not in said and str(uploads) not in said and str(data_dir) not in said, "no server folder is named"
    said = submit_problems(sup, image_params(table("up.csv", ["../../../../secret.png"], "file_name")))
    assert "column `file_name`, row 1: `secret.png` (a path leaving the folder)" in said
    said = submit_problems(sup, image_params(table("other.csv", ["../../bob/a1b2c3d4e5/x.png"])))
    assert "not in your uploads" in said, "another user's upload"
    said = submit_problems(sup, image_params(table("vlm.parquet", [["imgs/1.png", "~/.ssh/id_rsa"]], "images")))
    assert "`vlm.parquet`, column `images`, row 1: `id_rsa`" in said
    said = submit_problems(sup, image_params(table("clips.jsonl", ["ok.wav", "/proc/self/environ"], "audio")))
    assert "`clips.jsonl`, column `audio`, row 2: `environ`" in said
    (mine / "link").symlink_to("/etc")
    assert "row 1: `hostname`" in submit_problems(sup, image_params(table("link.csv", ["link/hostname"])))
    mapped = table("mapped.csv", ["/etc/hostname"], "picture")
    assert "column `picture`" in submit_problems(sup, image_params(mapped, column_mapping={"image": "picture"}))

    folder = uploads / "0123456789" / "clips"  # a folder whose metadata names a host file
    folder.mkdir(parents=True)
    (folder / "metadata.csv").write_text("file_name,transcription\n/etc/hostname,hi\n")
    assert "`metadata.csv`, column `file_name`, row 1" in submit_problems(sup, image_params(folder))

    local = Supervisor(data_dir, manage_all=False)  # the local operator's own files are theirs to name
    assert submit_problems(local, image_params(mine / "host.csv")) == ""


# ---- old uploads and exports are cleaned --------------------------------------------------------

DAY = 86400


def aged(path: Path, days: float, size: int = 10) -> Path:
    """A file (or an upload folder holding one) last used ``days`` ago."""
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        targets = [path]
    else:
        (path / "data.csv").parent.mkdir(parents=True, exist_ok=True)
        (path / "data.csv").write_bytes(b"x" * size)
        targets = [path / "data.csv", path]
    t = time.time() - days * DAY
    for target in targets:
        os.utime(target, (t, t))
    return path


def test_old_uploads_and_exports_are_cleaned_but_not_what_a_run_reads(data_dir, tmp_path, monkeypatch):
    from engine.run.supervisor import Supervisor
    from ui import datasource

    ctx = Context(Supervisor(data_dir, manage_all=False))  # not started: no thread launches (and fails) run q1
    up, ex = ctx.data_dir / "uploads", ctx.data_dir / "exports"
    old = aged(up / "0000000001", days=5)
    fresh = aged(up / "0000000002", days=0.1)
    in_use = aged(up / "ann" / "0000000003", days=9)  # a shared instance's per-user folder, read by a queued run
    old_of_bob = aged(up / "bob" / "0000000004", days=9)
    ctx.engine.store.insert_run(
        {"id": "q1", "name": "q", "task": "llm_sft", "status": "queued", "run_dir": str(tmp_path / "q1")}
        | {"params": json.dumps({"data_path": str(in_use / "data.csv")}), "key_metric_name": "eval_loss"}
    )
    finished_run(ctx, "r1", "kept")
    kept_zip = aged(ex / f"kept-r1-model-{'a' * 10}.zip", days=0.1)
    orphan_zip = aged(ex / "ann" / f"gone-r9-model-{'b' * 10}.zip", days=0.1)  # its run was deleted
    old_config = aged(ex / "llm_sft-20240101.yaml", days=3)
    gradio_tmp = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(gradio_tmp))
    old_cache, new_cache = aged(gradio_tmp / "h1" / "a.csv", days=3), aged(gradio_tmp / "h2" / "b.csv", days=0)

    removed = datasource.clean_old_files(ctx, hours=48, gigabytes=10)
    gone = [old, old_of_bob, orphan_zip, old_config, old_cache]
    assert all(not p.exists() for p in gone) and set(gone) <= set(removed["paths"]), removed["paths"]
    assert fresh.exists() and in_use.exists() and kept_zip.exists() and new_cache.exists()

    big = aged(up / "0000000005", days=0.05, size=3000)  # over the size limit: the oldest go first
    datasource.clean_old_files(ctx, hours=48, gigabytes=3005 / 2**30)
    assert big.exists() and in_use.exists() and not fresh.exists() and not kept_zip.exists()


def test_cleanup_runs_at_start_with_the_operators_limits(supervisor, monkeypatch):
    import app
    from ui import datasource

    ctx = Context(supervisor, shared=True)
    assert datasource.cleanup_limits(shared=True) == (48, 10) and datasource.cleanup_limits(shared=False) == (720, 50)
    monkeypatch.setenv("TRAINPAD_CLEAN_HOURS", "1")
    assert datasource.cleanup_limits(shared=True) == (1, 10)
    stale = aged(ctx.data_dir / "uploads" / "ann" / "00000000aa", days=0.5)
    datasource.start_cleanup(ctx, every=3600)
    deadline = time.time() + 10
    while stale.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not stale.exists()
    args = app.build_parser().parse_args(["--clean-hours", "6", "--clean-gb", "2"])
    assert (args.clean_hours, args.clean_gb) == (6, 2)


# ---- errors a visitor can meet ---------------------------------------------------------------------


def test_the_preview_lists_no_server_folder(supervisor, monkeypatch, tmp_path):
    from engine.data import splits
    from engine.task import get_task
    from ui import context, task_view

    task = get_task("text_classification")
    shared = as_user(Context(supervisor, shared=True), "ann")
    monkeypatch.setattr(context, "_CURRENT", [shared])
    for path in ("/root", "/", "/etc", "/etc/passwd", "../../../etc", "~"):
        t0 = time.time()
        df, note, _, columns = task_view.preview_data(task, path, {}, {})
        assert "your own uploads" in note and columns == [] and df.empty, path
        assert time.time() - t0 < 1 and not any(w in note for w in ("bashrc", "passwd", "shadow", "found")), note
    shared.user = lambda: ""  # a visitor who is not signed in reads no uploads (not everyone's)
    mine = shared.engine.user_dirs("ann")[0] / "0123456789" / "d.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("text,label\na,1\n")
    assert "your own uploads" in task_view.preview_data(task, str(mine), {}, {})[1]

    monkeypatch.setattr(context, "_CURRENT", [Context(supervisor)])  # locally: an unreadable folder, said plainly

    def denied(*a, **kw):
        raise PermissionError(13, "Permission denied", "/root/secret/train.csv")

    monkeypatch.setattr(splits, "load_raw", denied)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "train.csv").write_text("text,label\na,1\n")
    note = task_view.preview_data(task, str(tmp_path / "secret"), {}, {})[1]
    assert "`train.csv` could not be read (Permission denied)" in note and "/root" not in note


def test_the_gallery_shows_no_image_from_outside_the_users_uploads(supervisor, monkeypatch, tmp_path):
    from PIL import Image

    from ui import context, datasource

    host_image = tmp_path / "host" / "private.png"  # an image on the server, outside every upload
    host_image.parent.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(host_image)
    shared = as_user(Context(supervisor, shared=True), "ann")
    folder = shared.engine.user_dirs("ann")[0] / "0123456789"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "mine.png")
    table = folder / "d.csv"
    table.write_text(f"image,label\nmine.png,a\n{host_image},b\n")
    monkeypatch.setattr(context, "_CURRENT", [shared])
    items, note = datasource.gallery(datasource.source_params(str(table)))
    assert items == [] and "`d.csv`, column `image`, row 2: `private.png` (an absolute path)" in note
    table.write_text("image,label\nmine.png,a\nmine.png,b\n")
    assert len(datasource.gallery(datasource.source_params(str(table)))[0]) == 2


def test_check_on_a_shared_instance_reads_no_file_start_would_refuse(supervisor, tmp_path):
    from engine.task import get_task
    from ui import task_view

    host = tmp_path / "host.csv"  # a CSV on the server, outside every upload
    host.write_text("secret_column,label\nsecret value,1\n")
    shared = as_user(Context(supervisor, shared=True), "ann")
    task = get_task("image_classification")
    _, data_md, problems = task_view.check_report(shared, task, {"base_model": "m", "data_path": str(host)})
    assert "data_path: on this shared instance a local path must be one of your uploads" in data_md
    assert "secret" not in data_md and problems, "nothing of the file is read or shown"
    mine = shared.engine.user_dirs("ann")[0] / "0123456789" / "d.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("image,label\n/etc/hostname,a\n")
    _, data_md, _ = task_view.check_report(shared, task, {"base_model": "m", "data_path": str(mine)})
    assert "`d.csv`, column `image`, row 1: `hostname` (an absolute path) is not in your uploads" in data_md
    _, data_md, _ = task_view.check_report(Context(supervisor), task, {"base_model": "m", "data_path": str(host)})
    assert "must be one of your uploads" not in data_md, "locally the operator's files are theirs"


def test_checks_run_a_few_at_a_time(tmp_path, monkeypatch):
    import threading
    from dataclasses import replace

    from engine.data import splits
    from engine.task import get_task

    running, most = [], []

    def slow_check(train, valid, params):
        running.append(1)
        most.append(len(running))
        time.sleep(0.2)
        running.pop()
        return []

    monkeypatch.setattr(splits, "_CHECKS", threading.BoundedSemaphore(2))
    task = replace(get_task("text_classification"), check_data=slow_check)
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,1\nb,0\n")
    params = task.params.model_validate({"base_model": "m", "data_path": str(path)})
    threads = [threading.Thread(target=splits.check_data, args=(task, params)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(most) == 6 and max(most) == 2
