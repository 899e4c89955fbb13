"""Tiny models and learnable synthetic data built in-process (no Hub access needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from engine.llm.data import CHATML

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
COLORS = ["red", "green", "blue", "yellow", "black", "white"]


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Short, learnable chats: the assistant repeats a colour and names a fixed fact."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"what is {a} plus {b}?"},
                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
                ]
            }
        )
    return rows


def text_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"text": f"{rng.choice(NAMES)} likes the colour {c} and the colour {c} likes {rng.choice(NAMES)}."}
        for c in (rng.choice(COLORS) for _ in range(n))
    ]


def corpus() -> list[str]:
    texts = [r["text"] for r in text_rows(300)]
    texts += [m["content"] for r in chat_rows(300) for m in r["messages"]]
    texts += ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n"] * 20
    return texts


def build_tokenizer(out_dir: Path, vocab_size: int = 400, chat_template: str | None = CHATML):
    """A byte-level BPE tokenizer trained on the synthetic corpus, saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_llama(
    out_dir: Path, hidden: int = 64, layers: int = 2, chat_template: str | None = CHATML, vocab_size: int = 400
) -> Path:
    """A 2-layer Llama with a freshly trained tokenizer, saved to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, vocab_size=vocab_size, chat_template=chat_template)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**causal_lm_config(tok, hidden, layers), tie_word_embeddings=True)).save_pretrained(
        str(out_dir)
    )
    return out_dir


def causal_lm_config(tok, hidden: int, layers: int) -> dict:
    """Config fields shared by the tiny decoder-only models (Llama, Qwen2, ...)."""
    return dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def wordpiece_vocab(texts: list[str], vocab_size: int) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: specials, characters (plain and ``##``), then the most frequent
    words (ties broken alphabetically). `tokenizers`' trainer breaks ties differently in every process, which
    made tiny-model tests flaky."""
    import re
    from collections import Counter

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    chars = sorted({c for w in words for c in w})
    tokens = specials + chars + [f"##{c}" for c in chars]
    ranked = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    tokens += ranked[: max(0, vocab_size - len(tokens))]
    return {t: i for i, t in enumerate(tokens)}


def build_wordpiece_tokenizer(out_dir: Path, texts: list[str], vocab_size: int = 600):
    """A BERT-style WordPiece tokenizer for ``texts`` (deterministic vocabulary), saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(wordpiece_vocab(texts, vocab_size), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_bert(
    out_dir: Path, texts: list[str] | None = None, hidden: int = 32, layers: int = 2, init_std: float = 0.02
) -> Path:
    """A 2-layer BERT encoder (plain ``BertModel`` weights; task heads are added at load time).

    ``init_std``: the weights' init (BERT's 0.02). A from-scratch 32-wide BERT with 0.02 sits for several epochs
    on plateaus (uniform output, then two classes merged) before it separates all classes; with 0.1 it learns
    the text tests' sets in a few epochs on every seed tried (8/8 seeds vs ~1 in 8 stuck at the default).
    """
    import torch
    from transformers import BertConfig, BertModel

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_wordpiece_tokenizer(out_dir, texts or corpus())
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        initializer_range=init_std,
    )
    BertModel(cfg).save_pretrained(str(out_dir))
    return out_dir


def tiny_bert_for(tmp_path_factory, texts: list[str], init_std: float = 0.02) -> Path:
    """A tiny BERT whose vocabulary fits ``texts``, in a fresh temporary folder (for module-scoped fixtures)."""
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", texts, init_std=init_std)


def refused(supervisor, task, params) -> str:
    """Submit, expect a refusal before queueing (a UserError, no run row), and return its message."""
    import pytest

    from engine.errors import UserError

    with pytest.raises(UserError) as err:
        supervisor.submit(task, params)
    assert supervisor.store.list_runs() == [], "nothing is queued"
    return str(err.value)


def metric_values(store, run_id: str, name: str) -> list[float]:
    """Every logged value of one metric of a run, in order."""
    return [m["value"] for m in store.metrics(run_id, [name])]


def build_tiny_t5(out_dir: Path, texts: list[str] | None = None, d_model: int = 32, layers: int = 2) -> Path:
    """A 2-layer T5 encoder-decoder with a BPE tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    out_dir.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts or corpus(),
        trainers.BpeTrainer(
            vocab_size=500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )
    fast.save_pretrained(str(out_dir))
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(fast),
        d_model=d_model,
        d_kv=8,
        d_ff=d_model * 2,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=4,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        decoder_start_token_id=fast.pad_token_id,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(str(out_dir))
    return out_dir
