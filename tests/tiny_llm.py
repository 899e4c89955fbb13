"""Helpers for the LLM-family tests: a tiny Qwen2 (a second architecture beside tiny Llama) and
easy synthetic preference / raw-text data."""

from __future__ import annotations

import random
from pathlib import Path

from engine.llm.data import CHATML
from tests.tiny import build_tokenizer, causal_lm_config


def build_tiny_qwen2(out_dir: Path, hidden: int = 64, layers: int = 2) -> Path:
    """A 2-layer Qwen2 (biased q/k/v projections, untied head) with the shared test tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, chat_template=CHATML)
    torch.manual_seed(0)
    cfg = Qwen2Config(**causal_lm_config(tok, hidden, layers), tie_word_embeddings=False)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out_dir))
    return out_dir


def preference_rows(n: int, form: str = "chat", seed: int = 0) -> list[dict]:
    """Easy pairs: the chosen answer states the sum, the rejected one is a fixed refusal.

    form: ``chat`` (prompt implied by the shared user turn), ``text`` (explicit prompt, plain strings),
    or ``explicit_chat`` (prompt column as text, chosen/rejected as one-message chats).
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        q, good, bad = f"what is {a} plus {b}?", f"{a} plus {b} is {a + b}.", "no no no no no."
        if form == "text":
            rows.append({"prompt": q, "chosen": good, "rejected": bad})
        elif form == "explicit_chat":
            rows.append(
                {
                    "prompt": q,
                    "chosen": [{"role": "assistant", "content": good}],
                    "rejected": [{"role": "assistant", "content": bad}],
                }
            )
        else:
            user = {"role": "user", "content": q}
            rows.append(
                {
                    "chosen": [user, {"role": "assistant", "content": good}],
                    "rejected": [user, {"role": "assistant", "content": bad}],
                }
            )
    return rows
