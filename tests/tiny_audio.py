"""Real speech without the network: a spoken-word corpus synthesised with espeak-ng, and tiny speech models
(Whisper seq2seq, Wav2Vec2 CTC) built in-process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WORDS = "red green blue yellow black white one two three four five six seven eight nine zero yes no up down".split()
VOICES = ("en", "en-us", "en-gb-scotland")
SPEEDS = (150, 200)  # every word lasts under a second at these speeds
PITCHES = (35, 65)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(path: Path, text: str, voice: str = "en", speed: int = 150, pitch: int = 50) -> Path:
    """One clip of ``text`` spoken by espeak-ng (22.05 kHz mono WAV)."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def spoken_words(folder: Path, words: list[str] = WORDS, formats: tuple[str, ...] = ("wav",)) -> list[dict]:
    """Every word in every voice, speed and pitch, as rows {file_name, transcription} (files in ``folder``).
    Clips are written in turn in each of ``formats`` (wav, flac, ogg) to exercise the decoders."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for voice in VOICES:
        for speed in SPEEDS:
            for pitch in PITCHES:
                for word in words:
                    wav = speak(folder / f"{word}-{voice}-{speed}-{pitch}.wav", word, voice, speed, pitch)
                    fmt = formats[len(rows) % len(formats)]
                    if fmt != "wav":
                        samples, rate = sf.read(str(wav))
                        sf.write(str(wav.with_suffix(f".{fmt}")), samples, rate)
                        wav.unlink()
                        wav = wav.with_suffix(f".{fmt}")
                    rows.append({"file_name": wav.name, "transcription": word})
    return rows


def whisper_tokenizer(out_dir: Path, texts: list[str]):
    """A Whisper tokenizer with a byte-level BPE vocabulary trained on ``texts`` and Whisper's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(
        [f" {t}" for t in texts] + texts, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet)
    )
    tok.model.save(str(out_dir))
    end = "<|endoftext|>"
    wt = WhisperTokenizer(
        str(out_dir / "vocab.json"),
        str(out_dir / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
    )
    specials = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>", "<|notimestamps|>"]
    wt.add_special_tokens({"additional_special_tokens": specials})
    return wt


def build_tiny_whisper(out_dir: Path, texts: list[str] = WORDS, seconds: int = 1) -> Path:
    """A 2-layer Whisper (d_model 64) whose window is ``seconds`` long, with its processor."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = whisper_tokenizer(out_dir, texts)
    fe = WhisperFeatureExtractor(feature_size=80, chunk_length=seconds)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(out_dir))
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=fe.nb_max_frames // 2,
        max_target_positions=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.convert_tokens_to_ids("<|startoftranscript|>"),
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    WhisperForConditionalGeneration(config).save_pretrained(str(out_dir))
    return out_dir


def build_tiny_wav2vec2(out_dir: Path) -> Path:
    """A tiny Wav2Vec2 CTC model saved WITHOUT a vocabulary or feature extractor (the task builds them)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=8,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(32, 32, 32, 32),
        conv_stride=(5, 4, 4, 4),
        conv_kernel=(10, 8, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        mask_time_prob=0.0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    Wav2Vec2ForCTC(config).save_pretrained(str(out_dir))
    return out_dir
