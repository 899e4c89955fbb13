"""Speech recognition: Whisper-style seq2seq models (AutoModelForSpeechSeq2Seq) and CTC models (AutoModelForCTC:
Wav2Vec2, HuBERT, W2V-BERT), scored with WER and CER (jiwer).

Data: a table (CSV/JSONL, e.g. a folder's ``metadata.csv``) with an audio path column (relative to the table's
folder) and a transcription column, or a Hub audio dataset. Every clip is checked before launch (missing,
undecodable, too long, silent, with the file named); clips are decoded, resampled and featurised as batches
are drawn. A CTC checkpoint without a vocabulary gets one built from the transcripts.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from engine import runfiles
from engine.audio import checks as au
from engine.params import TrainerParams, field
from engine.task import Column, Job, Task


class Params(TrainerParams):
    """Speech-recognition options on top of the shared training options."""

    learning_rate: float = field(
        1e-5, "Peak learning rate (1e-5 suits fine-tuning Whisper; ~1e-4 for Wav2Vec2-style CTC models).", gt=0, le=1
    )
    batch_size: int = field(8, "Clips per device per step.", ge=1, le=4096)
    language: str = field(
        "", "Whisper only: the spoken language (e.g. `english`, `german`). Empty: the model detects it.", advanced=True
    )
    whisper_task: Literal["transcribe", "translate"] = field(
        "transcribe", "Whisper only: transcribe, or translate into English.", advanced=True
    )
    max_duration_s: float = field(
        30.0, "Longest clip in seconds; longer clips are refused before launch (Whisper takes at most 30).", gt=0
    )
    max_label_length: int = field(
        128,
        "Longest transcription in tokens (also the generation limit when evaluating).",
        ge=4,
        le=4096,
        advanced=True,
    )
    freeze_feature_encoder: bool = field(
        True, "CTC only: keep the convolutional feature encoder frozen (the usual fine-tuning recipe).", advanced=True
    )


COLUMNS = [
    Column(
        "audio",
        "the audio file (WAV/FLAC/OGG/MP3 path relative to the table's folder) or a Hub audio column",
        kind="any",
        aliases=("file_name", "audio_path", "path", "file", "audio_file", "filename"),
    ),
    Column(
        "transcription",
        "what is said in the clip",
        aliases=("text", "sentence", "transcript", "normalized_text", "label"),
    ),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """The model is a speech model; every clip exists, decodes, is not silent and fits the model's window."""
    problems = au.model_problems(params)
    _, longest = au.limits(params)
    train_base, valid_base = au.base_folders(params)
    problems += au.clip_problems(au.with_paths(train, train_base), "Training", longest)
    if valid is not None:
        problems += au.clip_problems(au.with_paths(valid, valid_base), "Validation", longest)
    return problems


def data_summary(task: Task, params: Params) -> str:
    """Duration statistics of the training (and validation) clips, as Markdown."""
    from engine.data import splits
    from engine.data import tables as data

    if not params.data_path or not data.is_local(params.data_path):
        return "- Hub dataset: clip durations are checked when the run loads it."
    train, valid = splits.load_raw(params)
    mapping, problems = splits.resolve_mapping(task, list(train.columns), params.column_mapping)
    if problems:
        return ""
    rate, longest = au.limits(params)
    lines = []
    for split, df, base in zip(("Training", "Validation"), (train, valid), au.base_folders(params), strict=True):
        if df is None:
            continue
        clips, _ = au.probe_clips(au.with_paths(splits.apply_mapping(df, mapping), base))
        if clips:
            lines.append(
                au.format_durations(au.duration_stats([c.duration for c in clips.values()]), split, rate, longest)
            )
    kind = au.speech_kind(params.base_model)
    lines.append(
        f"- Model kind: {({'seq2seq': 'Whisper-style seq2seq', 'ctc': 'CTC'}).get(kind or '', 'unknown here')}."
    )
    return "\n".join(lines)


# ---- training -----------------------------------------------------------------------------


def save(model_dir: Path, trainer: Any, processor: Any, params: Params, kind: str) -> None:
    trainer.save_model(str(model_dir))
    processor.save_pretrained(str(model_dir))
    settings = {"task": "asr", "kind": kind, "max_label_length": params.max_label_length}
    runfiles.write_side_file(model_dir, {**settings, "language": params.language, "whisper_task": params.whisper_task})


def train(job: Job) -> dict[str, float]:
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer

    from engine.audio import train as asr
    from engine.data import tables as data
    from engine.errors import UserError
    from engine.train import trainer as tu

    params = job.params
    if not data.is_local(params.data_path) and (problems := check_data(job.train, job.valid, params)):
        raise UserError(problems)  # Hub datasets are not checked before queueing
    kind = asr.kind_of(params)
    train_base, valid_base = au.base_folders(params)
    train_df = au.with_paths(job.train, train_base)
    valid_df = (
        au.with_paths(job.valid, valid_base if params.valid_path else train_base) if job.valid is not None else None
    )
    processor = asr.load_processor(params, kind, [str(t) for t in train_df["transcription"]])
    model = asr.load_model(params, kind, processor)
    train_ds = asr.Clips(train_df, processor, params.max_label_length)
    valid_ds = asr.Clips(valid_df, processor, params.max_label_length) if valid_df is not None else []
    print(f"[trainpad] {kind} model; {len(train_ds)} training clips, {len(valid_ds)} validation clips", flush=True)
    seq2seq = kind == "seq2seq"
    args = tu.training_arguments(
        job,
        len(train_ds),
        len(valid_ds),
        Seq2SeqTrainingArguments,
        predict_with_generate=seq2seq,
        generation_max_length=asr.generation_limit(model, params.max_label_length) if seq2seq else None,
        remove_unused_columns=False,
    )
    start = getattr(model.config, "decoder_start_token_id", None) if seq2seq else None
    trainer = (Seq2SeqTrainer if seq2seq else Trainer)(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds or None,
        data_collator=asr.collator(processor, start),
        compute_metrics=asr.metrics_fn(processor, kind),
        preprocess_logits_for_metrics=None if seq2seq else asr.argmax_logits,
        callbacks=tu.callbacks(params, job.run_dir, bool(valid_ds)),
    )
    saver = functools.partial(save, trainer=trainer, processor=processor, params=params, kind=kind)
    return tu.train_and_save(trainer, params, job.run_dir, bool(valid_ds), save=saver)


# ---- inference ----------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> Any:
    """Transcribe an audio path (str), several (list), or {"audio": path | {array, sampling_rate}}."""
    from transformers import AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

    from engine.audio import train as asr

    settings = runfiles.read_side_file(model_dir)
    kind = settings.get("kind", "seq2seq")
    clips = inputs.get("audio", inputs) if isinstance(inputs, dict) and "audio" in inputs else inputs
    single = not isinstance(clips, list)
    processor = AutoProcessor.from_pretrained(str(model_dir))
    model_cls = AutoModelForSpeechSeq2Seq if kind == "seq2seq" else AutoModelForCTC
    model = model_cls.from_pretrained(str(model_dir)).eval()
    texts = asr.transcribe(model, processor, kind, [clips] if single else clips, settings.get("max_label_length", 128))
    return texts[0] if single else texts


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """WER and CER of the model's transcripts of the test clips; the clips with the worst WER first."""
    from engine.audio.evaluation import evaluate_speech

    return evaluate_speech(model_dir, df, options)


TASK = Task(
    name="asr",
    model_kind="speech",
    hub_pipeline="automatic-speech-recognition",
    title="Speech recognition",
    family="Audio",
    description="Transcribe speech: fine-tune Whisper or a Wav2Vec2-style CTC model on audio clips and their "
    "transcriptions. Scored with WER and CER.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_wer",
    suggested_models=["openai/whisper-tiny", "openai/whisper-base", "facebook/wav2vec2-base-960h"],  # small first (CPU)
    greater_is_better=False,
    model_note="A speech model: Whisper-style (AutoModelForSpeechSeq2Seq, e.g. openai/whisper-tiny) or CTC "
    "(AutoModelForCTC, e.g. facebook/wav2vec2-base, a HuBERT or W2V-BERT checkpoint).",
    check_data=check_data,
    data_summary=data_summary,
    predict_input="audio",
    autotrain_names=["automatic-speech-recognition", "asr", "speech-recognition"],
)
