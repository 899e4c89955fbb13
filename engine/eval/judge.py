"""LLM-as-judge: pairwise (A vs B, asked in both orders so that position bias cancels) and single-answer grading,
by a local model folder or an OpenAI-compatible endpoint (``TRAINPAD_JUDGE_URL``, key ``TRAINPAD_JUDGE_KEY``,
model ``TRAINPAD_JUDGE_MODEL``: read from the environment, never stored). The judge's reasons are kept per example.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import settings
from engine.errors import UserError

TIMEOUT_S = 60  # longest one judge request may take
MODES = ("pairwise", "single")
PAIRWISE = """Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants \
to the user question displayed below. {reference}Avoid any position biases and ensure that the order in which the \
responses were presented does not influence your decision. Explain briefly, then output your final verdict by \
strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for \
a tie.

[User Question]
{question}

[The Start of Assistant A's Answer]
{a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{b}
[The End of Assistant B's Answer]"""
SINGLE = """Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to \
the user question displayed below. {reference}Explain briefly, then rate the response on a scale of 1 to 10 by \
strictly following this format: "Rating: [[5]]".

[User Question]
{question}

[The Start of Assistant's Answer]
{a}
[The End of Assistant's Answer]"""
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def judge_source(judge_model: str) -> str:
    """``local`` for a model folder, ``endpoint`` for the configured endpoint; UserError when neither is there."""
    if judge_model and Path(judge_model).expanduser().is_dir():
        return "local"
    if not settings.is_set("TRAINPAD_JUDGE_URL"):
        raise UserError(
            "No judge: give --judge-model a local model folder, or set TRAINPAD_JUDGE_URL to an OpenAI-compatible "
            "endpoint (…/v1; its key in TRAINPAD_JUDGE_KEY, its model in TRAINPAD_JUDGE_MODEL or --judge-model)."
        )
    return "endpoint"


def asker(judge_model: str) -> Callable[[str], str]:
    """A function that sends one prompt to the judge and returns its reply."""
    if judge_source(judge_model) == "local":
        return _local(judge_model)
    return _endpoint(judge_model or settings.text("TRAINPAD_JUDGE_MODEL"))


def _endpoint(model: str) -> Callable[[str], str]:
    url = settings.text("TRAINPAD_JUDGE_URL").rstrip("/")
    endpoint = url if url.endswith("/chat/completions") else url + "/chat/completions"
    key = settings.text("TRAINPAD_JUDGE_KEY")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

    def ask(text: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 512}
        request = urllib.request.Request(endpoint, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as r:  # noqa: S310 - the operator's endpoint
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise UserError(
                f"The judge endpoint (TRAINPAD_JUDGE_URL) answered HTTP {e.code}: {e.read()[:300]!r}. "
                "Check its key (TRAINPAD_JUDGE_KEY) and model name."
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(
                f"The judge endpoint (TRAINPAD_JUDGE_URL) cannot be reached ({reason}). Start it, or fix the URL."
            ) from None
        try:
            return str(json.loads(raw)["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise UserError(
                f"The judge endpoint (TRAINPAD_JUDGE_URL) returned something that is not an OpenAI chat completion: "
                f"{raw[:200]!r}."
            ) from None

    return ask


def _local(model_dir: str) -> Callable[[str], str]:
    from engine.llm.model import generate

    def ask(text: str) -> str:
        return generate(model_dir, {"messages": [{"role": "user", "content": text}], "max_new_tokens": 256})

    return ask


def _reference(reference: str) -> str:
    return f"A reference answer is: {reference!r}. " if reference else ""


def pairwise(ask: Callable[[str], str], question: str, a: str, b: str, reference: str, row: int) -> dict[str, Any]:
    """Judge A vs B in both orders; the winner only when both orders agree (else a tie), with both reasons."""
    first = ask(PAIRWISE.format(question=question, a=a, b=b, reference=_reference(reference)))
    second = ask(PAIRWISE.format(question=question, a=b, b=a, reference=_reference(reference)))
    v1, v2 = _verdict(first, row), {"A": "B", "B": "A", "C": "C"}[_verdict(second, row)]
    final = v1 if v1 == v2 else "C"
    return {"verdict": {"A": "A", "B": "B", "C": "tie"}[final], "consistent": float(v1 == v2)} | {
        "verdict_a_first": v1,
        "verdict_b_first": v2,
        "reason_a_first": first,
        "reason_b_first": second,
    }


def single(ask: Callable[[str], str], question: str, answer: str, reference: str, row: int) -> dict[str, Any]:
    reply = ask(SINGLE.format(question=question, a=answer, reference=_reference(reference)))
    found = RATING.search(reply)
    if found is None:
        raise UserError(f"The judge gave no rating like [[7]] for test row {row}; it answered: {reply[:200]!r}.")
    return {"rating": min(10.0, max(1.0, float(found.group(1)))), "reason": reply}


def _verdict(reply: str, row: int) -> str:
    found = VERDICT.findall(reply)
    if not found:
        raise UserError(
            f"The judge gave no verdict ([[A]], [[B]] or [[C]]) for test row {row}; it answered: {reply[:200]!r}. "
            "Use a judge model that follows the format."
        )
    return found[-1]


def judged_evaluation(spec: dict[str, Any], df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The judge's evaluation of the model (``model_dir``; pairwise against ``against_dir``) on the test prompts."""
    from engine.llm import evaluate as le
    from engine.llm.model import load_for_inference

    mode, say = spec["judge"], options.get("progress") or (lambda f, m: None)
    ask = asker(spec.get("judge_model") or "")
    answers = []
    for i, model_dir in enumerate([spec["model_dir"], *([spec["against_dir"]] if mode == "pairwise" else [])]):
        model, tok = load_for_inference(model_dir)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        items = [e for e in le.examples(df, tok) if e.prompt is not None]
        if not items:
            raise UserError("Judging needs prompts: give `messages`, or `prompt` and `completion` columns.")
        settings_ = le.generation_settings(tok, items, options)
        answers.append(le.generate_batched(model, tok, items, settings_, int(options.get("batch_size") or 16), say))
        say(0.2 + 0.2 * i, f"answers of model {'AB'[i]} generated")
    rows = []
    for n, item in enumerate(items):
        question = le._shown(item.prompt)
        row = {"row": n + 1, "prompt": question, "reference": item.reference, "answer_a": answers[0][n]}
        if mode == "pairwise":
            row |= {"answer_b": answers[1][n]} | pairwise(
                ask, question, answers[0][n], answers[1][n], item.reference, n + 1
            )
        else:
            row |= single(ask, question, answers[0][n], item.reference, n + 1)
        rows.append(row)
        say(0.4 + 0.6 * (n + 1) / len(items), f"judged {n + 1} of {len(items)}")
    source = judge_source(spec.get("judge_model") or "")
    judge = {
        "judge": mode,
        "judge_source": source,
        "judge_model": spec.get("judge_model") or settings.text("TRAINPAD_JUDGE_MODEL"),
    }
    return _summary(mode, rows) | {"settings": settings_ | judge | {"against": spec.get("against", "")}}


def _summary(mode: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if mode == "single":
        rows.sort(key=lambda r: r["rating"])
        metrics = {"judge_rating": sum(r["rating"] for r in rows) / n}
        return {"metrics": metrics, "rows": rows, "key_metric": "judge_rating", "greater_is_better": True}
    count = {v: sum(r["verdict"] == v for r in rows) for v in ("A", "B", "tie")}
    metrics = {"win_rate": count["A"] / n, "loss_rate": count["B"] / n, "tie_rate": count["tie"] / n}
    metrics["consistency"] = sum(r["consistent"] for r in rows) / n
    rows.sort(key=lambda r: {"B": 0, "tie": 1, "A": 2}[r["verdict"]])
    return {"metrics": metrics, "rows": rows, "key_metric": "win_rate", "greater_is_better": True}
