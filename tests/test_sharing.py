"""A shared instance: what a visitor can ask of the host. Policy checks on every submission, the worker's
environment, per-user queues."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import psutil
import pytest

from engine.errors import UserError
from engine.run import procs
from engine.run.policy import Policy
from engine.run.supervisor import Supervisor
from engine.task import get_task
from tests.tiny import chat_rows, write_jsonl

SFT = get_task("llm_sft")


def sft(model, data, **kw):
    base = dict(base_model=str(model), data_path=str(data), epochs=1, batch_size=4, max_length=64, use_lora=True)
    return SFT.params.model_validate({**base, **kw})


def refusal(sup: Supervisor, params, user: str = "") -> str:
    with pytest.raises(UserError) as e:
        sup.submit(SFT, params, user=user)
    assert sup.store.list_runs() == [], "nothing is queued"
    return str(e.value)


def test_remote_code_needs_the_operator(data_dir, tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(16))
    message = refusal(Supervisor(data_dir, manage_all=False), sft(tiny_llama, data, trust_remote_code=True))
    assert "trust_remote_code is off on this instance" in message and "--allow-remote-code" in message
    allowed = Supervisor(data_dir, manage_all=False, policy=Policy(allow_remote_code=True))
    assert allowed.submit(SFT, sft(tiny_llama, data, trust_remote_code=True))


def test_resume_only_from_a_run_checkpoint(data_dir, tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(16))
    sup = Supervisor(data_dir, manage_all=False)
    (tmp_path / "x").mkdir()
    message = refusal(sup, sft(tiny_llama, data, resume_from=str(tmp_path / "x")))
    assert "resume_from must be a checkpoint folder of one of this instance's runs" in message
    escape = sup.runs_dir / "r1" / "checkpoints" / ".." / ".." / ".." / ".."
    assert "resume_from" in refusal(sup, sft(tiny_llama, data, resume_from=str(escape)))
    ckpt = sup.runs_dir / "r1" / "checkpoints" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    assert sup.submit(SFT, sft(tiny_llama, data, resume_from=str(ckpt)), check=False)


def test_shared_paths_stay_in_the_users_uploads(data_dir, tiny_llama, tmp_path):
    sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=True))
    uploads = sup.user_dirs("ann")[0]
    uploads.mkdir(parents=True)
    mine = write_jsonl(uploads / "c.jsonl", chat_rows(16))
    models = sup.data_dir / "models" / "tiny"
    shutil.copytree(tiny_llama, models)
    assert sup.submit(SFT, sft(models, mine), user="ann")
    for path in ("/etc/passwd", str(tmp_path), str(mine)):
        message = refusal_for(sup, sft(models, path), user="bob")
        assert "data_path: on this shared instance a local path must be one of your uploads" in message
        assert "passwd" not in message and str(tmp_path) not in message, "no server path is echoed"


def refusal_for(sup: Supervisor, params, user: str) -> str:
    before = len(sup.store.list_runs())
    with pytest.raises(UserError) as e:
        sup.submit(SFT, params, user=user)
    assert len(sup.store.list_runs()) == before
    return str(e.value)


def test_per_user_queue_cap(data_dir, tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(16))
    sup = Supervisor(data_dir, manage_all=False, policy=Policy(max_queued_per_user=2))
    sup.submit(SFT, sft(tiny_llama, data), user="ann")
    sup.submit(SFT, sft(tiny_llama, data), user="ann")
    assert "2 runs queued or running" in refusal_for(sup, sft(tiny_llama, data), user="ann")
    assert sup.submit(SFT, sft(tiny_llama, data), user="bob"), "another user has their own quota"


def test_worker_environment_has_no_host_secrets(monkeypatch):
    monkeypatch.setenv("TRAINPAD_AUTH", "admin:s3cret")
    monkeypatch.setenv("HF_TOKEN", "hf_host_token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    env = procs.worker_env()
    assert not {"TRAINPAD_AUTH", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] == "1" and "PATH" in env
    assert procs.worker_env({"HF_TOKEN": "hf_users_own"})["HF_TOKEN"] == "hf_users_own"


@pytest.mark.slow
def test_a_shared_instance_never_hands_the_host_token_to_a_run(data_dir, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINPAD_AUTH", "admin:s3cret")
    monkeypatch.setenv("HF_TOKEN", "hf_host_token")
    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(200))
    for shared, expected in ((True, None), (False, "hf_host_token")):
        sup = Supervisor(data_dir, manage_all=False, policy=Policy(shared=shared, allowed_roots=(tmp_path, tiny_llama)))
        run_id = sup.submit(SFT, sft(tiny_llama, data, max_steps=3000), check=False)
        sup.tick()
        pid = sup.store.get_run(run_id)["pid"]
        environ = psutil.Process(pid).environ()
        assert "TRAINPAD_AUTH" not in environ and environ.get("HF_TOKEN") == expected
        sup.stop(run_id)
        assert sup.wait(run_id, timeout=60, drive=True)["status"] == "stopped"
        time.sleep(0.1)


@pytest.fixture
def fake_hub(monkeypatch):
    from tests.fake_hub import FakeHub

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the worker inherits it (allow-listed), never the host token
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the fake Hub is on 127.0.0.1
    yield hub
    hub.close()


@pytest.mark.slow
def test_push_to_hub_uploads_the_model_and_card_with_the_users_token(supervisor, tiny_llama, tmp_path, fake_hub):
    from tests.fake_hub import TOKEN

    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(24))
    params = sft(tiny_llama, data, max_steps=2, push_to_hub=True, hub_repo_id="team/tiny-sft", hub_private=True)
    run_id = supervisor.submit(SFT, params, secrets={"HF_TOKEN": TOKEN})
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]
    repo = fake_hub.repos["team/tiny-sft"]
    assert repo["private"] is True
    files = repo["files"]
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(files), sorted(files)
    card = files["README.md"].decode()
    assert "model-index" in card and "train_loss" in card and "max_steps: 2" in card
    assert TOKEN not in card and all(TOKEN.encode() not in body for body in files.values())
    assert "pushed to" in Path(row["run_dir"], "train.log").read_text()


@pytest.mark.slow
def test_push_to_hub_without_a_token_fails_plainly(supervisor, tiny_llama, tmp_path, fake_hub):
    data = write_jsonl(tmp_path / "c.jsonl", chat_rows(24))
    run_id = supervisor.submit(SFT, sft(tiny_llama, data, max_steps=1, push_to_hub=True, hub_repo_id="ann/x"))
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "failed" and "push_to_hub is on but no Hugging Face token was given" in row["error"]
    assert fake_hub.repos == {}


def test_a_huge_cell_is_measured_quickly(tiny_llama, tmp_path):
    import time as _time

    from engine.llm.data import token_lengths

    t0 = _time.time()
    lengths = token_lengths(["hello world " * 2_000_000, "hi"], tiny_llama, add_special_tokens=False)
    assert _time.time() - t0 < 10 and lengths[0] > 1_000_000 and lengths[1] < 10


SECRET_CONFIG = """task: llm_sft
params:
  base_model: ${TRAINPAD_AUTH}
  data_path: ${HF_TOKEN}
  epochs: "${HF_TOKEN}"
  hub_repo_id: ${HOME}
"""


def test_a_loaded_config_never_reads_the_hosts_environment(tmp_path, monkeypatch, data_dir):
    from engine.config import load_config
    from ui import task_view

    monkeypatch.setenv("HF_TOKEN", "hf_hostsecret123456")
    monkeypatch.setenv("TRAINPAD_AUTH", "admin:s3cretpass")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SECRET_CONFIG)
    with pytest.raises(UserError) as e:  # the UI's Load config: nothing is expanded, nothing is echoed
        task_view.load_request(str(cfg))
    said = str(e.value)
    assert "hf_hostsecret" not in said and "s3cretpass" not in said and "`epochs`" in said
    cfg.write_text(SECRET_CONFIG.replace('  epochs: "${HF_TOKEN}"\n', ""))
    request = task_view.load_request(str(cfg))
    text = repr(request)
    assert "hf_hostsecret" not in text and "s3cretpass" not in text and "${TRAINPAD_AUTH}" in text
    with pytest.raises(UserError, match=r"Config uses \$\{TRAINPAD_AUTH\}: a secret is never put into a config"):
        load_config(cfg)  # the command line expands ${VAR}, but never a secret's


def test_secret_values_are_not_echoed_in_errors(monkeypatch):
    from engine.params import validate_params

    monkeypatch.setenv("MY_API_KEY", "zz-very-private-value")
    with pytest.raises(UserError) as e:
        validate_params(SFT.params, {"epochs": "hf_abcdefghijklmnop", "lr": "zz-very-private-value"})
    said = str(e.value)
    assert "hf_abcdefghijklmnop" not in said and "zz-very-private-value" not in said and said.count("***") == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("task: llm_sft\nparams: [1, 2]\n", "`params:` must be a mapping"),
        ("task: llm_sft\nparams: 3\n", "`params:` must be a mapping"),
        ("a: &x [1, 2]\nb: *x\ntask: llm_sft\n", "YAML aliases (`*x`) are not accepted"),
        ("task: llm_sft\nparams: {" + "x" * 300_000 + ": 1}\n", "larger than 256 KB"),
        ("task: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_config_files_get_plain_errors(tmp_path, text, expected):
    from ui import task_view

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(expected)):
        task_view.load_request(str(path))


def test_a_non_utf8_config_is_refused_plainly(tmp_path):
    from ui import task_view

    (tmp_path / "latin.yaml").write_bytes("task: llm_sft\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="could not be read as UTF-8"):
        task_view.load_request(str(tmp_path / "latin.yaml"))


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return path


@pytest.mark.parametrize(
    "members, expected",
    [
        ({}, "is an empty ZIP"),
        ({"../evil.csv": b"a,b\n1,2\n"}, "../evil.csv"),
        ({"bomb.csv": b"0" * 50_000_000}, "zip bombs"),
        ({f"f{i}.csv": b"a\n1\n" for i in range(100_001)}, "100001 members"),
    ],
)
def test_bad_zip_uploads_are_refused_and_leave_nothing(tmp_path, members, expected, monkeypatch):
    from ui import datasource

    monkeypatch.setenv("TRAINPAD_ZIP_MAX_MEMBERS", "100000")  # an operator's limit (a shared instance's is 50,000)
    uploads = tmp_path / "uploads"
    with pytest.raises(UserError, match=re.escape(expected)):
        datasource.keep_upload(_zip(tmp_path / "up.zip", members), uploads)
    assert not [p for p in uploads.rglob("*") if p.is_file()], "nothing extracted"


def test_a_corrupt_zip_does_not_poison_the_intact_one(tmp_path):
    from ui import datasource

    good = _zip(tmp_path / "data.zip", {"data/train.csv": b"text,label\nhi,1\nho,0\n"})
    body = good.read_bytes()
    (tmp_path / "broken").mkdir()
    broken = tmp_path / "broken" / "data.zip"
    broken.write_bytes(body[: len(body) // 2])
    with pytest.raises(UserError):
        datasource.keep_upload(broken, tmp_path / "uploads")
    folder = datasource.keep_upload(good, tmp_path / "uploads")
    assert (folder / "train.csv").read_text().startswith("text,label")
