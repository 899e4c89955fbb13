"""Reward functions for the RL tasks (GRPO, RLOO): the presets, a user's reward file, and their weights.

Every reward is a callable with trl's signature, ``f(prompts, completions, completion_ids=None, **columns)`` returning
one float (or None: not scored) per completion, and a ``__name__`` that names it on the charts and in the rollouts
view. Building the rewards (:func:`build`) loads models and the user's file, so it runs in the worker only; the
checks before launch (:func:`problems`) read nothing but file names and the file's syntax, never its code.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import re
import signal
import threading
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import Problem, UserError

PRESETS = ("format", "exact_match", "length", "reward_model", "judge", "python")
THINK_ANSWER = r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"  # the `format` preset's default pattern
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
USER_CALL_S = 60  # longest one call of a user's reward function may take
JUDGE_TIMEOUT_S = 30  # longest one judge request may take
JUDGE_PROMPT = (
    "Rate how good the answer is for the question, from 0 (useless) to 10 (perfect). Reply with the number only.\n\n"
    "Question: {prompt}\n\nAnswer: {completion}\n\nScore:"
)

Reward = Callable[..., list[float | None]]


# ---- texts ------------------------------------------------------------------------------------


def text_of(value: Any) -> str:
    """A prompt or completion as text: a plain string, or a chat's turns (a completion: its last turn's content)."""
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value)


def final_answer(text: str) -> str:
    """What a completion answers: the last ``<answer>…</answer>`` when it has one, else all of it."""
    found = ANSWER_TAG.findall(text)
    return found[-1].strip() if found else text.strip()


def named(name: str, fn: Reward) -> Reward:
    fn.__name__ = name
    return fn


# ---- presets ----------------------------------------------------------------------------------


def format_reward(pattern: str = "") -> Reward:
    """1 when the completion matches ``pattern`` (a regular expression, searched; empty: think/answer tags), else 0."""
    compiled = re.compile(pattern or THINK_ANSWER, re.DOTALL)

    def score(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [1.0 if compiled.search(text_of(c)) else 0.0 for c in completions]

    return named("format", score)


def answers_match(completion: str, answer: Any) -> float | None:
    """1.0 when ``completion`` gives ``answer``: the same text (case and spaces aside), the same number, or the same
    math (``math-verify``: LaTeX, fractions, sets); None when there is no answer to compare with."""
    if answer is None or (isinstance(answer, float) and math.isnan(answer)) or not str(answer).strip():
        return None
    gold, said = str(answer).strip(), final_answer(completion)
    if _norm(said) == _norm(gold):
        return 1.0
    if _same_number(said, gold):
        return 1.0
    return 1.0 if _math_equal(said, gold) else 0.0


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("$", "").split()).rstrip(".")


def _same_number(said: str, gold: str) -> bool:
    """The completion's last number equals a plain-number answer."""
    try:
        want = float(gold.replace(",", ""))
    except ValueError:
        return False
    found = NUMBER.findall(said)
    return bool(found) and math.isclose(float(found[-1].replace(",", "")), want, rel_tol=1e-9, abs_tol=1e-9)


def _math_equal(said: str, gold: str) -> bool:
    """math-verify's comparison (gold as LaTeX or an expression); False when it is not installed or cannot parse."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    timeout = threading.current_thread() is threading.main_thread()  # its timeouts use signals: main thread only
    seconds = {"parsing_timeout": 5 if timeout else None}
    try:
        wanted = parse(gold if "$" in gold or "\\" not in gold else f"${gold}$", **seconds)
        given = parse(said if "$" in said or "\\" not in said else f"${said}$", **seconds)
        return bool(wanted) and bool(given) and bool(verify(wanted, given, timeout_seconds=5 if timeout else None))
    except Exception:  # noqa: BLE001 - an unparseable answer is a wrong one
        return False


def exact_match_reward(column: str = "answer") -> Reward:
    """1 when the completion gives the row's ``column`` (text, number or math), 0 when not, None without one."""

    def score(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        if column not in columns:
            raise UserError(
                f"exact_match needs an `{column}` column in the data; map one with column_mapping "
                f"(e.g. {{{column}: solution}}) or remove exact_match from reward_functions."
            )
        return [answers_match(text_of(c), a) for c, a in zip(completions, columns[column], strict=True)]

    return named("exact_match", score)


def length_reward(target: int, tokenizer: Any = None) -> Reward:
    """How close the completion is to ``target`` tokens: 1 at the target, down to 0 at twice (or none of) it."""

    def score(
        prompts: list[Any], completions: list[Any], completion_ids: list[list[int]] | None = None, **_: Any
    ) -> list[float]:
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        elif tokenizer is not None:
            lengths = [len(tokenizer(text_of(c), add_special_tokens=False)["input_ids"]) for c in completions]
        else:
            lengths = [len(text_of(c).split()) for c in completions]
        return [length_score(n, target) for n in lengths]

    return named("length", score)


def length_score(n: int, target: int) -> float:
    return max(0.0, 1.0 - abs(n - target) / max(1, target))


def reward_model_reward(model_dir: str, trust_remote_code: bool = False) -> Reward:
    """The score of a reward model (a finished `llm_reward` run or a local sequence-classification model with one
    output) for the prompt and completion, as it was trained: chats through its chat template."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code).eval()
    model.config.pad_token_id = tok.pad_token_id

    def score(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        texts = [_scored_text(tok, p, c) for p, c in zip(prompts, completions, strict=True)]
        device = next(model.parameters()).device
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False).to(device)
        with torch.inference_mode():
            return model(**enc).logits[:, 0].float().tolist()

    return named("reward_model", score)


def _scored_text(tok: Any, prompt: Any, completion: Any) -> str:
    if isinstance(prompt, list):
        answer = completion if isinstance(completion, list) else [{"role": "assistant", "content": str(completion)}]
        return tok.apply_chat_template(prompt + answer, tokenize=False)
    return str(prompt) + text_of(completion) + (tok.eos_token or "")


def judge_reward(judge: str, model: str = "", key_env: str = "", prompt: str = "", **load: Any) -> Reward:
    """An LLM judge's 0-10 score, scaled to 0-1: an OpenAI-compatible endpoint (``judge`` an http(s) URL, the key
    read from the environment variable ``key_env``) or a local causal LM (a folder or a finished run's model)."""
    template = prompt or JUDGE_PROMPT
    ask = (
        _endpoint_judge(judge, model, key_env)
        if judge.startswith(("http://", "https://"))
        else _local_judge(judge, **load)
    )
    failures: list[str] = []

    def score(prompts: list[Any], completions: list[Any], **_: Any) -> list[float | None]:
        out: list[float | None] = []
        for p, c in zip(prompts, completions, strict=True):
            try:
                reply = ask(template.replace("{prompt}", text_of(p)).replace("{completion}", text_of(c)))
                out.append(judge_score(reply))
            except Exception as e:  # noqa: BLE001 - a failed judgement skips the completion, the log says why once
                if not failures:
                    print(f"[trainpad] judge failed ({type(e).__name__}: {e}); such completions are not scored.")
                failures.append(str(e))
                out.append(None)
        return out

    return named("judge", score)


def judge_score(reply: str) -> float | None:
    """The first number of a judge's reply, 0-10, as 0-1 (None: no number)."""
    found = NUMBER.search(reply or "")
    return None if found is None else min(10.0, max(0.0, float(found.group().replace(",", "")))) / 10.0


def _endpoint_judge(url: str, model: str, key_env: str) -> Callable[[str], str]:
    key = os.environ.get(key_env, "") if key_env else ""
    if key_env and not key:
        raise UserError(f"The judge's API key is read from ${key_env}, which is not set in the run's environment.")
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")

    def ask(text: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0}
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        request = urllib.request.Request(endpoint, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=JUDGE_TIMEOUT_S) as r:  # noqa: S310 - the operator's URL
            return json.loads(r.read())["choices"][0]["message"]["content"]

    return ask


def _local_judge(model_dir: str, trust_remote_code: bool = False) -> Callable[[str], str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=trust_remote_code).eval()

    def ask(text: str) -> str:
        chat = getattr(tok, "chat_template", None)
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        enc = tok(prompt if chat else text, return_tensors="pt", add_special_tokens=not chat)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id or 0)
        return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    return ask


# ---- a user's reward file -----------------------------------------------------------------------


def python_reward(path: str, function: str = "reward") -> Reward:
    """``function`` of the user's file (trl's signature), each call bounded to ``USER_CALL_S`` seconds. Runs the
    file's code: the worker calls this, never the app, and a shared instance refuses it unless the operator allows."""
    spec = importlib.util.spec_from_file_location("trainpad_user_reward", path)
    if spec is None or spec.loader is None:
        raise UserError(f"reward_file `{Path(path).name}` cannot be loaded as a Python file.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UserError(f"reward_file `{Path(path).name}` failed to load: {type(e).__name__}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise UserError(f"reward_file `{Path(path).name}` defines no function `{function}` (reward_function_name).")

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        with time_limit(USER_CALL_S, f"the reward function `{function}`"):
            out = list(fn(prompts=prompts, completions=completions, **kwargs))
        return [None if v is None else float(v) for v in out]

    return named(function, score)


@contextmanager
def time_limit(seconds: int, what: str) -> Any:
    """Raise a UserError when the block runs longer than ``seconds`` (main thread only: elsewhere it is unbounded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(*_: Any) -> None:
        raise UserError(f"{what} took longer than {seconds} s on one batch; make it faster.")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def file_problems(path: str, function: str) -> list[str]:
    """A reward file that is missing, not Python, or defines no such function: read as syntax, never run."""
    file = Path(path).expanduser()
    if not path:
        return [
            Problem("The python reward needs a reward_file (a .py file defining the function).", field="reward_file")
        ]
    if not file.is_file() or file.suffix != ".py":
        return [Problem(f"reward_file `{file.name}` is not a .py file that exists.", field="reward_file")]
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError) as e:
        return [Problem(f"reward_file `{file.name}` is not valid Python: {e}.", field="reward_file")]
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if function not in names:
        return [
            Problem(
                f"reward_file `{file.name}` defines no top-level function `{function}` (found: "
                f"{', '.join(sorted(names)) or 'none'}). Set reward_function_name.",
                field="reward_function_name",
            )
        ]
    return []


# ---- the run's rewards --------------------------------------------------------------------------


def resolve_model(value: str, runs_dir: Path | None) -> str:
    """A model named by a finished run's id (its ``model`` folder) or a folder / Hub id as it is."""
    if runs_dir is not None and value and "/" not in value and (Path(runs_dir) / value / "model").is_dir():
        return str(Path(runs_dir) / value / "model")
    return value


def problems(params: Any, columns: set[str]) -> list[str]:
    """What is wrong with the chosen rewards before launch: unknown or repeated names, weights that do not match,
    a preset missing its setting or column, a reward file that cannot work."""
    chosen, found = list(params.reward_functions), []
    if not chosen:
        found.append(Problem("Choose at least one reward function (e.g. length).", field="reward_functions"))
    if len(set(chosen)) < len(chosen):
        found.append(Problem("reward_functions names a function twice; list each once.", field="reward_functions"))
    if params.reward_weights and len(params.reward_weights) != len(chosen):
        found.append(
            Problem(
                f"reward_weights has {len(params.reward_weights)} values for {len(chosen)} reward functions: give one "
                "weight per function, in the same order (or none: all 1).",
                field="reward_weights",
            )
        )
    if "exact_match" in chosen and "answer" not in columns:
        found.append(
            Problem("exact_match compares with an `answer` column: map one (e.g. {answer: solution}).", role="answer")
        )
    if "format" in chosen and params.format_pattern:
        try:
            re.compile(params.format_pattern)
        except re.error as e:
            found.append(Problem(f"format_pattern is not a valid regular expression: {e}.", field="format_pattern"))
    if "reward_model" in chosen and not params.reward_model:
        found.append(
            Problem("reward_model needs a model: a finished reward run's id or a folder.", field="reward_model")
        )
    if "judge" in chosen and not params.judge_model:
        found.append(
            Problem(
                "judge needs judge_model: a local model folder, a run id, or an http(s) endpoint.", field="judge_model"
            )
        )
    if "python" in chosen:
        found += file_problems(params.reward_file, params.reward_function_name or "reward")
    return found


def build(params: Any, tokenizer: Any = None, runs_dir: Path | None = None) -> tuple[list[Reward], list[float]]:
    """The run's reward functions, in the order chosen, and their weights (all 1 when none are given)."""
    code = params.trust_remote_code
    makers: dict[str, Callable[[], Reward]] = {
        "format": lambda: format_reward(params.format_pattern),
        "exact_match": lambda: exact_match_reward("answer"),
        "length": lambda: length_reward(params.target_length, tokenizer),
        "reward_model": lambda: reward_model_reward(resolve_model(params.reward_model, runs_dir), code),
        "judge": lambda: judge_reward(
            resolve_model(params.judge_model, runs_dir),
            params.judge_api_model,
            params.judge_api_key_env,
            params.judge_prompt,
            **({} if params.judge_model.startswith("http") else {"trust_remote_code": code}),
        ),
        "python": lambda: python_reward(params.reward_file, params.reward_function_name or "reward"),
    }
    funcs = [makers[name]() for name in params.reward_functions]
    weights = [float(w) for w in params.reward_weights] or [1.0] * len(funcs)
    return funcs, weights
