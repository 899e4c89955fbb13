"""LLM family checks before launch: preference data forms, bad inputs refused with row and reason,
the token-length report (computed without torch/transformers), quantization refused on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.llm import data as ld
from engine.llm import model as lm
from engine.params import validate_params
from engine.task import get_task
from tests.tiny import write_jsonl
from tests.tiny_llm import preference_rows

ROOT = Path(__file__).resolve().parent.parent
DPO = get_task("llm_dpo")


def dpo_params(model: Path, data: Path, **kw):
    return validate_params(DPO.params, {"base_model": str(model), "data_path": str(data), "max_length": 32, **kw})


def refused(supervisor, task, params) -> str:
    """Submit; assert it is refused before anything is queued; return the message."""
    with pytest.raises(UserError) as err:
        supervisor.submit(task, params)
    assert supervisor.store.list_runs() == [] and list(supervisor.runs_dir.iterdir()) == []
    return str(err.value)


# ---- preference data forms -----------------------------------------------------------------


def test_prompt_implied_by_shared_start_of_chats():
    user = {"role": "user", "content": "hi"}
    x = ld.preference_example(
        None,
        [user, {"role": "assistant", "content": "hello!"}],
        json.dumps([user, {"role": "assistant", "content": "go away"}]),
        1,
    )
    assert x == {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": "hello!"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
    }


def test_explicit_prompt_forms():
    assert ld.preference_example("q?", "yes", "no", 1) == {"prompt": "q?", "chosen": "yes", "rejected": "no"}
    full = [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "yes"}]
    x = ld.preference_example("q?", full, [{"role": "assistant", "content": "no"}], 1)  # prompt repeated in chosen
    assert x["prompt"] == full[:1] and x["chosen"] == full[1:] and x["rejected"][0]["content"] == "no"


def test_mixed_rows_are_lifted_to_one_chat_form():
    import pandas as pd

    rows = preference_rows(2, "text") + preference_rows(2, "chat")
    out = ld.preference_rows(pd.DataFrame(rows))
    assert all(isinstance(r["chosen"], list) and isinstance(r["prompt"], list) for r in out)
    assert out[0]["prompt"] == [{"role": "user", "content": rows[0]["prompt"]}]


def test_no_shared_prompt_names_the_row():
    chosen = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    rejected = [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    with pytest.raises(UserError, match=r"Row 7: .*share no opening messages.*Add a `prompt` column"):
        ld.preference_example(None, chosen, rejected, 7)


# ---- bad inputs refused before queueing -----------------------------------------------------


def test_missing_rejected_is_refused(supervisor, tiny_llama, tmp_path):
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in preference_rows(8, "text")]
    msg = refused(supervisor, DPO, dpo_params(tiny_llama, write_jsonl(tmp_path / "d.jsonl", rows)))
    assert "No column for `rejected`" in msg and "column_mapping" in msg


def test_chosen_identical_to_rejected_everywhere_is_refused(supervisor, tiny_llama, tmp_path):
    rows = [{**r, "rejected": r["chosen"]} for r in preference_rows(8, "text")]
    msg = refused(supervisor, DPO, dpo_params(tiny_llama, write_jsonl(tmp_path / "d.jsonl", rows)))
    assert "identical to `rejected` in every row (rows 1-8)" in msg


def test_one_identical_pair_is_refused_by_row(supervisor, tiny_llama, tmp_path):
    rows = preference_rows(8, "text")
    rows[4]["rejected"] = rows[4]["chosen"]
    msg = refused(
        supervisor,
        get_task("llm_orpo"),
        validate_params(
            get_task("llm_orpo").params,
            {"base_model": str(tiny_llama), "data_path": str(write_jsonl(tmp_path / "d.jsonl", rows))},
        ),
    )
    assert "Row 5: `chosen` and `rejected` are identical" in msg


def test_message_without_role_is_refused_with_row(supervisor, tiny_llama, tmp_path):
    rows = preference_rows(8, "chat")
    rows[2]["rejected"][1] = {"content": "no role here"}
    msg = refused(supervisor, DPO, dpo_params(tiny_llama, write_jsonl(tmp_path / "d.jsonl", rows)))
    assert "Row 3, column `rejected`, message 2: every message needs a `role`" in msg


def test_sft_chat_without_role_is_refused_with_row(supervisor, tiny_llama, tmp_path):
    from tests.tiny import chat_rows

    rows = chat_rows(6)
    rows[3]["messages"][0].pop("role")
    sft = get_task("llm_sft")
    params = validate_params(
        sft.params, {"base_model": str(tiny_llama), "data_path": str(write_jsonl(tmp_path / "c.jsonl", rows))}
    )
    assert "Row 4, column `messages`, message 1" in refused(supervisor, sft, params)


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{% for m in messages %}{{ m['content'] }", "is not valid Jinja"),
        (
            "{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('assistant turns are not "
            "supported') }}{% endif %}{% endfor %}",
            "Row 1: the chat template (custom template) failed to render this "
            "example: TemplateError: assistant turns are not supported",
        ),
    ],
    ids=["syntax", "render"],
)
def test_chat_template_that_fails_is_refused(supervisor, tiny_llama, tmp_path, template, expected):
    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(8, "chat"))
    params = dpo_params(tiny_llama, data, chat_template="custom", custom_chat_template=template)
    assert expected in refused(supervisor, DPO, params)


def test_sft_template_failure_is_refused(supervisor, tiny_llama, tmp_path):
    from tests.tiny import chat_rows

    sft = get_task("llm_sft")
    params = validate_params(
        sft.params,
        {
            "base_model": str(tiny_llama),
            "data_path": str(write_jsonl(tmp_path / "c.jsonl", chat_rows(6))),
            "chat_template": "custom",
            "custom_chat_template": "{{ messages[0].nope.deeper }}",
        },
    )
    assert "Row 1: the chat template" in refused(supervisor, sft, params)


def test_blank_pretraining_text_is_refused_by_row(supervisor, tiny_llama, tmp_path):
    pre = get_task("llm_pretrain")
    rows = [{"text": "some words here"}, {"text": "   "}, {"text": "more words"}]
    params = validate_params(
        pre.params, {"base_model": str(tiny_llama), "data_path": str(write_jsonl(tmp_path / "t.jsonl", rows))}
    )
    assert "blank in row(s) 2" in refused(supervisor, pre, params)


# ---- the data report ------------------------------------------------------------------------


def test_data_report_stats_and_preview(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(20, "chat"))
    report = ld.data_report(DPO, dpo_params(tiny_llama, data, max_length=25))
    s = report["stats"]
    assert s["examples"] == 40  # chosen and rejected sequences
    assert s["min"] <= s["median"] <= s["p95"] <= s["max"] and s["max_length"] == 25
    assert 0 < s["over_share"] < 1 and s["over_max_length"] == round(s["over_share"] * 40)
    assert report["preview"].startswith("<|im_start|>user\nwhat is") and "<|im_start|>assistant\n" in report["preview"]
    assert report["problems"] == []
    text = ld.format_report(report)
    assert "median" in text and "longer than max length 25" in text and "One formatted training example" in text


def test_data_report_token_counts_match_transformers(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(5, "chat"))
    report = ld.data_report(DPO, dpo_params(tiny_llama, data, max_length=1000))
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    row = preference_rows(5, "chat")[0]
    ids = tok.apply_chat_template(row["chosen"], tokenize=True, return_dict=False)
    assert report["preview"] == tok.apply_chat_template(row["chosen"], tokenize=False)
    assert report["stats"]["min"] <= len(ids) <= report["stats"]["max"]


def test_data_report_for_uncached_hub_model_skips_with_a_note(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(4, "chat"))
    report = ld.data_report(DPO, dpo_params(Path("someone/not-downloaded-model"), data))
    assert report["stats"] is None and any("not available locally" in n for n in report["notes"])


def test_data_report_imports_no_heavy_library(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(6, "chat"))
    code = (
        "import sys, json; from engine.task import get_task; from engine.params import validate_params; "
        "from engine.llm import data as ld; t = get_task('llm_dpo'); "
        f"p = validate_params(t.params, {{'base_model': {str(tiny_llama)!r}, 'data_path': {str(data)!r}}}); "
        "r = ld.data_report(t, p); "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules]; "
        "print(json.dumps({'heavy': heavy, 'examples': r['stats']['examples']}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "examples": 12}


# ---- quantization and merge refusals ----------------------------------------------------------


def test_quantization_on_cpu_says_it_needs_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    params = validate_params(DPO.params, {"base_model": "x", "data_path": "y", "quantization": "int4"})
    with pytest.raises(UserError, match="quantization=int4 needs a CUDA GPU.*Set quantization to none"):
        lm.quantization_config(params)


@pytest.mark.slow
def test_quantized_run_fails_with_clear_message_on_cpu(supervisor, tiny_llama, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(8, "chat"))
    run_id = supervisor.submit(DPO, dpo_params(tiny_llama, data, quantization="int8"))
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "failed" and row["exit_code"] == 2
    assert "quantization=int8 needs a CUDA GPU" in row["error"]


def test_merge_refuses_a_run_without_adapter(tmp_path):
    from engine.run.merge import merge_in_subprocess

    (tmp_path / "model").mkdir()
    with pytest.raises(UserError, match="no LoRA adapter to merge"):
        merge_in_subprocess(tmp_path)
