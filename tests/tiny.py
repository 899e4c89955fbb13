"""Tiny models and learnable synthetic data built in-process (no Hub access needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from engine.llm_utils import CHATML

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
COLORS = ["red", "green", "blue", "yellow", "black", "white"]


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Short, learnable chats: the assistant repeats a colour and names a fixed fact."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"messages": [
            {"role": "user", "content": f"what is {a} plus {b}?"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
        ]})
    return rows


def text_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": f"{rng.choice(NAMES)} likes the colour {c} and the colour {c} likes {rng.choice(NAMES)}."}
            for c in (rng.choice(COLORS) for _ in range(n))]


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
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>",
                                   pad_token="<pad>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_llama(out_dir: Path, hidden: int = 64, layers: int = 2, chat_template: str | None = CHATML) -> Path:
    """A 2-layer Llama with a freshly trained tokenizer, saved to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, chat_template=chat_template)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(str(out_dir))
    return out_dir


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
