"""Evaluating a causal language model on a test set: batched greedy answers to the prompts, scored against the
reference answers (exact match, normalized match, ROUGE-L, chrF), and the perplexity of the references.

The test data has the SFT roles: ``messages`` (the last assistant turn is the reference), ``prompt`` and
``completion``, or plain ``text`` (perplexity only). Heavy imports happen inside the functions (eval jobs only).
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.llm.data import parse_messages
from engine.llm.model import end_of_turn_ids, load_for_inference

DEFAULT_BATCH = 16
ANSWER_MARGIN = 16  # new tokens beyond the longest reference answer, when max_new_tokens is not given


@dataclass
class Example:
    """One test row: what the model is asked (None: text for perplexity only), the reference answer, and the
    prompt and answer text whose answer tokens are scored for perplexity."""

    prompt: Any
    reference: str
    prompt_text: str
    answer_text: str


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalization)."""
    text = "".join(c for c in str(text).lower() if c not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def examples(df: Any, tok: Any) -> list[Example]:
    """The test rows as :class:`Example` s, from whichever SFT form the data has."""
    cols = set(df.columns)
    if "messages" in cols:
        return [_chat_example(parse_messages(v, i + 1, "messages"), tok, i + 1) for i, v in enumerate(df["messages"])]
    if {"prompt", "completion"} <= cols:
        pairs = zip(df["prompt"].astype(str), df["completion"].astype(str), strict=True)
        return [Example(p, c, p, c) for p, c in pairs]
    if "text" in cols:
        return [Example(None, "", "", str(t)) for t in df["text"]]
    raise UserError(
        "The test data needs a `messages` column (chats), `prompt` and `completion` columns, or a `text` column. "
        f"Columns found: {', '.join(map(str, df.columns))}. Map yours with --map ROLE=COLUMN."
    )


def _chat_example(chat: list[dict[str, str]], tok: Any, row: int) -> Example:
    if len(chat) < 2 or chat[-1]["role"] != "assistant":
        raise UserError(
            f"Test row {row}: the chat must end with an assistant turn (the reference answer); it ends with a "
            f"{chat[-1]['role'] if chat else 'missing'} turn."
        )
    prompt_text = tok.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(chat, tokenize=False)
    answer = full[len(prompt_text) :] if full.startswith(prompt_text) else chat[-1]["content"]
    return Example(chat[:-1], chat[-1]["content"], prompt_text, answer)


def evaluate_generation(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Metrics and per-example rows (worst first) of the model in ``model_dir`` on the test rows ``df``."""
    import torch

    model, tok = load_for_inference(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    items = examples(df, tok)
    if not items:
        raise UserError("The test data has no rows to evaluate.")
    say = options.get("progress") or (lambda fraction, message: None)
    batch = max(1, int(options.get("batch_size") or DEFAULT_BATCH))
    losses = answer_losses(model, tok, items, batch, device)
    say(0.3, f"perplexity of {len(items)} answers measured")
    asked = [i for i, e in enumerate(items) if e.prompt is not None]
    settings = generation_settings(tok, [items[i] for i in asked], options)
    answers = dict(
        zip(asked, generate_batched(model, tok, [items[i] for i in asked], settings, batch, say), strict=True)
    )
    return _report(items, losses, answers, settings | {"batch_size": batch, "device": device})


def generation_settings(tok: Any, items: list[Example], options: dict[str, Any]) -> dict[str, Any]:
    """Greedy decoding, ``max_new_tokens`` as asked (within the instance's cap) or the longest reference plus a
    margin."""
    from engine.train.generation import capped_new_tokens

    longest = max((len(tok(e.reference, add_special_tokens=False)["input_ids"]) for e in items), default=0)
    limit, _ = capped_new_tokens(options.get("max_new_tokens") or longest + ANSWER_MARGIN)
    return {"max_new_tokens": limit, "do_sample": False, "decoding": "greedy"}


def _encode(tok: Any, item: Example) -> list[int]:
    if isinstance(item.prompt, list):
        return tok(item.prompt_text, add_special_tokens=False)["input_ids"]
    return tok(item.prompt_text, add_special_tokens=True)["input_ids"] if item.prompt_text else []


def generate_batched(
    model: Any, tok: Any, items: list[Example], settings: dict[str, Any], batch: int, say: Any
) -> list[str]:
    """Greedy answers to the prompts, ``batch`` at a time (left-padded, similar lengths together)."""
    import torch

    encoded = [_encode(tok, e) for e in items]
    order = sorted(range(len(items)), key=lambda i: len(encoded[i]))
    out: dict[int, str] = {}
    stop = end_of_turn_ids(tok)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        width = max(len(encoded[i]) for i in chunk)
        ids = [[tok.pad_token_id] * (width - len(encoded[i])) + encoded[i] for i in chunk]
        mask = [[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk]
        device = next(model.parameters()).device
        with torch.no_grad():
            found = model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=settings["max_new_tokens"],
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stop,
                pad_token_id=tok.pad_token_id,
            )
        for row, i in enumerate(chunk):
            out[i] = tok.decode(found[row, width:], skip_special_tokens=True).strip()
        say(0.3 + 0.7 * len(out) / len(items), f"answered {len(out)} of {len(items)} prompts")
    return [out[i] for i in range(len(items))]


def answer_losses(model: Any, tok: Any, items: list[Example], batch: int, device: str) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, token count) of each answer given its prompt (plain text: all of it)."""
    import torch

    rows = []
    for item in items:
        prompt = _encode(tok, item)
        answer = tok(item.answer_text, add_special_tokens=not prompt)["input_ids"]
        rows.append((prompt, answer))
    out = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        width = max(len(p) + len(a) for p, a in chunk)
        ids = [p + a + [tok.pad_token_id] * (width - len(p) - len(a)) for p, a in chunk]
        labels = [[-100] * len(p) + a + [-100] * (width - len(p) - len(a)) for p, a in chunk]
        mask = [[1] * (len(p) + len(a)) + [0] * (width - len(p) - len(a)) for p, a in chunk]
        with torch.no_grad():
            logits = model(
                input_ids=torch.tensor(ids, device=device), attention_mask=torch.tensor(mask, device=device)
            ).logits.float()
        target = torch.tensor(labels, device=device)[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), target.clamp(min=0), reduction="none"
        ) * (target != -100)
        out += [(float(nll[r].sum()), int((target[r] != -100).sum())) for r in range(len(chunk))]
    return out


def _report(
    items: list[Example], losses: list[tuple[float, int]], answers: dict[int, str], settings: dict[str, Any]
) -> dict[str, Any]:
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = []
    for i, (item, (nll, count)) in enumerate(zip(items, losses, strict=True)):
        row: dict[str, Any] = {"row": i + 1, "prompt": _shown(item.prompt if item.prompt is not None else "")}
        row |= {"reference": item.reference or item.answer_text}
        if i in answers:
            pred = answers[i]
            row |= {"prediction": pred, "exact_match": float(pred.strip() == item.reference.strip())}
            row |= {"normalized_match": float(normalize(pred) == normalize(item.reference))}
            row |= {"rougeL": 100 * scorer.score(item.reference, pred)["rougeL"].fmeasure}
            row |= {"chrf": sacrebleu.sentence_chrf(pred, [item.reference]).score}
        row["loss"] = nll / count if count else None
        rows.append(row)
    total_nll, total = sum(n for n, _ in losses), sum(c for _, c in losses)
    metrics = {"perplexity": math.exp(min(total_nll / total, 50)) if total else None, "n_examples": len(items)}
    if answers:
        scored = [r for r in rows if "prediction" in r]
        for name in ("exact_match", "normalized_match"):
            metrics[name] = sum(r[name] for r in scored) / len(scored)
        metrics["rougeL"] = sum(r["rougeL"] for r in scored) / len(scored)
        preds, refs = [r["prediction"] for r in scored], [items[r["row"] - 1].reference for r in scored]
        metrics["chrf"] = sacrebleu.corpus_chrf(preds, [refs]).score
    rows.sort(key=lambda r: (r.get("normalized_match", 0), r.get("rougeL", 0), -(r["loss"] or 0)))
    key = "exact_match" if answers else "perplexity"
    return {
        "metrics": metrics,
        "rows": rows,
        "key_metric": key,
        "greater_is_better": bool(answers),
        "settings": settings,
    }


def _shown(prompt: Any) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt) if isinstance(prompt, list) else str(prompt)


# ---- test rows of the tasks whose data is not in SFT form (KTO, GRPO, RLOO, distillation) ------------------------


def reference_frame(prompts: list[Any], references: list[str]) -> Any:
    """SFT-form test rows, as :func:`evaluate_generation` reads them, from prompts (text or chats) and reference
    answers: ``messages`` (the reference as the last assistant turn) when any prompt is a chat, else ``prompt`` and
    ``completion``."""
    import pandas as pd

    if not any(isinstance(p, list) for p in prompts):
        return pd.DataFrame({"prompt": [str(p) for p in prompts], "completion": references})
    chats = [p if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in prompts]
    turns = [[*c, {"role": "assistant", "content": r}] for c, r in zip(chats, references, strict=True)]
    return pd.DataFrame({"messages": turns})


def prompt_references(df: Any, how: str) -> tuple[list[Any], list[str]]:
    """(prompts, reference answers) of prompt-only test rows: the `answer` column when a row has one, else a chat
    prompt's final assistant turn (then cut from the prompt). ``how`` says how the task's data gives a reference;
    a UserError naming the rows that have none."""
    from engine.llm.data import as_chat_or_text

    answers = df["answer"].tolist() if "answer" in df.columns else [None] * len(df)
    prompts, refs, missing = [], [], []
    for i, (value, answer) in enumerate(zip(df["prompt"].tolist(), answers, strict=True)):
        prompt = as_chat_or_text(value, i + 1, "prompt")
        given = answer is not None and not (isinstance(answer, float) and answer != answer) and str(answer).strip()
        if isinstance(prompt, list) and prompt[-1]["role"] == "assistant" and len(prompt) > 1:
            prompt, answer, given = prompt[:-1], answer if given else prompt[-1]["content"], True
        if not given:
            missing.append(i + 1)
        prompts.append(prompt)
        refs.append(str(answer))
    if missing:
        rows = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise UserError(
            f"Evaluating needs a reference answer for every test prompt; {len(missing)} row(s) have none "
            f"(row(s) {rows}). {how}"
        )
    return prompts, refs


def evaluate_prompts(model_dir: Path, df: Any, options: dict[str, Any], how: str) -> dict[str, Any]:
    """:func:`evaluate_generation` on prompt-only test rows whose references come from :func:`prompt_references`."""
    prompts, refs = prompt_references(df, how)
    return evaluate_generation(model_dir, reference_frame(prompts, refs), options)


ANSWER_HOW = (
    "Add an `answer` column (the expected answer; --map answer=COLUMN), or give chat prompts that end with the "
    "reference assistant turn."
)


def evaluate_answers(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The online RL tasks' evaluation (GRPO, RLOO): exact / normalized match, ROUGE-L, chrF and perplexity of the
    greedy answers to the test prompts, against the `answer` column (or a chat prompt's final assistant turn)."""
    return evaluate_prompts(model_dir, df, options, ANSWER_HOW)
