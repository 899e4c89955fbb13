"""The Playground's handlers: streamed chat and image answers, generation settings and their cap, the table
input (pasted row, a row of the training data, an uploaded file), and hints that name where output appears."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import pytest

from engine import runfiles as rf
from engine.run.predict import predict_dir
from tests.test_browser import CHROMIUM, page, pick, shot  # noqa: F401 - page is a fixture
from tests.test_ui_runs import fake_run
from ui import playground, predictor
from ui import playground_table as pt
from ui.context import Context

WORDS = 10


@pytest.fixture
def ctx(supervisor) -> Context:
    c = Context(supervisor)
    yield c
    predictor.release_all()


def chain_words(tok: Any, n: int) -> list[int]:
    """``n`` word tokens (a leading space and letters) of the test tokenizer."""
    return sorted(i for t, i in tok.get_vocab().items() if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3)[:n]


def wire_chain(model: Any, layers: Any, embed: Any, chain: list[int]) -> None:
    """Make greedy decoding follow ``chain``: attention and MLP outputs zeroed, so each position's hidden state is
    its token's embedding, and the (untied) head maps each chain token's embedding to the next token."""
    import torch

    model.lm_head.weight = torch.nn.Parameter(torch.zeros_like(embed))
    with torch.no_grad():
        for layer in layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for a, b in zip(chain, chain[1:], strict=False):
            model.lm_head.weight[b] = 100 * embed[a]


def word_chain_llama(tokenizer_dir: Path, out_dir: Path) -> list[str]:
    """A 1-layer Llama whose greedy reply to any chat is WORDS words and then ``<|im_start|>`` (a new turn, not
    its eos token), after which it would go on writing a word forever."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tests.tiny import causal_lm_config

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**causal_lm_config(tok, 64, 1), tie_word_embeddings=False))
    words = chain_words(tok, WORDS + 1)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    last = tok(prompt, add_special_tokens=False)["input_ids"][-1]
    chain = [last, *words[:WORDS], tok.convert_tokens_to_ids("<|im_start|>"), words[WORDS], words[WORDS]]
    wire_chain(model, model.model.layers, model.model.embed_tokens.weight, chain)
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return [tok.decode([i]) for i in words[:WORDS]]


def word_chain_llava(out_dir: Path, image: Path, question: str) -> str:
    """The tiny LLaVA made to answer ``question`` about ``image`` with a fixed chain of words; the answer."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from engine.data import images
    from tests.tiny_vlm import build_tiny_llava

    build_tiny_llava(out_dir)
    model, processor = AutoModelForImageTextToText.from_pretrained(str(out_dir)), AutoProcessor.from_pretrained(out_dir)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    last = int(processor(images=[[images.open_image(str(image))]], text=[prompt])["input_ids"][0][-1])
    model.config.tie_word_embeddings = model.config.text_config.tie_word_embeddings = False
    words = chain_words(processor.tokenizer, 6)
    lm = model.model.language_model
    wire_chain(model, lm.layers, lm.embed_tokens.weight, [last, *words, processor.tokenizer.eos_token_id])
    model.save_pretrained(str(out_dir))
    return processor.tokenizer.decode(words).strip()


@pytest.fixture(scope="module")
def chain_model(tmp_path_factory, tiny_llama) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("models") / "chain"
    return out, word_chain_llama(tiny_llama, out)


def grows(texts: list[str]) -> bool:
    """Each text extends the one before it."""
    return all(b.startswith(a) and len(b) > len(a) for a, b in zip(texts, texts[1:], strict=False))


def llm_run(ctx: Context, model: Path, run_id: str = "chat") -> Path:
    import shutil

    run_dir = fake_run(ctx, run_id, "succeeded")
    shutil.copytree(model, run_dir / rf.MODEL_DIR)
    return run_dir


def test_chat_streams_stops_at_end_of_turn_and_caps_new_tokens(ctx, chain_model, monkeypatch):
    model, words = chain_model
    run_dir = llm_run(ctx, model)
    monkeypatch.setenv("TRAINPAD_MAX_NEW_TOKENS", "6")  # read by the UI, handed to the prediction process
    assert "capped at 6" in playground.token_notice(200) and playground.token_notice(6) == ""

    chats = list(playground.chat_replies(ctx, "chat", [], "hello", (200, 0.0, 1.0, "Be brief."), "s1"))
    assert chats[0] == [{"role": "user", "content": "hello"}]
    replies = [c[-1]["content"] for c in chats[1:]]
    assert len(replies) >= 4 and grows(replies)
    assert replies[-1] == "".join(words[:6]).strip()  # 200 asked, the cap of 6 used

    monkeypatch.setenv("TRAINPAD_MAX_NEW_TOKENS", "1024")
    history = chats[-1]
    request = playground.chat_request([*history, {"role": "user", "content": "more"}], 64, 0.0, "")
    greedy = playground.trim_reply(predict_dir(run_dir, request))  # not streamed, in this process
    assert greedy == "".join(words).strip(), "generation stops at <|im_start|>, not at the 64-token limit"
    stream = predictor.predictor_for(ctx, "s1", str(run_dir)).stream({**request, "stream": True})
    assert next(stream)[0] == "partial"
    stream.close()  # the browser left mid-reply: the rest of that reply is drained before the next request
    short = predictor.predictor_for(ctx, "s1", str(run_dir)).ask({**request, "max_new_tokens": 3})
    assert playground.trim_reply(short) == "".join(words[:3]).strip()
    predictor.release_all()  # a new prediction process, with the new cap
    chats = list(playground.chat_replies(ctx, "chat", history, "more", (64, 0.0, 1.0, ""), "s1"))
    assert chats[-1][-1]["content"] == greedy and len(chats[-1]) == 4


def test_sampling_settings_pass_top_p_and_refuse_bad_values(monkeypatch):
    from engine.errors import UserError
    from engine.llm.model import sampling_settings

    request = playground.chat_request([{"role": "user", "content": "hi"}], 5000, 0.7, "", top_p=0.9)
    assert request["top_p"] == 0.9 and request["max_new_tokens"] == 1024  # the default cap
    settings = sampling_settings(request)
    assert settings["do_sample"] and settings["top_p"] == 0.9 and settings["temperature"] == 0.7
    assert settings["max_new_tokens"] == 1024
    greedy = sampling_settings({"temperature": 0, "top_p": 0.5, "max_new_tokens": 32})
    assert not greedy["do_sample"] and greedy["top_p"] is None and greedy["max_new_tokens"] == 32
    with pytest.raises(UserError, match="top_p"):
        sampling_settings({"temperature": 1.0, "top_p": 1.5})
    monkeypatch.setenv("TRAINPAD_MAX_NEW_TOKENS", "lots")
    with pytest.raises(UserError, match="TRAINPAD_MAX_NEW_TOKENS='lots' is not a whole number"):
        playground.token_notice(10)


def test_top_p_and_the_end_of_turn_tokens_reach_generate(chain_model, monkeypatch):
    from engine.llm import model as lm

    model, tok = lm.load_for_inference(chain_model[0])  # the same (cached) model generate() uses
    seen = {}
    monkeypatch.setattr(model, "generate", lambda **kw: seen.update(kw) or kw["input_ids"])
    request = playground.chat_request([{"role": "user", "content": "hi"}], 16, 0.8, "", top_p=0.5)
    assert lm.generate(chain_model[0], request) == ""
    assert seen["top_p"] == 0.5 and seen["temperature"] == 0.8 and seen["do_sample"] and seen["max_new_tokens"] == 16
    assert {tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>")} <= set(seen["eos_token_id"])


def test_image_answers_stream_like_the_greedy_answer(tmp_path):
    from engine.tasks import vlm
    from tests.tiny_vlm import shape_image

    image = shape_image(tmp_path / "a.png", "red", "square", 0)
    expected = word_chain_llava(tmp_path / "llava", image, "what colour is the square?")
    question = {"image": str(image), "question": "what colour is the square?", "max_new_tokens": 12}
    assert vlm.predict(tmp_path / "llava", question) == expected
    parts = list(vlm.predict(tmp_path / "llava", {**question, "stream": True}))
    assert len(parts) >= 4 and parts[-1] == expected and grows(parts)


# --- tabular -------------------------------------------------------------------------------------


def make_tabular_run(ctx: Context, folder: Path) -> tuple[str, pd.DataFrame]:
    """A finished tabular run (a linear model, seconds) on 60 rows: x1, colour -> label."""
    from engine.params import validate_params
    from engine.task import get_task

    df = pd.DataFrame(
        {
            "x1": [float(i % 7) for i in range(60)],
            "colour": ["red", "blue", "green"] * 20,
            "label": ["yes" if i % 7 > 3 else "no" for i in range(60)],
        }
    )
    path = folder / "small.csv"
    df.to_csv(path, index=False)
    task = get_task("tabular")
    params = validate_params(
        task.params,
        {"data_path": str(path), "model": "linear", "num_trials": 1, "time_limit": 5, "cv_folds": 2,
         "target_columns": "label", "feature_importance": False},
    )  # fmt: skip
    run_id = ctx.supervisor.submit(task, params)
    row = ctx.engine.wait(run_id, timeout=120)
    assert row["status"] == "succeeded", row["error"]
    return run_id, df


@pytest.fixture
def tabular_run(ctx, tmp_path) -> tuple[str, pd.DataFrame]:
    return make_tabular_run(ctx, tmp_path)


def test_table_input_paste_fill_and_upload(ctx, tabular_run, tmp_path, monkeypatch):
    run_id, df = tabular_run
    run_dir = ctx.store.get_run(run_id)["run_dir"]
    columns = pt.model_columns(run_dir)
    assert columns.features == ["x1", "colour"] and "label" in columns.ignored
    assert pt.parse_rows("3, red", columns) == [{"x1": "3", "colour": "red"}]  # no header: the model's order
    assert pt.parse_rows("colour,x1\nblue,6\ngreen,", columns) == [
        {"colour": "blue", "x1": "6"},
        {"colour": "green", "x1": None},
    ]
    assert pt.parse_rows('{"x1": 1, "colour": "red", "label": "no"}', columns) == [{"x1": 1, "colour": "red"}]
    for text, message in (
        ('{"x1": 1}', "lacks the column `colour`"),
        ('{"x1": 1, "colour": "red", "size": 3}', "has `size`, which the model does not know"),
        ("1,red,3", "has 3 values but the model takes 2 columns, in this order: x1, colour"),
        ("x1,colour", "only the header line"),
        ("{oops", "not valid JSON"),
    ):
        with pytest.raises(Exception, match=message):
            pt.parse_rows(text, columns)

    filled = playground.fill_row(ctx, run_id, 5)
    assert json.loads(filled) == {"x1": 4.0, "colour": "blue"}  # row 5 of the data, the target left out
    with pytest.raises(gr.Error, match="only 60 rows"):
        playground.fill_row(ctx, run_id, 61)
    session = "table-session"
    [(output, _)] = playground.predictions(ctx, run_id, ("", "", filled, None, None), session)
    assert output["prediction"] in ("yes", "no") and playground.label_view(output)["visible"]
    with pytest.raises(gr.Error, match="Paste a row first"):  # a file path given as "text" is not read
        list(playground.predictions(ctx, run_id, (str(tmp_path / "small.csv"), "", "", None, None), session))

    upload = tmp_path / "new.csv"
    df.drop(columns="label").head(25).to_csv(upload, index=False)
    info, table, download = playground.batch_updates(ctx, run_id, str(upload), session)
    assert "25 predictions for `new.csv`" in info["value"] and len(table["value"]) == 25
    saved = Path(download["value"])
    assert (ctx.exports_dir / saved.name).is_file() and len(pd.read_csv(saved)) == 25  # offered through a link
    assert set(table["value"]["prediction"]) <= {"yes", "no"}
    df[["x1"]].to_csv(tmp_path / "lacking.csv", index=False)
    with pytest.raises(gr.Error, match="`lacking.csv` lacks the column `colour`"):
        playground.batch_updates(ctx, run_id, str(tmp_path / "lacking.csv"), session)
    monkeypatch.setenv(pt.MAX_ROWS_ENV, "20")
    with pytest.raises(gr.Error, match="more than 20 rows.*TRAINPAD_MAX_PREDICT_ROWS"):
        playground.batch_updates(ctx, run_id, str(upload), session)


# --- hints ---------------------------------------------------------------------------------------


def test_each_hint_names_the_component_its_output_appears_in(ctx, monkeypatch):
    monkeypatch.setattr(playground, "predictor_for", lambda *a: None)  # no prediction process for fake runs
    with gr.Blocks():
        w = playground._layout(ctx)
    for task, kind in (
        ("llm_sft", "chat"),
        ("text_classification", "text"),
        ("extractive_qa", "json"),
        ("tabular", "table"),
        ("image_classification", "image"),
        ("vlm", "image_text"),
        ("asr", "audio"),
    ):
        fake_run(ctx, kind, "succeeded", task=task)
        updates = playground.pick_updates(ctx, w, kind, "hint-session")
        hint = updates[w["info"]]
        assert updates[w["kind"]] == kind
        shown = {name for name in ("answer", "output") if updates[w[name]].get("visible")}
        if kind == "chat":
            assert not shown and "into the chat" in hint and updates[w["groups"]["chat"]]["visible"]
        elif kind in playground.STREAMED:
            assert shown == {"answer"} and w["answer"].label == "Answer" and "Answer box" in hint
        else:
            assert shown == {"output"} and updates[w["predict_row"]]["visible"], kind
            assert "under the Predict button" in hint, kind  # the output box sits right under it


# --- in a real browser ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)")
def test_browser_chat_streams_and_tabular_rows_are_filled_and_uploaded(studio, page, chain_model, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, ctx = studio
    llm_run(ctx, chain_model[0], "chat")
    run_id, df = make_tabular_run(ctx, tmp_path)
    page.goto(url)
    expect(page.locator("#llm_sft-check")).to_be_visible()  # the page is up
    for _ in range(20):  # the page's load event may switch back to the tab this browser was on
        page.get_by_role("tab", name="Playground").click()
        page.wait_for_timeout(1000)
        if page.locator("#play-run input").is_visible():
            break
    pick(page, "play-run", "name-chat · llm_sft · chat")
    expect(page.locator("#play-info")).to_contain_text("into the chat")
    page.evaluate(SEEN_JS)  # records every text the chat shows while the reply streams in
    page.locator("#play-msg textarea").fill("hello")
    page.locator("#play-send").click()
    reply = "".join(chain_model[1]).strip()
    expect(page.locator("#play-chat")).to_contain_text(reply)
    seen = [t for t in page.evaluate("window.__seen") if "hello" in t]
    assert any(reply not in t and "plu the" in t for t in seen), "a partial reply was shown before the whole one"
    shot(page, "play-chat-streamed")

    name = ctx.store.get_run(run_id)["name"] or run_id
    pick(page, "play-run", f"{name} · tabular · {run_id}")
    page.locator("#play-row-n input").fill("5")
    page.locator("#play-fill").click()
    expect(page.locator("#play-table textarea")).to_have_value('{"x1": 4.0, "colour": "blue"}')
    page.locator("#play-predict").click()
    expect(page.locator("#play-label")).to_be_visible()  # the class probabilities as bars
    upload = tmp_path / "new.csv"
    df.drop(columns="label").to_csv(upload, index=False)
    page.locator("#play-batch input[type=file]").set_input_files(str(upload))
    expect(page.locator("#play-batch-info")).to_contain_text("60 predictions for new.csv")
    expect(page.locator("#play-batch-table")).to_contain_text("proba_yes")
    expect(page.locator("#play-batch-download")).to_contain_text("predictions-")
    shot(page, "play-tabular-row-and-file")


SEEN_JS = """() => {
  window.__seen = [];
  const chat = document.querySelector('#play-chat');
  new MutationObserver(() => window.__seen.push(chat.innerText)).observe(
    chat, {subtree: true, childList: true, characterData: true});
}"""
