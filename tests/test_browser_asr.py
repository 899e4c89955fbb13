"""Real-browser test of speech recognition (Playwright driving Debian's Chromium): a ZIP of espeak-ng clips uploaded
on the ASR tab, Check shows their durations, a tiny local Whisper trains to the end, and the Playground transcribes
an uploaded clip. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, page, shot  # noqa: F401  (``page`` is a fixture)
from tests.tiny import write_csv
from tests.tiny_audio import WORDS, build_tiny_whisper, have_espeak, speak, spoken_words

LEXICON = WORDS[:4]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)"),
    pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (.ci/run installs it)"),
]


def test_asr_upload_check_durations_train_and_transcribe(studio, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, ctx = studio
    corpus = tmp_path / "speech"
    write_csv(corpus / "metadata.csv", spoken_words(corpus, LEXICON))  # 4 words x 12 voices/speeds/pitches
    archive = shutil.make_archive(str(tmp_path / "speech"), "zip", corpus)
    model = build_tiny_whisper(tmp_path / "tiny-whisper", LEXICON, seconds=1)

    pg = page
    pg.goto(url)
    pg.get_by_role("tab", name="Audio").click()
    pg.get_by_role("tab", name="Speech recognition").click()
    base = pg.locator("#asr-base_model input")
    base.fill(str(model))
    base.press("Enter")
    pg.locator("#asr-upload input[type=file]").set_input_files(archive)
    expect(pg.locator("#asr-data_path textarea, #asr-data_path input").first).to_have_value(
        re.compile(r"uploads/[0-9a-f]{10}/speech$")  # unpacked
    )
    expect(pg.locator("#asr-map-audio input")).to_have_value("file_name")  # matched by the role's alias
    expect(pg.locator("#asr-map-transcription input")).to_have_value("transcription")
    pg.locator("#asr-epochs input").fill("25")
    pg.locator("#asr-learning_rate input").fill("0.002")
    pg.locator("#asr-batch_size input").fill("8")

    pg.locator("#asr-check").click()
    msg = pg.locator("#asr-data_msg")
    expect(msg).to_contain_text(re.compile(r"Training audio \(4\d clips"), timeout=60_000)
    expect(msg).to_contain_text(re.compile(r"duration min 0\.\d\d s, median 0\.\d\d s"))
    red = "el => getComputedStyle(el).color"
    assert msg.locator("p", has_text="duration min").first.evaluate(red) != "rgb(185, 28, 28)", "information, not red"
    expect(msg).to_contain_text("the model takes up to 1 s; clips are resampled to 16000 Hz")
    expect(pg.locator("#asr-form_msg")).to_contain_text("data passed every check")
    shot(pg, "asr-1-check")

    pg.locator("#asr-start").click()
    expect(pg.locator("#run-status")).to_have_text(re.compile("running|succeeded"), timeout=60_000)
    run_id = pg.locator("#run-id textarea, #run-id input").first.input_value()
    expect(pg.locator("#run-status")).to_have_text("succeeded", timeout=400_000)
    row = ctx.store.get_run(run_id)
    assert row["status"] == "succeeded" and row["key_metric_name"] == "eval_wer", row
    shot(pg, "asr-2-succeeded")

    clip = speak(tmp_path / "green.wav", "green", "en-us", 175, 50)  # a speed and pitch no training clip has
    pg.get_by_role("tab", name="Playground").click()
    pg.locator("#play-run input").click()
    pg.locator("#play-run").get_by_role("option", name=re.compile(run_id)).click()
    expect(pg.locator("#play-info")).to_contain_text("Speech recognition")
    pg.locator("#play-audio input[type=file]").set_input_files(str(clip))
    pg.locator("#play-predict").click()
    out = pg.locator("#play-output")
    expect(out).to_contain_text(re.compile(r'"[a-z]+"'), timeout=120_000)
    shot(pg, "asr-3-playground")
    heard = re.search(r'"([a-z ]+)"', out.inner_text()).group(1)
    assert heard.strip() in LEXICON, (heard, row["key_metric"])
