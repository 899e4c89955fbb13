"""The LLM tasks' data side, safe in the UI process: shared params, chat templates, message and preference
parsing, pre-flight data checks and the token-length report.

Imports no torch, transformers, trl, peft or datasets (the UI imports the task files that import this module;
a test asserts it). Model loading lives in :mod:`engine.llm.model`, trainer building in :mod:`engine.llm.train`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from engine.errors import UserError
from engine.params import LoraParams, field
from engine.runfiles import read_json
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


def preference_task_fields() -> dict[str, Any]:
    """The ``Task`` fields every prompt/chosen/rejected task shares: columns, data checks and report, the
    chat playground, AutoTrain's column names."""
    return {
        "columns": PREFERENCE_COLUMNS,
        "check_data": check_preferences,
        "data_summary": data_summary,
        "predict_input": "chat",
        "autotrain_columns": {
            "prompt_text_column": "prompt",
            "text_column": "chosen",
            "rejected_text_column": "rejected",
        },
    }


# ---- chat templates, token statistics and the data report ----------------------------------


# ---- sample generations at each evaluation (the run page's "samples" view) -------------------------

SAMPLES = 3  # validation examples generated from at each evaluation
SAMPLE_WORDS = 48  # a plain text's prompt: at most its first half, at most this many words


def sample_prompts(df: Any, n: int = SAMPLES) -> list[dict[str, Any]]:
    """Up to ``n`` validation rows as {"prompt": text or chat, "reference": text}: a chat without its last
    assistant turn, a prompt with its completion (or chosen answer), or a plain text's first half with what
    follows; rows that give none are skipped. [] without validation data."""
    out: list[dict[str, Any]] = []
    if df is None or not len(df):
        return out
    for i, row in enumerate(df.head(4 * n).to_dict("records")):
        try:
            found = _sample(row, i + 1)
        except UserError:
            found = None
        if found and len(out) < n:
            out.append(found)
    return out


def _sample(row: dict[str, Any], number: int) -> dict[str, Any] | None:
    if "messages" in row:
        chat = parse_messages(row["messages"], number, "messages")
        last = chat[-1]
        return (
            {"prompt": chat[:-1], "reference": last["content"]}
            if len(chat) > 1 and last["role"] == "assistant"
            else None
        )
    if "chosen" in row:
        pair = preference_example(row.get("prompt"), row["chosen"], row["rejected"], number)
        return {"prompt": pair["prompt"], "reference": _answer(pair["chosen"])} if pair["prompt"] else None
    if "prompt" in row and "completion" in row:
        return {"prompt": str(row["prompt"]), "reference": str(row["completion"])}
    if "text" in row:
        words = str(row["text"]).split()
        cut = min(len(words) // 2, SAMPLE_WORDS)
        return {"prompt": " ".join(words[:cut]), "reference": " ".join(words[cut : 2 * cut])} if cut else None
    return None


def _answer(chosen: Any) -> str:
    return chosen[-1]["content"] if isinstance(chosen, list) else str(chosen)


def chat_template_text(choice: str, custom: str = "") -> str | None:
    """The Jinja text for a template choice; None = keep the tokenizer's own."""
    if choice == "custom":
        if not custom.strip():
            raise UserError("chat_template is `custom` but custom_chat_template is empty. Paste a Jinja template.")
        return custom
    return TEMPLATES.get(choice)


REPORT_ROWS = 5000  # token statistics use at most this many rows
STAT_CHARS = 100_000  # and at most this many characters of each example


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
    config = (read_json(folder / "tokenizer_config.json") or {}) if folder else {}
    out = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        out[key] = (value.get("content", "") if isinstance(value, dict) else value) or ""
    return out


def _own_template(folder: Path | None) -> str | None:
    """The tokenizer's own chat template (chat_template.jinja or tokenizer_config.json), if any."""
    if folder is None:
        return None
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    value = (read_json(folder / "tokenizer_config.json") or {}).get("chat_template")
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
    """:func:`rendered_examples`, in a child process with time and memory limits when the data holds chats: the
    chat template is the user's (typed, or their model's), and Check runs in the app."""
    from engine.preflight import bounded

    if not ({"messages"} <= set(df.columns) or {"chosen", "rejected"} <= set(df.columns)):
        return rendered_examples(df, params, limit)
    head = df.head(limit) if limit else df
    texts, problems, note, chats = bounded.call(
        "engine.llm.data:rendered_examples", head, params, limit, what="The chat template"
    )
    return texts, problems, note, chats


def rendered_examples(df: Any, params: Any, limit: int | None = None) -> tuple[list[str], list[str], str, bool]:
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
    # A huge cell (a 50 MB text) is measured on its first STAT_CHARS characters and scaled: same answer to the
    # question "is it longer than max_length", in milliseconds instead of minutes and gigabytes.
    cut = [t[:STAT_CHARS] for t in texts]
    counts = [len(e.ids) for e in tok.encode_batch(cut, add_special_tokens=add_special_tokens)]
    return [n if len(t) <= STAT_CHARS else round(n * len(t) / STAT_CHARS) for n, t in zip(counts, texts, strict=True)]


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
    from engine.data import splits
    from engine.data import tables as data

    report: dict[str, Any] = {"problems": splits.check_data(task, params), "notes": [], "stats": None, "preview": None}
    if not params.data_path or not data.is_local(params.data_path):
        report["notes"].append("Hub dataset: token statistics are computed when the run loads it.")
        return report
    try:
        raw, _ = splits.load_raw(params, nrows=REPORT_ROWS)
    except UserError:
        return report
    mapping, problems = splits.resolve_mapping(task, list(raw.columns), params.column_mapping)
    if problems:
        return report
    df = splits.apply_mapping(raw, mapping)
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
