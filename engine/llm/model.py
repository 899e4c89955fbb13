"""The LLM tasks' model side: tokenizer and model loading, quantization, LoRA, adapter merging, saving and
generation. Safe to import anywhere: torch, transformers and peft are imported inside the functions, which run
only in workers (training, predict, merge). Used by the LLM tasks and by seq2seq (``lora_config``).
"""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.llm.data import CHATML, chat_template_text, parse_messages
from engine.runfiles import read_json


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

    from engine.train.trainer import compute_dtype

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


def with_lora(model: Any, params: Any) -> Any:
    """``model`` wrapped in a new LoRA adapter when ``use_lora`` (for trainers that take no ``peft_config``)."""
    config = lora_config(params)
    if config is None:
        return model
    from peft import get_peft_model

    if params.gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, config)


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

    return AutoPeftModelForSequenceClassification if _is_classifier(adapter_dir) else AutoPeftModelForCausalLM


def _is_classifier(adapter_dir: Path) -> bool:
    return (read_json(adapter_dir / "adapter_config.json") or {}).get("task_type") == "SEQ_CLS"


def _head_size(adapter_dir: Path) -> dict[str, int]:
    """``num_labels`` of a classification adapter's saved head (a reward model has 1), else nothing."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not _is_classifier(adapter_dir) or not weights.exists():
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            if key.endswith(("score.weight", "classifier.weight")) and "lora" not in key:
                return {"num_labels": f.get_slice(key).get_shape()[0]}
    return {}


def save_lm(trainer: Any, params: Any, model_dir: Path) -> None:
    """Save the trained model and tokenizer to ``model_dir``. With LoRA the adapter is also kept in ``adapter/``
    beside it, and ``model_dir`` holds the merged model when ``merge_adapter`` (else the adapter)."""
    tok = trainer.processing_class
    if not getattr(params, "use_lora", False):
        trainer.save_model(str(model_dir))
        tok.save_pretrained(str(model_dir))
        return
    adapter_dir = Path(model_dir).parent / "adapter"
    trainer.model.save_pretrained(str(adapter_dir))
    tok.save_pretrained(str(adapter_dir))
    if _merges(params):
        merge_adapter(adapter_dir, model_dir, params.trust_remote_code)
    else:
        shutil.copytree(adapter_dir, model_dir, dirs_exist_ok=True)


def _merges(params: Any) -> bool:
    """Whether to merge the adapter at the end: asked for, and the base is not quantized (that loses precision)."""
    if not getattr(params, "merge_adapter", False):
        return False
    if getattr(params, "quantization", "none") != "none":
        print(
            "[trainpad] merge_adapter skipped: merging into a quantized base loses precision; the adapter is in adapter/."
        )
        return False
    return True


# ---- inference ----------------------------------------------------------------------------

# Tokens that end a chat turn (or start the next one) in common chat templates: generation stops at any of them.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end|>",
    "<|user|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "</s>",
)


def load_for_inference(model_dir: str | Path) -> tuple[Any, Any]:
    """A saved model (merged, full, or adapter) and its tokenizer, in eval mode; kept for the next request (the
    playground's prediction process answers many) until the folder's config changes."""
    model_dir = Path(model_dir)
    config = model_dir / ("adapter_config.json" if (model_dir / "adapter_config.json").exists() else "config.json")
    return _load_cached(str(model_dir.resolve()), config.stat().st_mtime_ns if config.exists() else 0)


@functools.lru_cache(maxsize=1)
def _load_cached(model_dir: str, _stamp: int) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (Path(model_dir) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model.eval()
    return model, tok


def end_of_turn_ids(tok: Any) -> list[int]:
    """The tokenizer's end-of-sequence id and those of the end-of-turn tokens its vocabulary has."""
    vocab = tok.get_vocab()
    ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
    ids += [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
    return list(dict.fromkeys(ids))


def sampling_settings(inputs: Any, max_new_tokens: int = 64, temperature: float = 0.0) -> dict[str, Any]:
    """``model.generate`` settings from a request's max_new_tokens (within the instance's cap), temperature and
    top_p: greedy at temperature 0, nucleus sampling otherwise."""
    from engine.train.generation import capped_new_tokens

    options = inputs if isinstance(inputs, dict) else {}
    limit, _ = capped_new_tokens(options.get("max_new_tokens", max_new_tokens))
    temperature = float(options.get("temperature", temperature) or 0.0)
    top_p = float(options.get("top_p", 1.0) or 1.0)
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError(f"temperature must be >= 0 and top_p in (0, 1]; got {temperature} and {top_p}.")
    sample = temperature > 0
    return {
        "max_new_tokens": limit,
        "do_sample": sample,
        "temperature": temperature if sample else None,
        "top_p": top_p if sample else None,
        "top_k": None,
    }


def stream_generate(model: Any, tokenizer: Any, generate_kwargs: dict[str, Any]) -> Iterator[str]:
    """``model.generate(**generate_kwargs)`` in a thread; yields the reply so far each time it grows."""
    import torch
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                model.generate(**generate_kwargs, streamer=streamer)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
            failed.append(e)
            streamer.end()

    thread = threading.Thread(target=run, name="trainpad-generate", daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        if piece:
            text += piece
            yield text
    thread.join()
    if failed:
        raise failed[0]


def encode_prompt(tok: Any, prompt: str | list[dict[str, Any]]) -> Any:
    """Token ids (tensors) of a plain prompt, or of a chat formatted with the tokenizer's chat template ready for
    the assistant's reply (the template brings its own special tokens)."""
    chat = isinstance(prompt, list)
    text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) if chat else prompt
    return tok(text, return_tensors="pt", add_special_tokens=not chat)


def generate(model_dir: str | Path, inputs: Any, max_new_tokens: int = 64, temperature: float = 0.0) -> Any:
    """Reply to a prompt (str) or a chat (list of messages / {"messages": [...]}, with optional max_new_tokens,
    temperature, top_p). Generation stops at the chat template's end of turn. With {"stream": true} the reply
    comes as an iterator of the text so far."""
    import torch

    model, tok = load_for_inference(model_dir)
    settings = sampling_settings(inputs, max_new_tokens, temperature)
    prompt = inputs
    if isinstance(inputs, dict):
        prompt = inputs.get("messages") or inputs.get("prompt") or inputs.get("text") or ""
    enc = encode_prompt(tok, parse_messages(prompt, 1, "messages") if isinstance(prompt, list) else str(prompt))
    kwargs = {**enc, **settings, "eos_token_id": end_of_turn_ids(tok), "pad_token_id": tok.pad_token_id}
    if isinstance(inputs, dict) and inputs.get("stream"):
        return stream_generate(model, tok, kwargs)
    with torch.no_grad():
        out = model.generate(**kwargs)
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
