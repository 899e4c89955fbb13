"""Speech recognition on a test set: the clips checked before the model is loaded, transcribed in batches, scored
with WER and CER (jiwer, as in training); the clips with the worst WER first. Worker side: torch/transformers are
imported inside the functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.audio import checks as au
from engine.errors import UserError


def test_clips(df: Any, options: dict[str, Any]) -> Any:
    """The test table with its audio paths made absolute (against the test file's folder); a UserError naming each
    clip that is missing, undecodable or silent, and each empty transcription."""
    bases = [Path(b) for b in options.get("bases") or []]
    df = au.with_paths(df, bases[0] if bases else Path.cwd())
    problems = au.clip_problems(df, "Test", longest=math.inf)  # longer clips are cut by the model, not refused
    if problems:
        raise UserError(problems)
    return df


def load_speech_model(model_dir: Path) -> tuple[Any, Any, str]:
    """The model (eval mode), its processor, and its kind (``seq2seq`` or ``ctc``: the run's side file, else the
    model's config, for a base model)."""
    from types import SimpleNamespace

    from transformers import AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

    from engine.audio.train import kind_of

    kind = runfiles.read_side_file(model_dir).get("kind")
    if not kind:
        try:
            kind = kind_of(SimpleNamespace(base_model=str(model_dir), trust_remote_code=False))
        except ValueError as e:
            raise UserError(f"{e} Evaluate a speech-recognition model.") from None
    try:
        processor = AutoProcessor.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError) as e:
        raise UserError(
            f"`{Path(model_dir).name}` has no usable processor (tokenizer + feature extractor): {e}. A base CTC "
            "checkpoint without a vocabulary can only be evaluated after training (the run builds one)."
        ) from None
    model_cls = AutoModelForSpeechSeq2Seq if kind == "seq2seq" else AutoModelForCTC
    return model_cls.from_pretrained(str(model_dir)).eval(), processor, kind


def speech_report(refs: list[str], preds: list[str], inputs: list[str]) -> dict[str, Any]:
    """WER and CER over the test set (lower-cased, punctuation removed); per clip WER and CER, worst WER first."""
    from engine.audio.train import wer_cer

    metrics = wer_cer(preds, refs)
    rows = []
    for i, (name, ref, pred) in enumerate(zip(inputs, refs, preds, strict=True)):
        scores = _clip_scores(ref, pred)
        rows.append({"row": i + 1, "input": name, "reference": ref, "prediction": pred} | scores)
    rows.sort(key=lambda r: (-r["wer"], -r["cer"], r["row"]))
    metrics["exact_match"] = sum(r["wer"] == 0 for r in rows) / max(1, len(rows))
    return {"metrics": metrics, "rows": rows, "key_metric": "wer", "greater_is_better": False}


def _clip_scores(ref: str, pred: str) -> dict[str, float]:
    """One clip's WER and CER; a reference that normalises to nothing (punctuation only) scores 1 for any words."""
    from engine.audio.train import wer_cer

    try:
        return wer_cer([pred], [ref])
    except ValueError:
        return {"wer": float(bool(pred.strip())), "cer": float(bool(pred.strip()))}


def evaluate_speech(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The ASR task's ``evaluate``: transcribe every test clip and score the transcripts against the references."""
    from engine.audio.train import transcribe
    from engine.train import evaluation
    from engine.train.evaluation import shown_path

    named = [shown_path(v, options.get("bases") or []) for v in df["audio"]]
    df = test_clips(df, options)
    model, processor, kind = load_speech_model(model_dir)
    limit = options.get("max_new_tokens") or runfiles.read_side_file(model_dir).get("max_label_length", 128)
    preds = evaluation.batched(
        list(df["audio"]),
        lambda batch: transcribe(model, processor, kind, batch, int(limit)),
        options.get("batch_size") or 8,
        options.get("progress"),
    )
    return speech_report([str(t) for t in df["transcription"]], preds, named)
