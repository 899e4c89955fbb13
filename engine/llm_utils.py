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
from engine.params import TrainerParams, field

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


class LLMParams(TrainerParams):
    """Options shared by every LLM task: sequence length, chat template, LoRA/QLoRA, attention, merging."""

    learning_rate: float = field(2e-4, "Peak learning rate (2e-4 suits LoRA; use ~2e-5 for full fine-tuning).", gt=0, le=1.0)
    max_length: int = field(1024, "Longest sequence in tokens; longer examples are truncated.", ge=8, le=131072)
    chat_template: Literal["tokenizer", "chatml", "zephyr", "llama3", "custom"] = field(
        "tokenizer", "How chats are turned into text: the tokenizer's own template (ChatML if it has none), or a fixed one.")
    custom_chat_template: str = field("", "A Jinja chat template, used when chat_template is custom.", advanced=True,
                                      show_if={"chat_template": "custom"})
    use_lora: bool = field(True, "Train a small LoRA adapter instead of all weights (much less memory).")
    lora_r: int = field(16, "LoRA rank.", ge=1, le=1024, show_if={"use_lora": True}, advanced=True)
    lora_alpha: int = field(32, "LoRA scaling (alpha).", ge=1, le=4096, show_if={"use_lora": True}, advanced=True)
    lora_dropout: float = field(0.05, "Dropout on the LoRA layers.", ge=0.0, le=0.9, show_if={"use_lora": True}, advanced=True)
    lora_target_modules: str = field("all-linear", "Layers that get adapters: all-linear, or names separated by commas "
                                     "(e.g. q_proj,v_proj).", show_if={"use_lora": True}, advanced=True)
    merge_adapter: bool = field(True, "Merge the adapter into the base model at the end (a standalone model).",
                                show_if={"use_lora": True}, advanced=True)
    quantization: Literal["none", "int4", "int8"] = field(
        "none", "Load the base model in 4-bit (NF4, QLoRA) or 8-bit. Needs a CUDA GPU and bitsandbytes.", advanced=True)
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = field(
        "sdpa", "Attention kernel. flash_attention_2 needs a GPU and the flash-attn package.", advanced=True)


# ---- data ---------------------------------------------------------------------------------

def parse_messages(value: Any, row: int, column: str) -> list[dict[str, str]]:
    """A chat as a list of {role, content}; accepts a list or a JSON string. Raises UserError with the row."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"Row {row}, column `{column}`: not a JSON list of messages "
                            '(expected [{"role": "user", "content": "..."}, ...]).') from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise UserError(f"Row {row}, column `{column}`: expected a non-empty list of messages, got {type(value).__name__}.")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise UserError(f"Row {row}, column `{column}`, message {i + 1}: every message needs a `role` and a `content`.")
        if m["role"] not in ROLES:
            raise UserError(f"Row {row}, column `{column}`, message {i + 1}: unknown role `{m['role']}` (use {', '.join(ROLES)}).")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise UserError(f"Row {row}, column `{column}`, message {i + 1}: `content` is empty.")
        out.append({"role": m["role"], "content": m["content"]})
    return out


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
        raise UserError(f"quantization={q} needs a CUDA GPU (bitsandbytes); this machine has none. Set quantization to none.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(f"quantization={q} needs the bitsandbytes package: pip install bitsandbytes.") from None
    from transformers import BitsAndBytesConfig

    if q == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=True)


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
    model = model_cls.from_pretrained(params.base_model, dtype=dtype, quantization_config=quant, attn_implementation=attn,
                                      trust_remote_code=params.trust_remote_code, **kwargs)
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
    return LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                      target_modules=modules, task_type=task_type, bias="none")


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, trust_remote_code: bool = False) -> Path:
    """Merge a LoRA adapter into its base model; save a standalone model that AutoModelForCausalLM loads."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise UserError(f"`{adapter_dir}` holds no LoRA adapter (adapter_config.json missing); nothing to merge.")
    model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), dtype=torch.float32, trust_remote_code=trust_remote_code)
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(out_dir))
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (out_dir / name).exists() and out_dir != adapter_dir:
            (out_dir / name).unlink()
    return out_dir


def save_lm(trainer: Any, params: Any, model_dir: Path) -> None:
    """Save the trained model; with LoRA, merged into the base when ``merge_adapter`` (adapter kept in adapter/)."""
    tok = trainer.processing_class
    if getattr(params, "use_lora", False):
        adapter_dir = model_dir.parent / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
        tok.save_pretrained(str(adapter_dir))
        if getattr(params, "merge_adapter", False):
            if getattr(params, "quantization", "none") != "none":
                print("[trainpad] merge_adapter skipped: merging into a quantized base loses precision; the adapter is in adapter/.")
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
        text = tok.apply_chat_template(parse_messages(inputs, 1, "messages"), tokenize=False, add_generation_prompt=True)
    else:
        text = str(inputs)
    enc = tok(text, return_tensors="pt", add_special_tokens=not isinstance(inputs, list))
    sample = temperature > 0
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
                             top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

