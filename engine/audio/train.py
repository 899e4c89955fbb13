"""Speech recognition, the worker side: processor and model loading (a CTC vocabulary built from the transcripts
when the checkpoint has none), clips decoded and turned into features as batches are drawn, collators,
WER/CER through jiwer, and transcription of new audio."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import audio

PAD, UNK, DELIMITER = "<pad>", "<unk>", "|"


# ---- processor and model ------------------------------------------------------------------


def ctc_tokenizer(texts: list[str]) -> Any:
    """A character-level CTC tokenizer whose vocabulary is every character of ``texts`` (space → ``|``)."""
    from transformers import Wav2Vec2CTCTokenizer

    chars = sorted({c for t in texts for c in str(t)} - {" "})
    vocab = {PAD: 0, UNK: 1, DELIMITER: 2, **{c: i + 3 for i, c in enumerate(chars)}}
    folder = Path(tempfile.mkdtemp(prefix="trainpad-vocab-"))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return Wav2Vec2CTCTokenizer(
        str(folder / "vocab.json"), unk_token=UNK, pad_token=PAD, word_delimiter_token=DELIMITER
    )


def load_processor(params: Any, kind: str, texts: list[str]) -> Any:
    """The checkpoint's processor; for a CTC checkpoint without a vocabulary (or feature extractor), one built here."""
    from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer, Wav2Vec2Processor

    opts = {"trust_remote_code": params.trust_remote_code}
    if kind == "seq2seq":
        processor = AutoProcessor.from_pretrained(params.base_model, **opts)
        if params.language:
            processor.tokenizer.set_prefix_tokens(language=params.language, task=params.whisper_task)
        return processor
    try:
        tok = AutoTokenizer.from_pretrained(params.base_model, **opts)
    except (OSError, ValueError, TypeError, KeyError):
        tok = None
    if tok is None or not hasattr(tok, "word_delimiter_token"):
        tok = ctc_tokenizer(texts)
        print(f"[trainpad] the checkpoint has no CTC vocabulary: built one of {len(tok)} characters", flush=True)
    try:
        fe = AutoFeatureExtractor.from_pretrained(params.base_model, **opts)
    except (OSError, ValueError):
        from transformers import Wav2Vec2FeatureExtractor

        fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    return Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok)


def kind_of(params: Any) -> str:
    """``seq2seq`` or ``ctc`` from the checkpoint's config (works for Hub models not yet in the cache)."""
    from transformers import AutoConfig

    from engine.audio.checks import CTC_TYPES

    config = AutoConfig.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code)
    if config.is_encoder_decoder:
        return "seq2seq"
    if any("ForCTC" in a for a in config.architectures or []) or config.model_type.startswith(CTC_TYPES):
        return "ctc"
    raise ValueError(f"`{params.base_model}` ({config.model_type}) is neither a Whisper-style nor a CTC speech model.")


def load_model(params: Any, kind: str, processor: Any) -> Any:
    from transformers import AutoModelForCTC, AutoModelForSpeechSeq2Seq

    opts = {"trust_remote_code": params.trust_remote_code}
    if kind == "seq2seq":
        model = AutoModelForSpeechSeq2Seq.from_pretrained(params.base_model, **opts)
        if params.language and hasattr(model.generation_config, "lang_to_id"):
            model.generation_config.language, model.generation_config.task = params.language, params.whisper_task
        return model
    tok = processor.tokenizer
    model = AutoModelForCTC.from_pretrained(
        params.base_model,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        ctc_loss_reduction="mean",
        ignore_mismatched_sizes=True,
        **opts,
    )
    if params.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


# ---- data ---------------------------------------------------------------------------------


CACHE_BYTES = 1 << 29  # model inputs kept after their first use (no augmentation: they do not change per epoch)


class Clips:
    """Map-style dataset: each item is decoded, resampled and turned into model inputs when it is first drawn,
    and kept (up to ``CACHE_BYTES``) for the later epochs."""

    def __init__(self, df: Any, processor: Any, max_label_length: int):
        self.audio = list(df["audio"])
        self.texts = [str(t) for t in df["transcription"]]
        self.fe, self.tok = processor.feature_extractor, processor.tokenizer
        self.rate = int(self.fe.sampling_rate)
        self.max_label_length = max_label_length
        self.cache: dict[int, dict[str, Any]] = {}
        self.cached_bytes = 0

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i in self.cache:
            return self.cache[i]
        samples, _ = audio.decode(self.audio[i], self.rate)
        name = self.fe.model_input_names[0]
        inputs = np.asarray(self.fe(samples, sampling_rate=self.rate)[name][0])
        item = {name: inputs, "labels": self.tok(self.texts[i]).input_ids[: self.max_label_length]}
        if self.cached_bytes + inputs.nbytes <= CACHE_BYTES:
            self.cache[i], self.cached_bytes = item, self.cached_bytes + inputs.nbytes
        return item


def collator(processor: Any, decoder_start: int | None) -> Any:
    """Pads inputs with the feature extractor and labels with -100; drops a leading decoder start token
    (Whisper's model adds it when shifting the labels right)."""
    fe = processor.feature_extractor

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        name = fe.model_input_names[0]
        batch = fe.pad([{name: x[name]} for x in items], return_tensors="pt")
        longest = max(len(x["labels"]) for x in items)
        labels = torch.full((len(items), longest), -100, dtype=torch.long)
        for row, x in enumerate(items):
            labels[row, : len(x["labels"])] = torch.tensor(x["labels"])
        if decoder_start is not None and bool((labels[:, 0] == decoder_start).all()):
            labels = labels[:, 1:]
        batch["labels"] = labels
        return dict(batch)

    return collate


# ---- metrics ------------------------------------------------------------------------------


def wer_cer(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Word and character error rates (jiwer) after lower-casing and removing punctuation."""
    import jiwer

    steps = [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
    words = jiwer.Compose([*steps, jiwer.ReduceToListOfListOfWords()])
    chars = jiwer.Compose([*steps, jiwer.ReduceToListOfListOfChars()])
    pairs = [(r, p) for r, p in zip(references, predictions, strict=True) if str(r).strip()]
    refs, hyps = [r for r, _ in pairs], [p for _, p in pairs]
    return {
        "wer": jiwer.wer(refs, hyps, reference_transform=words, hypothesis_transform=words),
        "cer": jiwer.cer(refs, hyps, reference_transform=chars, hypothesis_transform=chars),
    }


def metrics_fn(processor: Any, kind: str) -> Any:
    """``compute_metrics`` for the trainer: decode predictions (generated ids or CTC argmax ids) and labels."""
    tok = processor.tokenizer

    def compute(pred: Any) -> dict[str, float]:
        ids = np.where(pred.predictions < 0, tok.pad_token_id, pred.predictions)
        labels = np.where(pred.label_ids < 0, tok.pad_token_id, pred.label_ids)
        if kind == "ctc":
            hyps = tok.batch_decode(ids)
            refs = tok.batch_decode(labels, group_tokens=False)
        else:
            hyps = tok.batch_decode(ids, skip_special_tokens=True)
            refs = tok.batch_decode(labels, skip_special_tokens=True)
        return wer_cer(hyps, refs)

    return compute


def argmax_logits(logits: Any, labels: Any) -> Any:
    """Keep only the best token per frame (not the full logits) between evaluation batches."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


# ---- inference ----------------------------------------------------------------------------


def generation_limit(model: Any, wanted: int) -> int:
    """New tokens to generate: ``wanted``, within the decoder's positions (less a few for the prompt tokens)."""
    positions = getattr(model.config, "max_target_positions", None)
    return min(wanted, positions - 4) if positions else wanted


def transcribe(model: Any, processor: Any, kind: str, clips: list[Any], max_new_tokens: int) -> list[str]:
    """Transcripts of ``clips`` (paths, bytes or {array, sampling_rate} dicts)."""
    import torch

    fe = processor.feature_extractor
    rate = int(fe.sampling_rate)
    arrays = [audio.decode(c, rate)[0] for c in clips]
    batch = fe(arrays, sampling_rate=rate, return_tensors="pt", padding=True)
    with torch.no_grad():
        if kind == "seq2seq":
            out = model.generate(batch[fe.model_input_names[0]], max_new_tokens=generation_limit(model, max_new_tokens))
            return [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]
        logits = model(**{k: v for k, v in batch.items() if k in (fe.model_input_names[0], "attention_mask")}).logits
    return [t.strip() for t in processor.tokenizer.batch_decode(logits.argmax(dim=-1))]
