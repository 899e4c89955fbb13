"""Helpers shared by the LLM tasks: chat templates, message parsing, model/tokenizer loading, LoRA,
quantization, adapter merging and generation.

Module level imports are light (the UI imports the task files that import this module);
torch/transformers/peft are imported inside the functions that run in workers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from engine.errors import UserError
from engine.params import LoraParams, field
from engine.task import Column

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ZEPHYR = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
TEMPLATES = {"chatml": CHATML, "zephyr": ZEPHYR, "llama3": LLAMA3}
ROLES = ("system", "user", "assistant", "tool")


class LLMParams(LoraParams):
    """Options shared by every LLM task: sequence length, chat template, LoRA/QLoRA, attention, merging."""

    learning_rate: float = field(
        2e-4, "Peak learning rate (2e-4 suits LoRA; use ~2e-5 for full fine-tuning).", gt=0, le=1.0
    )
    max_length: int = field(1024, "Longest sequence in tokens; longer examples are truncated.", ge=8, le=131072)
    chat_template: Literal["tokenizer", "chatml", "zephyr", "llama3", "custom"] = field(
        "tokenizer",
        "How chats are turned into text: the tokenizer's own template (ChatML if it has none), or a fixed one.",
    )
    custom_chat_template: str = field(
        "",
        "A Jinja chat template, used when chat_template is custom.",
        advanced=True,
        show_if={"chat_template": "custom"},
    )
    use_lora: bool = field(True, "Train a small LoRA adapter instead of all weights (much less memory).")
    merge_adapter: bool = field(
        True,
        "Merge the adapter into the base model at the end (a standalone model).",
        show_if={"use_lora": True},
        advanced=True,
    )
    quantization: Literal["none", "int4", "int8"] = field(
        "none", "Load the base model in 4-bit (NF4, QLoRA) or 8-bit. Needs a CUDA GPU and bitsandbytes.", advanced=True
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = field(
        "sdpa", "Attention kernel. flash_attention_2 needs a GPU and the flash-attn package.", advanced=True
    )


class PreferenceParams(LLMParams):
    """Options shared by the preference tasks (DPO, ORPO): prompt and completion length limits."""

    learning_rate: float = field(
        5e-5, "Peak learning rate (5e-5 suits LoRA; use ~5e-7 to 5e-6 for full fine-tuning).", gt=0, le=1.0
    )
    max_prompt_length: int = field(
        0,
        "Keep at most this many prompt tokens (its end is kept). 0 = no separate limit.",
        ge=0,
        le=131072,
        advanced=True,
    )
    max_completion_length: int = field(
        0,
        "Keep at most this many tokens of each answer (its start is kept). 0 = no separate limit.",
        ge=0,
        le=131072,
        advanced=True,
    )


# ---- data ---------------------------------------------------------------------------------


def parse_messages(value: Any, row: int, column: str) -> list[dict[str, str]]:
    """A chat as a list of {role, content}; accepts a list or a JSON string. Raises UserError with the row."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(
                f"Row {row}, column `{column}`: not a JSON list of messages "
                '(expected [{"role": "user", "content": "..."}, ...]).'
            ) from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise UserError(
            f"Row {row}, column `{column}`: expected a non-empty list of messages, got {type(value).__name__}."
        )
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise UserError(
                f"Row {row}, column `{column}`, message {i + 1}: every message needs a `role` and a `content`."
            )
        if m["role"] not in ROLES:
            raise UserError(
                f"Row {row}, column `{column}`, message {i + 1}: unknown role `{m['role']}` (use {', '.join(ROLES)})."
            )
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise UserError(f"Row {row}, column `{column}`, message {i + 1}: `content` is empty.")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def as_chat_or_text(value: Any, row: int, column: str) -> list[dict[str, str]] | str:
    """A chat when ``value`` is a list (or JSON list text), else the text itself (stripped of nothing)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) and value.lstrip().startswith("["):
        return parse_messages(value, row, column)
    if isinstance(value, list):
        return parse_messages(value, row, column)
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
        raise UserError(f"Row {row}, column `{column}`: empty. Fill or remove this row.")
    return str(value)


def _user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _shared_prefix(a: list, b: list) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def preference_example(prompt: Any, chosen: Any, rejected: Any, row: int) -> dict[str, Any]:
    """One preference pair in trl's form: all plain text, or all chats with the prompt split off.

    Accepts an explicit ``prompt`` (text or chat) or, for chats, a prompt implied by the messages that
    ``chosen`` and ``rejected`` share at their start. Raises UserError naming the row and the fix.
    """
    c, r = as_chat_or_text(chosen, row, "chosen"), as_chat_or_text(rejected, row, "rejected")
    if _same(c, r):
        raise UserError(
            f"Row {row}: `chosen` and `rejected` are identical; a preference pair needs two different "
            "answers. Fix or remove this row."
        )
    has_prompt = (
        prompt is not None and not (isinstance(prompt, float) and prompt != prompt) and str(prompt).strip() != ""
    )
    p = as_chat_or_text(prompt, row, "prompt") if has_prompt else None
    if isinstance(c, str) != isinstance(r, str):
        raise UserError(
            f"Row {row}: `chosen` and `rejected` must both be plain text or both be chats (lists of messages)."
        )
    if isinstance(c, str):
        if isinstance(p, list):
            return {
                "prompt": p,
                "chosen": [{"role": "assistant", "content": c}],
                "rejected": [{"role": "assistant", "content": r}],
            }
        return {"prompt": p or "", "chosen": c, "rejected": r}
    if p is None:
        shared = _shared_prefix(c, r)
        if shared == 0:
            raise UserError(
                f"Row {row}: `chosen` and `rejected` share no opening messages, so the prompt cannot be "
                "inferred. Add a `prompt` column, or start both chats with the same user turn."
            )
        p, c, r = c[:shared], c[shared:], r[shared:]
    else:
        p = _user_turn(p) if isinstance(p, str) else p
        c = c[len(p) :] if c[: len(p)] == p else c
        r = r[len(p) :] if r[: len(p)] == p else r
    if not c or not r:
        raise UserError(
            f"Row {row}: after the prompt, `{'chosen' if not c else 'rejected'}` has no answer left. "
            "Each side needs at least one message after the prompt."
        )
    return {"prompt": p, "chosen": c, "rejected": r}


def preference_rows(df: Any) -> list[dict[str, Any]]:
    """Every row of a prompt/chosen/rejected table as trl preference examples (one form for all rows)."""
    rows = [preference_example(*v, i + 1) for i, v in enumerate(_pairs(df))]
    if any(isinstance(x["chosen"], list) for x in rows):  # trl wants one form: lift plain-text rows to chats
        rows = [x if isinstance(x["chosen"], list) else _as_chat_example(x) for x in rows]
    return rows


def _pairs(df: Any) -> list[tuple[Any, Any, Any]]:
    """(prompt or None, chosen, rejected) for each row."""
    prompts = df["prompt"].tolist() if "prompt" in df else [None] * len(df)
    return list(zip(prompts, df["chosen"].tolist(), df["rejected"].tolist(), strict=True))


def _as_chat_example(x: dict[str, Any]) -> dict[str, Any]:
    prompt = _user_turn(x["prompt"]) if x["prompt"] else []
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": x["chosen"]}],
        "rejected": [{"role": "assistant", "content": x["rejected"]}],
    }


def preference_problems(train: Any, valid: Any) -> list[str]:
    """Malformed pairs (by row) in either split, and a refusal when chosen equals rejected in every row."""
    problems: list[str] = []
    for name, df in (("Training", train), ("Validation", valid)):
        if df is None:
            continue
        pairs = _pairs(df)
        if pairs and all(_same(c, r) for _, c, r in pairs):
            problems.append(
                f"{name} data: `chosen` is identical to `rejected` in every row (rows 1-{len(pairs)}), "
                "so there is no preference to learn. Check the column mapping: chosen and rejected must "
                "be different answers."
            )
            continue
        found = collect_problems(pairs, lambda v, r: preference_example(*v, r))
        problems += [f"{name} data: {p}" for p in found]
    return problems


def _same(chosen: Any, rejected: Any) -> bool:
    to_text = lambda v: json.dumps(v.tolist() if hasattr(v, "tolist") else v, sort_keys=True, default=str)  # noqa: E731
    return to_text(chosen) == to_text(rejected)


def collect_problems(rows: Any, fn: Any, limit: int = 10) -> list[str]:
    """Run ``fn(value, row_number)`` over rows; gather UserError messages (at most ``limit``)."""
    problems: list[str] = []
    for i, value in enumerate(rows):
        try:
            fn(value, i + 1)
        except UserError as e:
            problems.extend(e.problems)
            if len(problems) >= limit:
                problems.append("(more rows have problems; fix these first)")
                break
    return problems


PREFERENCE_COLUMNS = [
    Column(
        "prompt",
        "the prompt (text or chat); optional when the chats in chosen/rejected start with it",
        required=False,
        kind="any",
    ),
    Column("chosen", "the preferred answer: text, or a chat (list of {role, content})", kind="any"),
    Column("rejected", "the worse answer, in the same form as chosen", kind="any"),
]


def check_preferences(train: Any, valid: Any, params: Any) -> list[str]:
    """Pre-flight checks for prompt/chosen/rejected data: malformed rows, identical pairs, template failures."""
    return preference_problems(train, valid) or render_problems(train, valid, params)


def preference_datasets(task_name: str, params: Any) -> tuple[Any, Any]:
    """Train and validation (or None) ``datasets.Dataset`` of preference examples in trl's form."""
    from datasets import Dataset

    from engine import data
    from engine.task import get_task

    train_df, valid_df = data.load_splits(get_task(task_name), params)
    train = Dataset.from_list(preference_rows(train_df))
    valid = Dataset.from_list(preference_rows(valid_df)) if valid_df is not None and len(valid_df) else None
    print(
        f"[trainpad] {len(train)} training pairs, {len(valid) if valid else 0} validation pairs; "
        f"{'chats' if isinstance(train[0]['chosen'], list) else 'plain text'}; LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )
    return train, valid


def truncate_text(tok: Any, text: str, limit: int, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` tokens (its end when ``keep_end``); unchanged when it fits or limit is 0."""
    if not limit:
        return text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= limit:
        return text
    return tok.decode(ids[-limit:] if keep_end else ids[:limit])


def add_callbacks(
    trainer: Any,
    params: Any,
    run_dir: Path,
    has_eval: bool,
    tokens_per_sample: float | None = None,
    perplexity: bool = False,
) -> None:
    """Attach Trainpad's events/stop/early-stopping callbacks to a built trainer."""
    from engine import train_utils as tu

    for cb in tu.callbacks(params, run_dir, has_eval, tokens_per_sample, perplexity):
        trainer.add_callback(cb)


def fit(trainer: Any, params: Any, run_dir: Path, has_eval: bool, perplexity: bool = False) -> dict[str, float]:
    """Train, evaluate, and save the model (merged or adapter) unless Stop was asked for."""
    from engine import train_utils as tu
    from engine.runfiles import stop_requested

    metrics = tu.train_and_save(trainer, params, run_dir, has_eval, save=False, perplexity=perplexity)
    if not stop_requested():
        save_lm(trainer, params, Path(run_dir) / "model")
    return metrics


def ready_to_train() -> None:
    """After loading (many long-lived objects): re-enable the collector, freezing what exists (faster steps)."""
    import gc

    from engine import train_utils as tu

    tu.setup_torch_threads()
    gc.enable()
    gc.freeze()


# ---- dataset check and report (no torch/transformers: this runs in the UI process) ------------

REPORT_ROWS = 5000  # token statistics use at most this many rows


def tokenizer_folder(base_model: str) -> Path | None:
    """The local folder holding the model's tokenizer files: a local model, or a Hub id in the cache."""
    if not base_model:
        return None
    local = Path(base_model).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(base_model, "tokenizer_config.json")
    except Exception:  # noqa: BLE001 - an odd id or cache layout only means "not cached"
        return None
    return Path(found).parent if isinstance(found, str) else None


def _special_tokens(folder: Path | None) -> dict[str, str]:
    config = _read_json(folder / "tokenizer_config.json") if folder else {}
    out = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        out[key] = (value.get("content", "") if isinstance(value, dict) else value) or ""
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _own_template(folder: Path | None) -> str | None:
    """The tokenizer's own chat template (chat_template.jinja or tokenizer_config.json), if any."""
    if folder is None:
        return None
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    value = _read_json(folder / "tokenizer_config.json").get("chat_template")
    if isinstance(value, list):  # named templates: use "default"
        value = next((t.get("template") for t in value if t.get("name") == "default"), None)
    return value if isinstance(value, str) else None


def template_for(params: Any, folder: Path | None) -> tuple[str | None, str]:
    """The Jinja template training will use and where it comes from; None when it cannot be known here."""
    choice = getattr(params, "chat_template", "tokenizer")
    fixed = chat_template_text(choice, getattr(params, "custom_chat_template", ""))
    if fixed is not None:
        return fixed, f"{choice} template"
    if folder is None:
        return None, "the tokenizer's own template (model not available locally)"
    own = _own_template(folder)
    return (own, "the tokenizer's own template") if own else (CHATML, "ChatML (the tokenizer has no template)")


def _compile(template: str) -> Any:
    """A compiled chat template in a sandbox like transformers' (trim_blocks, raise_exception, tojson)."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):  # {% generation %} blocks mark assistant text; here they just render
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, Generation])
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: __import__("datetime").datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(
    compiled: Any, messages: list[dict[str, str]], specials: dict[str, str], add_generation_prompt: bool = False
) -> str:
    return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **specials)


def _example_texts(df: Any, row: int, render: Any) -> list[str]:
    """The training text(s) of one row, by the columns present (chat rows rendered with ``render``)."""
    cols = set(df.columns)
    i = row - 1
    if {"chosen", "rejected"} <= cols:
        x = preference_example(
            df["prompt"].iloc[i] if "prompt" in cols else None, df["chosen"].iloc[i], df["rejected"].iloc[i], row
        )
        if isinstance(x["chosen"], list):
            return [render(x["prompt"] + x["chosen"]), render(x["prompt"] + x["rejected"])]
        return [x["prompt"] + x["chosen"], x["prompt"] + x["rejected"]]
    if "messages" in cols:
        return [render(parse_messages(df["messages"].iloc[i], row, "messages"))]
    if {"prompt", "completion"} <= cols:
        return [str(df["prompt"].iloc[i]) + str(df["completion"].iloc[i])]
    parts = [df[c].iloc[i] for c in ("text", "text_2", "text_3") if c in cols]
    return ["\n\n".join(str(p) for p in parts if isinstance(p, str) and p)]


def formatted_examples(df: Any, params: Any, limit: int | None = None) -> tuple[list[str], list[str], str, bool]:
    """(texts, render problems by row, template note, whether chats were rendered) for a mapped table.

    Rows with structural problems (empty, malformed messages) are skipped here: the task's own checks
    report those. A chat template that does not compile or render is reported with the row and the reason.
    """
    import jinja2

    folder = tokenizer_folder(params.base_model)
    try:
        template, note = template_for(params, folder)
    except UserError as e:
        return [], e.problems, "", False
    specials = _special_tokens(folder)
    compiled: list[Any] = []  # compiled on first use: data without chats never needs the template

    def render(messages: list[dict[str, str]]) -> str:
        if template is None:
            raise _NoTemplate
        if not compiled:
            compiled.append(_compile(template))
        return render_chat(compiled[0], messages, specials)

    texts: list[str] = []
    problems: list[str] = []
    for row in range(1, (min(len(df), limit) if limit else len(df)) + 1):
        try:
            texts += _example_texts(df, row, render)
        except (UserError, _NoTemplate):
            continue
        except jinja2.TemplateSyntaxError as e:
            return (
                [],
                [
                    f"The chat template ({note}) is not valid Jinja: {e.message} (template line {e.lineno}). "
                    "Fix custom_chat_template, or choose chatml, zephyr or llama3."
                ],
                note,
                False,
            )
        except Exception as e:  # noqa: BLE001 - any template failure is the user's to fix
            problems.append(
                f"Row {row}: the chat template ({note}) failed to render this example: "
                f"{type(e).__name__}: {e}. Fix the template or the row, or choose another chat_template."
            )
            if len(problems) >= 5:
                problems.append("(more rows fail to render; fix these first)")
                break
    return texts, problems, note, bool(compiled)


class _NoTemplate(Exception):
    """The chat template is not known in this process (a Hub model that is not cached)."""


def render_problems(train: Any, valid: Any, params: Any) -> list[str]:
    """Chat-template failures in either split, by row (for a task's ``check_data``)."""
    problems: list[str] = []
    for name, df in (("Training", train), ("Validation", valid)):
        if df is not None:
            found = formatted_examples(df, params)[1]
            problems += [p if p.startswith("The chat template") else f"{name} data: {p}" for p in found]
            if found and found[0].startswith("The chat template"):
                break
    return problems


def token_lengths(texts: list[str], folder: Path, add_special_tokens: bool) -> list[int] | None:
    """Token counts with the model's own fast tokenizer (the light ``tokenizers`` package); None if absent."""
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=add_special_tokens)]


def length_stats(lengths: list[int], max_length: int) -> dict[str, Any]:
    """min/median/p95/max of the token lengths and the share longer than ``max_length``."""
    ordered = sorted(lengths)
    n = len(ordered)

    def pct(q: float) -> int:
        return ordered[min(n - 1, max(0, int(round(q * (n - 1)))))]

    over = sum(1 for x in ordered if x > max_length)
    return {
        "examples": n,
        "min": ordered[0],
        "median": pct(0.5),
        "p95": pct(0.95),
        "max": ordered[-1],
        "max_length": max_length,
        "over_max_length": over,
        "over_share": over / n,
    }


def data_report(task: Any, params: Any) -> dict[str, Any]:
    """What the data looks like to the model, before launch: token-length statistics of the formatted
    examples, the share longer than the max length, one formatted example, and any problems.

    Reads local files only and imports neither torch nor transformers (safe in the UI process).
    """
    from engine import data

    report: dict[str, Any] = {"problems": data.check_data(task, params), "notes": [], "stats": None, "preview": None}
    if not params.data_path or not data.is_local(params.data_path):
        report["notes"].append("Hub dataset: token statistics are computed when the run loads it.")
        return report
    try:
        raw, _ = data.load_raw(params, nrows=REPORT_ROWS)
    except UserError:
        return report
    mapping, problems = data.resolve_mapping(task, list(raw.columns), params.column_mapping)
    if problems:
        return report
    df = data.apply_mapping(raw, mapping)
    texts, _, note, chat = formatted_examples(df, params, limit=REPORT_ROWS)
    if note and (chat or "not available" in note):
        report["notes"].append(f"Chats are formatted with {note}.")
    if getattr(params, "block_size", None) is not None or getattr(params, "packing", "none") != "none":
        report["notes"].append(
            "Examples are packed into fixed-length sequences: longer ones are split across sequences, not cut."
        )
    if not texts:
        report["notes"].append("No example could be formatted here; token statistics are skipped.")
        return report
    report["preview"] = texts[0]
    folder = tokenizer_folder(params.base_model)
    lengths = token_lengths(texts, folder, add_special_tokens=not chat) if folder else None
    if lengths is None:
        report["notes"].append(
            "The model's tokenizer.json is not available locally (a Hub model not yet downloaded, "
            "or a slow tokenizer): token statistics are skipped."
        )
        return report
    report["stats"] = length_stats(lengths, getattr(params, "block_size", 0) or params.max_length)
    if len(raw) >= REPORT_ROWS:
        report["notes"].append(f"Statistics cover the first {REPORT_ROWS} rows.")
    return report


def data_summary(task: Any, params: Any) -> str:
    """Token statistics and a formatted example, as Markdown (problems are reported by the data check)."""
    return format_report({**data_report(task, params), "problems": []})


def format_report(report: dict[str, Any]) -> str:
    """The report as short Markdown for the UI / CLI."""
    lines = []
    s = report.get("stats")
    if s:
        lines.append(
            f"**Tokens per example** ({s['examples']} examples): min {s['min']}, median {s['median']}, "
            f"p95 {s['p95']}, max {s['max']}. **{s['over_share']:.1%}** ({s['over_max_length']}) are longer "
            f"than max length {s['max_length']}."
        )
    lines += [f"- {n}" for n in report.get("notes", [])]
    lines += [f"- Problem: {p}" for p in report.get("problems", [])]
    if report.get("preview"):
        lines += ["", "One formatted training example:", "", "```", report["preview"][:2000], "```"]
    return "\n".join(lines)


# ---- model loading ------------------------------------------------------------------------


def chat_template_text(choice: str, custom: str = "") -> str | None:
    """The Jinja text for a template choice; None = keep the tokenizer's own."""
    if choice == "custom":
        if not custom.strip():
            raise UserError("chat_template is `custom` but custom_chat_template is empty. Paste a Jinja template.")
        return custom
    return TEMPLATES.get(choice)


def load_tokenizer(params: Any) -> Any:
    """The tokenizer with a pad token and the chosen chat template (ChatML when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    choice = getattr(params, "chat_template", "tokenizer")
    template = chat_template_text(choice, getattr(params, "custom_chat_template", ""))
    if template is not None:
        tok.chat_template = template
    elif not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML
    return tok


def quantization_config(params: Any) -> Any:
    """bitsandbytes config for int4 (NF4, bf16 compute where supported) / int8; clear error on CPU."""
    q = getattr(params, "quantization", "none")
    if q == "none":
        return None
    import torch

    if not torch.cuda.is_available():
        raise UserError(
            f"quantization={q} needs a CUDA GPU (bitsandbytes); this machine has none. Set quantization to none."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(f"quantization={q} needs the bitsandbytes package: pip install bitsandbytes.") from None
    from transformers import BitsAndBytesConfig

    if q == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=True
    )


def load_causal_lm(params: Any, model_cls: Any = None, **kwargs: Any) -> Any:
    """The base model in the dtype that fits the device and precision; quantized when asked."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train_utils import compute_dtype

    model_cls = model_cls or AutoModelForCausalLM
    quant = quantization_config(params)
    dtype = compute_dtype(params.mixed_precision) if torch.cuda.is_available() else torch.float32
    attn = getattr(params, "attn_implementation", "sdpa")
    if attn == "flash_attention_2" and not torch.cuda.is_available():
        raise UserError("attn_implementation=flash_attention_2 needs a CUDA GPU; use sdpa.")
    model = model_cls.from_pretrained(
        params.base_model,
        dtype=dtype,
        quantization_config=quant,
        attn_implementation=attn,
        trust_remote_code=params.trust_remote_code,
        **kwargs,
    )
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
    model.config.use_cache = False
    return model


def lora_config(params: Any, task_type: str = "CAUSAL_LM") -> Any:
    """peft LoraConfig from the params, or None for full fine-tuning."""
    if not getattr(params, "use_lora", False):
        if getattr(params, "quantization", "none") != "none":
            raise UserError("Quantized training needs LoRA: turn use_lora on, or set quantization to none.")
        return None
    from peft import LoraConfig

    targets = params.lora_target_modules.strip()
    modules: Any = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=modules,
        task_type=task_type,
        bias="none",
    )


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, trust_remote_code: bool = False) -> Path:
    """Merge a LoRA adapter into its base model; save a standalone model (AutoModelForCausalLM, or
    AutoModelForSequenceClassification for a reward model's adapter) to ``out_dir``."""
    import torch
    from transformers import AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise UserError(f"`{adapter_dir}` holds no LoRA adapter (adapter_config.json missing); nothing to merge.")
    model = _peft_class(adapter_dir).from_pretrained(
        str(adapter_dir), dtype=torch.float32, trust_remote_code=trust_remote_code, **_head_size(adapter_dir)
    )
    merged = model.merge_and_unload()
    tok = AutoTokenizer.from_pretrained(str(adapter_dir))
    if merged.config.pad_token_id is None and tok.pad_token_id is not None:
        merged.config.pad_token_id = tok.pad_token_id  # sequence-classification heads need it to find the last token
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (out_dir / name).exists() and out_dir != adapter_dir:
            (out_dir / name).unlink()
    return out_dir


def _peft_class(adapter_dir: Path) -> Any:
    """The peft auto class for an adapter: sequence classification (reward models) or causal LM."""
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification

    task_type = _read_json(adapter_dir / "adapter_config.json").get("task_type")
    return AutoPeftModelForSequenceClassification if task_type == "SEQ_CLS" else AutoPeftModelForCausalLM


def _head_size(adapter_dir: Path) -> dict[str, int]:
    """``num_labels`` of a classification adapter's saved head (a reward model has 1), else nothing."""
    weights = adapter_dir / "adapter_model.safetensors"
    if _read_json(adapter_dir / "adapter_config.json").get("task_type") != "SEQ_CLS" or not weights.exists():
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            if key.endswith(("score.weight", "classifier.weight")) and "lora" not in key:
                return {"num_labels": f.get_slice(key).get_shape()[0]}
    return {}


def save_lm(trainer: Any, params: Any, model_dir: Path) -> None:
    """Save the trained model; with LoRA, merged into the base when ``merge_adapter`` (adapter kept in adapter/)."""
    tok = trainer.processing_class
    if getattr(params, "use_lora", False):
        adapter_dir = model_dir.parent / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
        tok.save_pretrained(str(adapter_dir))
        if getattr(params, "merge_adapter", False):
            if getattr(params, "quantization", "none") != "none":
                print(
                    "[trainpad] merge_adapter skipped: merging into a quantized base loses precision; the adapter is in adapter/."
                )
            else:
                merge_adapter(adapter_dir, model_dir, params.trust_remote_code)
                return
        import shutil

        shutil.copytree(adapter_dir, model_dir, dirs_exist_ok=True)
        return
    trainer.save_model(str(model_dir))
    tok.save_pretrained(str(model_dir))


# ---- inference ----------------------------------------------------------------------------


def load_for_inference(model_dir: str | Path) -> tuple[Any, Any]:
    """A saved model (merged, full, or adapter) and its tokenizer, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(model_dir))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model.eval()
    return model, tok


def generate(model_dir: str | Path, inputs: Any, max_new_tokens: int = 64, temperature: float = 0.0) -> str:
    """Reply to a prompt (str) or a chat (list of messages / {"messages": [...]})."""
    import torch

    model, tok = load_for_inference(model_dir)
    if isinstance(inputs, dict):
        max_new_tokens = int(inputs.get("max_new_tokens", max_new_tokens))
        temperature = float(inputs.get("temperature", temperature))
        inputs = inputs.get("messages") or inputs.get("prompt") or inputs.get("text") or ""
    if isinstance(inputs, list):
        text = tok.apply_chat_template(
            parse_messages(inputs, 1, "messages"), tokenize=False, add_generation_prompt=True
        )
    else:
        text = str(inputs)
    enc = tok(text, return_tensors="pt", add_special_tokens=not isinstance(inputs, list))
    sample = temperature > 0
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
