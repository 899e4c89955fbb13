"""Evaluating preference-tuned models on prompt / chosen / rejected test rows.

- A policy (DPO, ORPO): does it give the chosen answer a higher log-probability (summed over the answer's tokens,
  given the prompt) than the rejected one? Accuracy and mean margin in nats.
- A reward model: does it score the chosen answer above the rejected one? Accuracy and mean margin.

Rows worst first: the smallest (most negative) margin at the top. Heavy imports happen inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.llm import data as ld
from engine.llm import evaluate as le

DEFAULT_BATCH = 8


def pairs_of(df: Any) -> list[dict[str, Any]]:
    """The test rows as trl preference examples (one form for all rows); a UserError naming the bad rows."""
    if df is None or not len(df):
        raise UserError("The test data has no rows to evaluate.")
    prompts = df["prompt"].tolist() if "prompt" in df else [None] * len(df)
    triples = zip(prompts, df["chosen"].tolist(), df["rejected"].tolist(), strict=True)
    problems = ld.collect_problems(triples, lambda v, r: ld.preference_example(*v, r))
    if problems:
        raise UserError([f"Test data: {p}" for p in problems])
    return ld.preference_rows(df)


def answer_example(prompt: Any, answer: Any, tok: Any) -> le.Example:
    """An answer given its prompt, as the :class:`engine.llm.evaluate.Example` whose answer tokens are scored."""
    if isinstance(answer, str):
        return le.Example(prompt or "", answer, prompt or "", answer)
    prompt_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) if prompt else ""
    full = tok.apply_chat_template([*prompt, *answer], tokenize=False)
    shown = "\n".join(m["content"] for m in answer)
    return le.Example(
        list(prompt), shown, prompt_text, full[len(prompt_text) :] if full.startswith(prompt_text) else shown
    )


def evaluate_policy(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Preference accuracy of a policy: log p(chosen | prompt) > log p(rejected | prompt), and the mean margin."""
    import torch

    from engine.llm.model import load_for_inference

    pairs = pairs_of(df)
    model, tok = load_for_inference(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    batch = max(1, int(options.get("batch_size") or DEFAULT_BATCH))
    say = options.get("progress") or (lambda fraction, message: None)
    chosen = [answer_example(p["prompt"], p["chosen"], tok) for p in pairs]
    rejected = [answer_example(p["prompt"], p["rejected"], tok) for p in pairs]
    c_loss = le.answer_losses(model, tok, chosen, batch, device)
    say(0.5, f"scored {len(pairs)} chosen answers")
    r_loss = le.answer_losses(model, tok, rejected, batch, device)
    say(1.0, f"scored {len(pairs)} rejected answers")
    scores = [(-nc, cc, -nr, cr) for (nc, cc), (nr, cr) in zip(c_loss, r_loss, strict=True)]
    report = preference_report(pairs, [s[0] for s in scores], [s[2] for s in scores], "logp")
    per_token = [lc / max(1, cc) > lr / max(1, cr) for lc, cc, lr, cr in scores]
    report["metrics"]["per_token_accuracy"] = sum(per_token) / len(per_token)
    report["settings"] = {"batch_size": batch, "device": device, "score": "summed log-probability of the answer"}
    return report


def evaluate_reward(
    model_dir: Path, df: Any, options: dict[str, Any], render: Callable[[Any, Any, Any], tuple[str, bool]]
) -> dict[str, Any]:
    """Accuracy of reward(chosen) > reward(rejected) and the mean margin. ``render(prompt, answer, tok)`` gives the
    text the model scores and whether it is a rendered chat (the task's own input form)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs = pairs_of(df)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    batch = max(1, int(options.get("batch_size") or DEFAULT_BATCH))
    say = options.get("progress") or (lambda fraction, message: None)
    texts = [render(p["prompt"], p[side], tok) for side in ("chosen", "rejected") for p in pairs]
    scores: list[float] = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        enc = tok([t for t, _ in chunk], padding=True, return_tensors="pt", add_special_tokens=not chunk[0][1])
        with torch.no_grad():
            scores += model(**enc.to(device)).logits[:, 0].float().cpu().tolist()
        say(len(scores) / len(texts), f"scored {len(scores)} of {len(texts)} answers")
    report = preference_report(pairs, scores[: len(pairs)], scores[len(pairs) :], "reward")
    report["settings"] = {"batch_size": batch, "device": device, "score": "reward model output"}
    return report


def preference_report(pairs: list[dict[str, Any]], chosen: list[float], rejected: list[float], what: str) -> dict:
    """Accuracy (chosen scored above rejected), mean margin and mean scores; rows with the smallest margin first."""
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    n = max(1, len(margins))
    metrics = {
        "preference_accuracy": sum(m > 0 for m in margins) / n,
        "mean_margin": sum(margins) / n,
        f"mean_{what}_chosen": sum(chosen) / n,
        f"mean_{what}_rejected": sum(rejected) / n,
        "n_examples": len(margins),
    }
    rows = [
        {"row": i + 1, "prompt": _shown(p["prompt"]), "chosen": _shown(p["chosen"]), "rejected": _shown(p["rejected"])}
        | {f"{what}_chosen": round(c, 6), f"{what}_rejected": round(r, 6), "margin": round(m, 6)}
        | {"correct": float(m > 0)}
        for i, (p, c, r, m) in enumerate(zip(pairs, chosen, rejected, margins, strict=True))
    ]
    rows.sort(key=lambda r: r["margin"])
    return {"metrics": metrics, "rows": rows, "key_metric": "preference_accuracy", "greater_is_better": True}


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(f"{m['role']}: {m['content']}" for m in value)
    return str(value or "")
