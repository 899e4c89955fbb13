"""Audio files: decode (WAV/FLAC/OGG/MP3 through libsndfile), mix to mono, resample (soxr), and probe.

UI-safe: numpy, soundfile and soxr only (no torch). torchaudio's wheel does not match this torch, so it is not
used. An audio value is a path, raw bytes, or a Hub-style dict ``{"bytes"|"path"|"array", "sampling_rate"}``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
SILENCE_RMS = 1e-4  # below this root-mean-square amplitude (full scale = 1.0) a clip holds no speech


class AudioError(ValueError):
    """A clip that cannot be decoded; the message says which file and why."""


@dataclass(frozen=True)
class Clip:
    """What the pre-launch check needs to know about one file."""

    duration: float  # seconds
    sampling_rate: int
    channels: int
    rms: float | None = None  # None when only the header was read


def _source(value: Any) -> tuple[Any, str]:
    """Something soundfile can open, and a name for messages."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return io.BytesIO(value["bytes"]), str(value.get("path") or "audio bytes")
        value = value.get("path") or ""
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(value), "audio bytes"
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise AudioError(f"audio file `{value}` does not exist")
    return str(path), path.name


def decode(value: Any, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and their rate, resampled to ``sampling_rate`` when given."""
    if isinstance(value, dict) and value.get("array") is not None:
        samples, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    else:
        samples, rate = _read(value)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    if sampling_rate and rate != sampling_rate:
        samples, rate = resample(samples, rate, sampling_rate), sampling_rate
    return np.ascontiguousarray(samples, dtype=np.float32), rate


def _read(value: Any) -> tuple[np.ndarray, int]:
    import soundfile as sf

    source, name = _source(value)
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"`{name}` is not a readable audio file ({_reason(e)}); use WAV, FLAC, OGG or MP3") from None
    if samples.size == 0:
        raise AudioError(f"`{name}` holds no audio samples (an empty recording)")
    return samples, int(rate)


def _reason(e: Exception) -> str:
    return str(e).split(":")[-1].strip() or type(e).__name__


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality resampling with soxr."""
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32, copy=False)


def probe(value: Any, full: bool = True) -> Clip:
    """Duration, rate and channels of a clip; with ``full``, decode it and measure its loudness (RMS) too.

    Raises :class:`AudioError` when the file is missing, not audio, or empty."""
    if full or isinstance(value, dict):
        samples, rate = decode(value)
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
        return Clip(samples.size / rate, rate, 1, rms)
    import soundfile as sf

    source, name = _source(value)
    try:
        info = sf.info(source)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"`{name}` is not a readable audio file ({_reason(e)}); use WAV, FLAC, OGG or MP3") from None
    if info.frames == 0:
        raise AudioError(f"`{name}` holds no audio samples (an empty recording)")
    return Clip(info.frames / info.samplerate, int(info.samplerate), int(info.channels))


def is_silent(clip: Clip) -> bool:
    return clip.rms is not None and clip.rms < SILENCE_RMS


def resolve(value: Any, base: Path) -> Any:
    """A relative audio path made absolute against ``base`` (the folder of the metadata file); other values kept."""
    if isinstance(value, str) and value.strip():
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else base / path)
    return value


def describe(value: Any) -> str:
    """A short name for a clip in messages."""
    if isinstance(value, dict):
        return str(value.get("path") or "audio bytes")
    return Path(str(value)).name if isinstance(value, str) else type(value).__name__


# ---- data sources: a folder or ZIP of clips with a metadata table ------------------------

METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.json", "metadata.parquet")
FILE_COLUMNS = ("file_name", "audio", "file", "filename", "path", "audio_path", "audio_file")


def is_audio_source(path: str | Path) -> bool:
    """True for a ZIP holding audio files, or a folder holding a metadata table and audio files."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".zip":
        import zipfile

        try:
            with zipfile.ZipFile(p) as zf:
                return any(Path(n).suffix.lower() in EXTENSIONS for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    if not p.is_dir() or not any((p / n).is_file() for n in METADATA_FILES):
        return False
    return next((f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS), None) is not None


def read_clip_table(folder: Path) -> Any:
    """The folder's metadata table with its file column (``file_name``...) made absolute. Missing files are kept:
    the task's check names them with the other bad clips."""
    from engine.data.tables import read_table
    from engine.errors import UserError

    meta = next((folder / n for n in METADATA_FILES if (folder / n).is_file()), None)
    if meta is None:
        raise UserError(
            f"`{folder.name}` holds audio but no metadata.csv/jsonl. Add one with a `file_name` column (paths "
            "relative to it) and a `transcription` column."
        )
    df = read_table(meta)
    col = next((c for c in FILE_COLUMNS if c in df.columns), None)
    if col is None:
        raise UserError(f"`{meta.name}` has no `file_name` column naming each clip (columns: {', '.join(df.columns)}).")
    df[col] = [resolve(str(v), folder) for v in df[col]]
    return df


def audio_splits(params: Any) -> tuple[Any, Any] | None:
    """Train and validation tables for a folder/ZIP of clips + metadata; None when ``data_path`` is not one."""
    if not params.data_path or not is_audio_source(params.data_path):
        return None
    from engine.data.archives import as_folder

    train = read_clip_table(as_folder(params.data_path))
    valid = read_clip_table(as_folder(params.valid_path)) if params.valid_path else None
    return train, valid
