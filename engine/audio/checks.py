"""Speech recognition, the UI-safe side: which kind of model, its audio limits, where the clips are, the
pre-launch clip checks and the duration report. Imports no torch/transformers (the worker side is
:mod:`engine.audio.train`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from engine.data import audio
from engine.errors import Problem
from engine.preflight.model_files import model_file

CHECK_DECODE_LIMIT = 2000  # clips fully decoded before launch (the rest: header only), sampled when more
CTC_TYPES = ("wav2vec2", "hubert", "wav2vec2-bert", "wav2vec2-conformer", "wavlm", "data2vec-audio", "unispeech", "sew")
SHOWN = 8


def speech_kind(base_model: str) -> str | None:
    """``seq2seq`` (Whisper-style encoder-decoder), ``ctc`` (Wav2Vec2, HuBERT, W2V-BERT ...), or None if unknown."""
    config = model_file(base_model, "config.json")
    if not config:
        return None
    archs = " ".join(config.get("architectures") or [])
    if config.get("is_encoder_decoder") or "ForConditionalGeneration" in archs or "SpeechSeq2Seq" in archs:
        return "seq2seq"
    if "ForCTC" in archs or str(config.get("model_type", "")).startswith(CTC_TYPES):
        return "ctc"
    return "unsupported"


def limits(params: Any) -> tuple[int, float]:
    """The model's sampling rate and the longest clip it takes (Whisper's window, else ``max_duration_s``)."""
    fe = model_file(params.base_model, "preprocessor_config.json")
    fe = fe or model_file(params.base_model, "processor_config.json").get("feature_extractor") or {}
    rate = int(fe.get("sampling_rate") or 16000)
    window = fe.get("chunk_length") if "chunk_length" in fe else None
    longest = min(params.max_duration_s, float(window)) if window else params.max_duration_s
    return rate, longest


def model_problems(params: Any) -> list[str]:
    """The model is a speech-recognition model of a kind this task trains."""
    kind = speech_kind(params.base_model)
    if kind == "unsupported":
        return [
            Problem(
                f"`{params.base_model}` is not a speech-recognition model: use a Whisper-style model "
                "(AutoModelForSpeechSeq2Seq) or a CTC model (AutoModelForCTC: Wav2Vec2, HuBERT, W2V-BERT).",
                field="base_model",
            )
        ]
    return []


def base_folders(params: Any) -> tuple[Path, Path]:
    """The folders that relative audio paths of the training and validation data are relative to."""
    from engine.data.tables import is_local, resolve_files
    from engine.errors import UserError

    if not is_local(params.data_path) or audio.is_audio_source(params.data_path):
        return Path.cwd(), Path.cwd()  # Hub cells hold the audio; folder/ZIP tables hold absolute paths
    try:
        train, valid = resolve_files(params)
    except UserError:
        return Path.cwd(), Path.cwd()
    return train.parent, (valid.parent if valid else train.parent)


def with_paths(df: Any, base: Path) -> Any:
    """The table with its ``audio`` values made absolute against ``base``."""
    df = df.copy()
    df["audio"] = [audio.resolve(v, base) for v in df["audio"]]
    return df


def probe_clips(df: Any, seed: int = 0) -> tuple[dict[int, audio.Clip], dict[int, str]]:
    """Probe every clip (decoding at most ``CHECK_DECODE_LIMIT``, the others by header): clips and errors by row."""
    rows = list(range(len(df)))
    decoded = set(rows if len(rows) <= CHECK_DECODE_LIMIT else random.Random(seed).sample(rows, CHECK_DECODE_LIMIT))
    clips, errors = {}, {}
    for i, value in enumerate(df["audio"]):
        found = cached_probe(value, full=i in decoded)
        (clips if isinstance(found, audio.Clip) else errors)[i] = found
    return clips, errors


_PROBED: dict[tuple, audio.Clip | str] = {}  # (path, size, mtime, full) -> clip or problem: Check, then Start


def cached_probe(value: Any, full: bool) -> audio.Clip | str:
    """:func:`engine.data.audio.probe`, or the problem naming the file; files are remembered by path, size and
    modification time, so checking the same data again decodes nothing."""
    key = None
    if isinstance(value, str):
        try:
            st = Path(value).stat()
            key = (value, st.st_size, st.st_mtime_ns, full)
        except OSError:
            pass
    if key in _PROBED:
        return _PROBED[key]
    try:
        found: audio.Clip | str = audio.probe(value, full=full)
    except audio.AudioError as e:
        found = str(e)
    if key is not None and len(_PROBED) < 500_000:
        _PROBED[key] = found
    return found


def _named(rows: list[int], df: Any) -> str:
    names = [f"{audio.describe(df['audio'].iloc[i])} (row {i + 1})" for i in rows[:SHOWN]]
    return ", ".join(names) + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")


def clip_problems(df: Any, split: str, longest: float) -> list[str]:
    """Missing, undecodable, too long, silent clips and empty transcriptions, each named by file and row."""
    clips, errors = probe_clips(df)
    problems = [Problem(f"{split} data, row {i + 1}: {msg}.", role="audio") for i, msg in list(errors.items())[:SHOWN]]
    if len(errors) > SHOWN:
        problems.append(Problem(f"{split} data: {len(errors) - SHOWN} more clips cannot be read.", role="audio"))
    long = [i for i, c in clips.items() if c.duration > longest]
    if long:
        problems.append(
            Problem(
                f"{split} data: {len(long)} clip(s) longer than the {longest:g} s the model takes: {_named(long, df)}. "
                "Cut them into shorter clips, remove them, or raise max_duration_s (Whisper takes at most 30 s).",
                role="audio",
            )
        )
    silent = [i for i, c in clips.items() if audio.is_silent(c)]
    if silent:
        problems.append(
            Problem(
                f"{split} data: {len(silent)} clip(s) are silent: {_named(silent, df)}. Remove them or fix the recordings.",
                role="audio",
            )
        )
    blank = [i for i, t in enumerate(df["transcription"]) if not str(t).strip() or str(t) == "nan"]
    if blank:
        problems.append(
            Problem(
                f"{split} data: empty transcription in row(s) {', '.join(str(i + 1) for i in blank[:SHOWN])}.",
                role="transcription",
            )
        )
    return problems


def duration_stats(durations: list[float]) -> dict[str, float]:
    ordered = sorted(durations)
    n = len(ordered)
    return {
        "clips": n,
        "hours": sum(ordered) / 3600,
        "min": ordered[0],
        "median": ordered[n // 2],
        "p95": ordered[min(n - 1, int(round(0.95 * (n - 1))))],
        "max": ordered[-1],
    }


def format_durations(stats: dict[str, float], split: str, rate: int, longest: float) -> str:
    return (
        f"**{split} audio** ({stats['clips']} clips, {stats['hours'] * 60:.1f} min): duration min {stats['min']:.2f} s, "
        f"median {stats['median']:.2f} s, p95 {stats['p95']:.2f} s, max {stats['max']:.2f} s "
        f"(the model takes up to {longest:g} s; clips are resampled to {rate} Hz)."
    )
