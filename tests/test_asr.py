"""Speech recognition end to end on real speech synthesised with espeak-ng: a tiny Whisper's WER drops while it
trains, a tiny Wav2Vec2 gets a vocabulary built from the transcripts; bad clips refused before queueing, named."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import audio
from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from tests.tiny import metric_values, refused, write_csv
from tests.tiny_audio import WORDS, build_tiny_wav2vec2, build_tiny_whisper, have_espeak, speak, spoken_words

ASR = get_task("asr")
LEXICON = WORDS[:12]
needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """12 words x 3 voices x 2 speeds x 2 pitches, as WAV, FLAC and OGG, with metadata.csv."""
    folder = tmp_path_factory.mktemp("speech") / "clips"
    write_csv(folder / "metadata.csv", spoken_words(folder, LEXICON, formats=("wav", "flac", "ogg")))
    return folder


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper", LEXICON, seconds=1)


def asr_params(model: Path, data: Path, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(data),
        "epochs": 12,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "max_label_length": 8,
        "valid_fraction": 0.15,
    }
    return validate_params(ASR.params, {**base, **kw})


def tone(path: Path, seconds: float, amplitude: float = 0.3, rate: int = 16000) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


@pytest.mark.slow
@needs_espeak
def test_whisper_learns_spoken_words(supervisor, corpus, tiny_whisper, tmp_path):
    shutil.make_archive(str(tmp_path / "speech"), "zip", corpus)  # the ZIP upload form
    run_id = supervisor.submit(ASR, asr_params(tiny_whisper, tmp_path / "speech.zip"))
    row = supervisor.wait(run_id, timeout=400)
    assert row["status"] == "succeeded", row["error"]

    wer = metric_values(supervisor.store, run_id, "eval_wer")
    assert len(wer) >= 12, "one WER per epoch plus the final evaluation"
    assert wer[0] >= 0.8 and wer[-1] <= 0.35 and wer[-1] <= wer[0] - 0.5, wer
    assert row["key_metric_name"] == "eval_wer" and row["key_metric"] == pytest.approx(wer[-1], abs=1e-6)
    run_dir = Path(row["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["eval_cer"] <= metrics["eval_wer"] + 0.5

    held_out = tmp_path / "held-out"  # a speed and pitch no training clip has
    held_out.mkdir()
    clips = [str(speak(held_out / f"{w}.wav", w, "en-us", 175, 50)) for w in LEXICON]
    heard = predict_dir(run_dir, clips)
    assert sum(h == w for h, w in zip(heard, LEXICON, strict=True)) >= 8, list(zip(heard, LEXICON, strict=True))
    assert isinstance(predict_dir(run_dir, {"audio": clips[0]}), str)
    samples, rate = audio.decode(clips[1])
    assert isinstance(predict_dir(run_dir, {"audio": {"array": samples.tolist(), "sampling_rate": rate}}), str)


@pytest.mark.slow
@needs_espeak
def test_ctc_vocabulary_from_transcripts(supervisor, corpus, tmp_path):
    model = build_tiny_wav2vec2(tmp_path / "tiny-w2v")
    params = asr_params(model, corpus, epochs=12, learning_rate=3e-3, max_duration_s=5)
    row = supervisor.wait(supervisor.submit(ASR, params), timeout=400)
    assert row["status"] == "succeeded", row["error"]
    loss, cer = (metric_values(supervisor.store, row["id"], m) for m in ("eval_loss", "eval_cer"))
    assert loss[-1] < 0.8 * loss[0] and cer[-1] < cer[0], (loss, cer)  # CTC from scratch: characters come first
    model_dir = Path(row["run_dir"]) / "model"
    vocab = json.loads((model_dir / "vocab.json").read_text())
    assert set("".join(LEXICON)) <= set(vocab) and "|" in vocab, vocab
    assert isinstance(predict_dir(Path(row["run_dir"]), str(corpus / "red-en-150-35.wav")), str)


def audio_dataset(corpus: Path, n: int):
    """A ``datasets`` dataset with an Audio feature holding the clips' bytes and bare file names, as a Hub audio
    dataset stores them (its Parquet files and ``load_dataset``'s cache)."""
    from datasets import Audio, Dataset

    rows = pd.read_csv(corpus / "metadata.csv").head(n).to_dict(orient="records")
    clips = [{"bytes": (corpus / r["file_name"]).read_bytes(), "path": r["file_name"]} for r in rows]
    ds = Dataset.from_dict({"audio": clips, "sentence": [r["transcription"] for r in rows]})
    return ds.cast_column("audio", Audio())


@pytest.mark.slow
@needs_espeak
def test_datasets_audio_feature_saved_or_from_the_hub(supervisor, corpus, tiny_whisper, tmp_path):
    from engine.data.splits import _load_hub

    ds = audio_dataset(corpus, 48)
    ds.save_to_disk(str(tmp_path / "saved"))
    params = asr_params(tiny_whisper, tmp_path / "saved", epochs=2, valid_fraction=0.25)
    row = supervisor.wait(supervisor.submit(ASR, params), timeout=300)
    assert row["status"] == "succeeded", row["error"]
    assert len(metric_values(supervisor.store, row["id"], "eval_wer")) >= 2
    assert "Training audio (48 clips" in ASR.data_summary(ASR, params).replace("**", "")

    ds.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))  # the Hub's layout
    train, _ = _load_hub(asr_params(tiny_whisper, tmp_path / "hub"), None)  # load_dataset, as for a Hub id
    assert train["audio"][0]["path"].endswith(".wav") and len(train) == 48
    train = train.rename(columns={"sentence": "transcription"})
    assert ASR.check_data(train, None, params) == []
    clips = list(train["audio"])
    clips[1] = {"bytes": b"RIFF not really a wave file", "path": "broken.wav"}
    train["audio"] = clips
    assert "broken.wav" in " ".join(ASR.check_data(train, None, params))


def test_bad_clips_refused_before_queueing(supervisor, tiny_whisper, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    tone(folder / "good.wav", 0.5)
    tone(folder / "long.flac", 1.6)  # the tiny Whisper's window is 1 s
    tone(folder / "quiet.wav", 0.5, amplitude=0.0)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    rows = [
        {"file_name": "good.wav", "transcription": "red"},
        {"file_name": "long.flac", "transcription": "green"},
        {"file_name": "quiet.wav", "transcription": "blue"},
        {"file_name": "broken.wav", "transcription": "black"},
        {"file_name": "gone.mp3", "transcription": "white"},
    ]
    write_csv(folder / "metadata.csv", rows)
    message = refused(supervisor, ASR, asr_params(tiny_whisper, folder))
    assert "gone.mp3" in message and "does not exist" in message, message
    assert "broken.wav" in message and "not a readable audio file" in message, message
    assert "long.flac" in message and "longer than the 1 s" in message, message
    assert "quiet.wav" in message and "silent" in message, message
    assert "good.wav" not in message


def test_not_a_speech_model_refused(supervisor, tiny_llama, tmp_path):
    tone(tmp_path / "a.wav", 0.5)
    data = write_csv(tmp_path / "d.csv", [{"audio": "a.wav", "text": "red"}] * 4)
    message = refused(supervisor, ASR, asr_params(tiny_llama, data))
    assert "not a speech-recognition model" in message


def test_durations_in_the_data_summary(tiny_whisper, tmp_path):
    for i, seconds in enumerate((0.25, 0.5, 0.75)):
        tone(tmp_path / f"c{i}.wav", seconds, rate=22050)
    data = write_csv(tmp_path / "train.csv", [{"path": f"c{i}.wav", "sentence": "red"} for i in range(3)])
    summary = ASR.data_summary(ASR, asr_params(tiny_whisper, data))
    assert "3 clips" in summary and "min 0.25 s" in summary and "max 0.75 s" in summary, summary
    assert "16000 Hz" in summary and "Whisper" in summary


def test_decode_formats_and_resample(tmp_path):
    import soundfile as sf

    t = np.arange(22050) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.5
    for ext in ("wav", "flac", "ogg", "mp3"):
        sf.write(str(tmp_path / f"x.{ext}"), stereo, 22050)
        samples, rate = audio.decode(str(tmp_path / f"x.{ext}"), 16000)
        assert rate == 16000 and samples.ndim == 1 and abs(len(samples) - 16000) < 1200, (ext, samples.shape)
        assert 0.3 < np.abs(samples).max() < 0.6, ext
    as_bytes = audio.decode({"bytes": (tmp_path / "x.wav").read_bytes(), "path": "x.wav"})
    assert as_bytes[1] == 22050
    with pytest.raises(audio.AudioError, match="does not exist"):
        audio.decode(str(tmp_path / "none.wav"))


def test_zip_of_clips_read_as_table(tmp_path):
    from engine.data.splits import load_raw

    folder = tmp_path / "set"
    folder.mkdir()
    tone(folder / "a.wav", 0.3)
    write_csv(folder / "metadata.csv", [{"file_name": "a.wav", "transcription": "red"}])
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as zf:
        zf.write(folder / "a.wav", "set/a.wav")
        zf.write(folder / "metadata.csv", "set/metadata.csv")
    train, valid = load_raw(validate_params(ASR.params, {"data_path": str(tmp_path / "set.zip")}))
    assert valid is None and Path(train["file_name"][0]).is_absolute() and Path(train["file_name"][0]).is_file()


def test_whisper_language_and_task_tokens_from_the_form(tiny_whisper):
    from engine.audio.train import load_processor

    params = asr_params(tiny_whisper, tiny_whisper, language="english", whisper_task="transcribe")
    tok = load_processor(params, "seq2seq", ["red"]).tokenizer
    tokens = tok.convert_ids_to_tokens(tok("red").input_ids)
    assert tokens[:4] == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"], tokens
