"""Peak training memory per device, estimated from the model's ``config.json`` before anything launches.

UI-safe: reads JSON (and safetensors headers), never imports torch or transformers and never downloads weights.
:func:`memory_check` is what Check, Start and ``trainpad validate`` call; :func:`estimate` and :func:`verdict`
are its parts. What the estimate covers (and not) is listed in ``bench/README.md`` beside the measured table.

Per device, in bytes: weights (the base model, in the dtype it is loaded in), gradients and optimizer states of
the *trainable* parameters (all of them, or only the LoRA adapters), LoRA adapter weights, activations saved for
the backward pass (per layer from hidden/intermediate/head sizes, the attention matrix where the kernel
materialises it, the vocabulary logits), and a fixed framework overhead. DDP replicates everything on each
device; FSDP divides weights, gradients and optimizer states by the number of processes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.runfiles import read_json

GIB = 2**30
# Framework overhead per process: CPU = Python + torch + transformers/trl imports, data and tokenizer (measured
# 0.45-0.65 GB for tiny models, bench/README.md); GPU = CUDA context, kernels and cuBLAS workspace.
CPU_OVERHEAD = int(0.55 * GIB)
GPU_OVERHEAD = int(1.0 * GIB)
GPU_FRAGMENTATION = 0.05  # caching-allocator slack, as a share of the model-dependent bytes
OPTIMIZER_STATES = {  # bytes per trainable parameter (on top of the parameter and its gradient)
    "adamw_torch": 8,
    "adamw_torch_fused": 8,
    "adafactor": 1,  # factored second moment: ~ rows + columns per matrix
    "sgd": 0,
    "adamw_8bit": 2,
    "paged_adamw_8bit": 2,
}
OPTIMIZER_TEMPORARIES = {"adamw_torch": 1.0}  # foreach AdamW: one parameter-sized temporary (sqrt of v) per step
QUANT_BYTES = {"int4": 0.55, "int8": 1.06}  # NF4 + block scales (double quant) / int8 + row statistics
SEQ2SEQ_TYPES = {"t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "marian", "plbart", "led"}
ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "deberta",
    "deberta-v2",
    "electra",
    "distilbert",
    "mpnet",
    "albert",
    "modernbert",
}
POOLED = {"bert", "roberta", "xlm-roberta", "camembert", "mpnet", "vit"}  # models saved with a pooler layer
VISION_TYPES = {"vit", "deit", "beit", "dinov2", "vit_mae"}
NON_GATED = {"gpt2", "gpt_neox", "phi", "falcon", "starcoder2", "gpt_bigcode", "opt", "gptj", "bloom"}
TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3_text", "gpt2", "t5", "mt5", "bart", "mbart"}


@dataclass(frozen=True)
class Arch:
    """What the estimate needs from a model's config.json."""

    kind: str  # decoder | encoder | seq2seq | vision
    model_type: str
    params: int  # all parameters of the base model
    hidden: int
    layers: int  # layers holding activations (encoder + decoder)
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    linears: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # leaf name -> (in, out, count)
    attention_dropout: float = 0.0
    image_tokens: int = 0
    experts_per_token: int = 1

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)


@dataclass(frozen=True)
class Estimate:
    """Peak bytes per device and its parts; ``processes`` share one machine's RAM when ``device`` is cpu."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    adapters: int
    overhead: int
    device: str = "cpu"  # cpu | cuda
    processes: int = 1
    trainable: int = 0
    total_params: int = 0
    notes: tuple[str, ...] = ()

    @property
    def peak(self) -> int:
        """Peak bytes on one device (one process)."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.adapters + self.overhead

    @property
    def model_bytes(self) -> int:
        """The model-dependent part: everything but the fixed framework overhead."""
        return self.peak - self.overhead

    @property
    def needed(self) -> int:
        """Bytes that must fit in one device's memory: all processes on CPU (one RAM), one per GPU."""
        return self.peak * self.processes if self.device == "cpu" else self.peak

    def parts(self) -> dict[str, int]:
        names = ("weights", "gradients", "optimizer", "activations", "adapters", "overhead")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}


# ---- reading the model's config -----------------------------------------------------------


def find_model_files(model: str) -> tuple[dict[str, Any] | None, list[Path], str]:
    """(config.json as a dict, safetensors files present, why not found) for a local folder or a cached Hub id."""
    if not model:
        return None, [], "no base model set"
    folder = Path(model).expanduser()
    if folder.is_dir():
        cfg = folder / "config.json"
        if not cfg.is_file():
            return None, [], f"`{model}` has no config.json"
        return read_json(cfg), sorted(folder.glob("*.safetensors")), ""
    if "://" in model or model.count("/") > 1:
        return None, [], f"`{model}` is not a local folder or a Hub model id"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None, [], "huggingface_hub is not installed"
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # invalid repo id, unreadable cache
        return None, [], f"`{model}` is not a valid Hub model id"
    if not isinstance(found, str):
        return None, [], f"`{model}` is not downloaded yet (checked once it is)"
    cached = [try_to_load_from_cache(model, "model.safetensors")]
    return read_json(Path(found)), [Path(p) for p in cached if isinstance(p, str)], ""


def safetensors_params(files: list[Path]) -> int:
    """Parameter count from safetensors headers (8-byte length + JSON of dtype/shape); 0 when unreadable."""
    total = 0
    for path in files:
        try:
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(min(size, 100_000_000)))
        except (OSError, ValueError, struct.error):
            return 0
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if cfg.get(name) is not None:
            return cfg[name]
    return default


def architecture(cfg: dict[str, Any], safetensors: list[Path] | None = None) -> Arch | None:
    """The dimensions and parameter count of a model from its config (None for an unknown layout)."""
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}
    model_type = str(cfg.get("model_type", ""))
    try:
        arch = _parse(cfg, model_type)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):  # a field this layout needs is missing
        arch = None
    counted = safetensors_params(safetensors or [])
    if counted and (arch is None or model_type not in _KNOWN):
        return replace(arch or _unknown(cfg, model_type), params=counted)
    return arch


def _parse(cfg: dict[str, Any], model_type: str) -> Arch | None:
    if model_type in SEQ2SEQ_TYPES or cfg.get("is_encoder_decoder"):
        return _seq2seq(cfg, model_type)
    if model_type in VISION_TYPES or ("patch_size" in cfg and "image_size" in cfg):
        return _encoder(cfg, model_type, vision=True)
    if model_type in ENCODER_TYPES:
        return _encoder(cfg, model_type)
    if _get(cfg, "hidden_size", "n_embd", "d_model") and _get(cfg, "vocab_size"):
        return _decoder(cfg, model_type)
    return None


def _unknown(cfg: dict[str, Any], model_type: str) -> Arch:
    """Only the parameter count is known (from the weights' headers): no per-layer activations."""
    hidden = int(_get(cfg, "hidden_size", "n_embd", "d_model", default=0))
    zeros = dict(layers=0, heads=1, kv_heads=1, head_dim=0, intermediate=0)
    return Arch("unknown", model_type, 0, hidden, vocab=int(cfg.get("vocab_size") or 0), tied=True, **zeros)


def _decoder(cfg: dict[str, Any], model_type: str) -> Arch:
    hidden = int(_get(cfg, "hidden_size", "n_embd", "d_model"))
    layers = int(_get(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    heads = int(_get(cfg, "num_attention_heads", "n_head", "num_heads"))
    kv = int(_get(cfg, "num_key_value_heads", "num_kv_heads", default=1 if cfg.get("multi_query") else heads))
    hd = int(_get(cfg, "head_dim", default=hidden // heads))
    inter = int(_get(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden))
    vocab = int(cfg["vocab_size"])
    tied = bool(cfg.get("tie_word_embeddings", model_type in TIED_BY_DEFAULT))
    experts = int(_get(cfg, "num_local_experts", "num_experts", default=0))
    gated = model_type not in NON_GATED
    linears = {
        "q_proj": (hidden, heads * hd, layers),
        "k_proj": (hidden, kv * hd, layers),
        "v_proj": (hidden, kv * hd, layers),
        "o_proj": (heads * hd, hidden, layers),
    }
    if experts:
        moe = int(_get(cfg, "moe_intermediate_size", default=inter))
        linears |= {"gate_proj": (hidden, moe, layers * experts), "up_proj": (hidden, moe, layers * experts)}
        linears["down_proj"] = (moe, hidden, layers * experts)
        per_token = int(_get(cfg, "num_experts_per_tok", default=2))
        inter = moe
    else:
        per_token = 1
        if gated:
            linears |= {"gate_proj": (hidden, inter, layers), "up_proj": (hidden, inter, layers)}
        else:
            linears["up_proj"] = (hidden, inter, layers)
        linears["down_proj"] = (inter, hidden, layers)
    matrices = sum(i * o * n for i, o, n in linears.values())
    norms = (2 * layers + 1) * hidden
    if model_type == "gpt2":  # learned positions, biases everywhere
        norms += int(cfg.get("n_positions", 1024)) * hidden + layers * (7 * hidden + inter) + hidden
    if cfg.get("attention_bias") or model_type in {"qwen2", "qwen2_moe"}:  # q/k/v biases (and o's when flagged)
        norms += layers * ((heads + 2 * kv) * hd + (hidden if cfg.get("attention_bias") else 0))
    return Arch(
        kind="decoder",
        model_type=model_type,
        params=matrices + norms + vocab * hidden * (1 if tied else 2),
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv,
        head_dim=hd,
        intermediate=inter,
        vocab=vocab,
        tied=tied,
        linears=linears,
        attention_dropout=float(cfg.get("attention_dropout") or 0.0),
        experts_per_token=per_token,
    )


def _encoder(cfg: dict[str, Any], model_type: str, vision: bool = False) -> Arch:
    hidden = int(_get(cfg, "hidden_size", "dim", "d_model"))
    layers = int(_get(cfg, "num_hidden_layers", "n_layers", "num_layers"))
    heads = int(_get(cfg, "num_attention_heads", "n_heads"))
    inter = int(_get(cfg, "intermediate_size", "hidden_dim", default=4 * hidden))
    linears = {
        "query": (hidden, hidden, layers),
        "key": (hidden, hidden, layers),
        "value": (hidden, hidden, layers),
        "dense": (hidden, hidden, layers),  # attention output; the feed-forward pair is below
        "intermediate.dense": (hidden, inter, layers),
        "output.dense": (inter, hidden, layers),
    }
    per_layer = 4 * hidden * hidden + 2 * hidden * inter + 9 * hidden + inter  # matrices, biases, 2 layer norms
    if vision:
        patch, channels = int(cfg["patch_size"]), int(cfg.get("num_channels", 3))
        tokens = (int(cfg["image_size"]) // patch) ** 2 + 1
        embeddings = channels * patch * patch * hidden + (tokens + 2) * hidden
        vocab = 0
    else:
        tokens = 0
        vocab = int(cfg.get("vocab_size", 30522))
        positions = int(cfg.get("max_position_embeddings", 512)) + int(cfg.get("type_vocab_size", 0) or 0)
        embeddings = (vocab + positions) * hidden + 2 * hidden
        if not cfg.get("position_biased_input", True):
            embeddings -= int(cfg.get("max_position_embeddings", 512)) * hidden
        if cfg.get("relative_attention"):  # DeBERTa
            buckets = int(cfg.get("position_buckets", -1))
            embeddings += 2 * (buckets if buckets > 0 else int(cfg.get("max_position_embeddings", 512))) * hidden
    pooler = hidden * hidden + hidden if model_type in POOLED else 0
    return Arch(
        kind="vision" if vision else "encoder",
        model_type=model_type,
        params=layers * per_layer + embeddings + pooler,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=heads,
        head_dim=hidden // heads,
        intermediate=inter,
        vocab=vocab,
        tied=True,
        linears=linears,
        attention_dropout=float(_get(cfg, "attention_probs_dropout_prob", "attention_dropout", default=0.0)),
        image_tokens=tokens,
    )


def _seq2seq(cfg: dict[str, Any], model_type: str) -> Arch:
    d = int(_get(cfg, "d_model", "hidden_size"))
    enc = int(_get(cfg, "num_layers", "encoder_layers"))
    dec = int(_get(cfg, "num_decoder_layers", "decoder_layers", default=enc))
    heads = int(_get(cfg, "num_heads", "encoder_attention_heads"))
    inner = int(_get(cfg, "d_kv", default=d // heads)) * heads
    ff = int(_get(cfg, "d_ff", "encoder_ffn_dim", default=4 * d))
    vocab = int(cfg["vocab_size"])
    tied = bool(cfg.get("tie_word_embeddings", model_type in TIED_BY_DEFAULT))
    n_ff = 3 if "gated" in str(cfg.get("feed_forward_proj", "")) else 2
    layers = enc + dec
    attn = 4 * d * inner
    params = enc * (attn + n_ff * d * ff) + dec * (2 * attn + n_ff * d * ff) + vocab * d * (1 if tied else 2)
    params += (2 * enc + 3 * dec + 2) * d
    if model_type != "t5" and "max_position_embeddings" in cfg:
        params += 2 * (int(cfg["max_position_embeddings"]) + 2) * d
    attention = enc + 2 * dec  # self-attention in every layer, cross-attention in the decoder's
    if model_type in {"t5", "mt5", "umt5", "longt5"}:
        params += 2 * int(cfg.get("relative_attention_num_buckets", 32)) * heads
        linears = {n: (d, inner, attention) for n in ("q", "k", "v")} | {"o": (inner, d, attention)}
        linears |= {"wi": (d, ff * (n_ff - 1), layers), "wo": (ff, d, layers)}
    else:
        linears = {n: (d, inner, attention) for n in ("q_proj", "k_proj", "v_proj")} | {
            "out_proj": (inner, d, attention)
        }
        linears |= {"fc1": (d, ff, layers), "fc2": (ff, d, layers)}
    return Arch(
        kind="seq2seq",
        model_type=model_type,
        params=params,
        hidden=d,
        layers=layers,
        heads=heads,
        kv_heads=heads,
        head_dim=inner // heads,
        intermediate=ff,
        vocab=vocab,
        tied=tied,
        linears=linears,
        attention_dropout=float(_get(cfg, "dropout_rate", "attention_dropout", default=0.0)),
    )


_KNOWN = (
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text"}
    | {"phi3", "smollm3", "granite", "olmo", "olmo2"}
    | ENCODER_TYPES
    | SEQ2SEQ_TYPES
    | VISION_TYPES
)


# ---- the estimate -------------------------------------------------------------------------


def _p(params: Any, name: str, default: Any) -> Any:
    value = getattr(params, name, default)
    return default if value is None else value


def _lora_targets(arch: Arch, params: Any) -> list[tuple[int, int, int]]:
    """(in, out, count) of the linear layers that get adapters: all but the head for all-linear, else by name."""
    targets = str(_p(params, "lora_target_modules", "all-linear")).strip()
    if targets == "all-linear":
        return list(arch.linears.values())
    names = {t.strip() for t in targets.split(",") if t.strip()}
    return [v for k, v in arch.linears.items() if k in names or k.split(".")[-1] in names]


def lora_params(arch: Arch, params: Any) -> int:
    """Adapter parameters: r x (in + out) for every targeted linear layer."""
    r = int(_p(params, "lora_r", 16))
    return sum(r * (i + o) * n for i, o, n in _lora_targets(arch, params))


def _activations_per_token(arch: Arch, params: Any, lora: bool, seq: int, gpu: bool, half: bool) -> float:
    """Bytes saved for backward per token in one layer (measured shapes: bench/README.md)."""
    h, q, kv, i = arch.hidden, arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim, arch.intermediate
    if arch.kind == "decoder":  # norms' in/out, q/k/v after RoPE and repeated for GQA, attention out, gated MLP
        elems = 4 * h + 3 * q + 2 * kv + 4 * i * arch.experts_per_token
    else:  # post-norm encoders: q/k/v, outputs, GELU in/out and a dropout output + mask beside each sub-layer
        elems = 10 * h + 3 * i
    per_token = elems * (2 if half else 4)
    if lora:
        per_token += _lora_activations(arch, params, gpu, half)
    if arch.attention_dropout > 0 and not gpu:  # CPU attention with dropout runs the math kernel (s x s)
        per_token += arch.heads * seq * 13  # scores + probs (fp32), dropout mask and output
    return per_token


def _lora_activations(arch: Arch, params: Any, gpu: bool, half: bool) -> float:
    """Per token and layer: LoRA's dropout keeps a copy of each adapted layer's input and its mask (a float on
    CPU, a byte on GPU); the rank-r outputs beside."""
    dtype = 2 if half else 4
    r = int(_p(params, "lora_r", 16))
    chosen = _lora_targets(arch, params)
    inputs = sum(i * n for i, _, n in chosen) / max(arch.layers, 1)
    modules = sum(n for _, _, n in chosen) / max(arch.layers, 1)
    dropout = float(_p(params, "lora_dropout", 0.05)) > 0
    return (inputs * (dtype + (1 if gpu else 4)) if dropout else 0) + modules * r * dtype


def estimate(task: Any, params: Any, devices: list[Any] | None = None, arch: Arch | None = None) -> Estimate:
    """Peak memory per device of training ``params`` on ``devices`` (GPUs from ``engine.preflight.system.gpus()``; empty
    or None = CPU). ``arch`` is read from the model's config when not given; a missing config raises LookupError."""
    if arch is None:
        cfg, files, why = find_model_files(str(_p(params, "base_model", "")))
        arch = architecture(cfg, files) if cfg else None
        if arch is None:
            raise LookupError(why or "the model's config.json has a layout this estimate does not know")
    gpu = bool(devices)
    n = max(1, len(devices) if gpu else int(_p(params, "num_processes", 1) or 1))
    fsdp = n > 1 and _p(params, "distributed", "ddp") == "fsdp"
    shard = n if fsdp else 1
    profile = dict(getattr(task, "memory_profile", None) or {})
    precision = str(_p(params, "mixed_precision", "auto"))
    half = gpu and precision != "no"
    quant = str(_p(params, "quantization", "none")) if gpu else "none"
    lora = bool(_p(params, "use_lora", False)) or quant != "none"
    # LLM tasks (the ones with a quantization setting) load the base in the compute dtype on GPU; others in fp32.
    weight_bytes = 2 if half and hasattr(params, "quantization") else 4
    notes = ["activations not estimated (unknown model layout)"] if arch.kind == "unknown" else []

    base = arch.params
    if quant != "none":
        embed = arch.embedding_params
        weights = int((base - embed) * QUANT_BYTES[quant] + embed * 4)  # k-bit prep keeps embeddings in fp32
    else:
        weights = base * weight_bytes
    if _has(profile.get("reference_model"), params) and not lora:
        weights *= 2
        notes.append("a frozen reference copy of the model")
    if profile.get("teacher_model"):  # distillation: the teacher's weights, from its own config when found
        teacher = _teacher_params(str(_p(params, profile["teacher_model"], "")), base)
        weights += teacher * weight_bytes
        notes.append("the teacher model")
    adapters = lora_params(arch, params) if lora else 0
    trainable = adapters if lora else base
    state_bytes = 4 if (lora or weight_bytes == 4) else 2
    optimizer_name = str(_p(params, "optimizer", "adamw_torch"))
    per_state = OPTIMIZER_STATES.get(optimizer_name, 8) * (1 if "8bit" in optimizer_name else state_bytes / 4)
    per_state += OPTIMIZER_TEMPORARIES.get(optimizer_name, 0.0) * state_bytes
    gradients = trainable * state_bytes * (2 if n > 1 and not fsdp else 1)  # DDP: buckets hold a second copy
    optimizer = int(trainable * per_state)

    activations = _activation_bytes(arch, params, profile, lora, gpu, half)
    overhead = GPU_OVERHEAD if gpu else CPU_OVERHEAD
    model = (weights + gradients + optimizer) // shard + adapters * 4 + activations
    if gpu:
        overhead += int(model * GPU_FRAGMENTATION)
    return Estimate(
        weights=weights // shard,
        gradients=gradients // shard,
        optimizer=optimizer // shard,
        activations=activations,
        adapters=adapters * 4,
        overhead=overhead,
        device="cuda" if gpu else "cpu",
        processes=n,
        trainable=trainable,
        total_params=base,
        notes=tuple(notes),
    )


def _has(flag: Any, params: Any) -> bool:
    """A profile flag: True/False, or the name of a param that turns it on when above 0 (GRPO's beta)."""
    return bool(_p(params, flag, 0)) if isinstance(flag, str) else bool(flag)


def _teacher_params(model: str, student: int) -> int:
    """The teacher's parameter count from its config (a run id or a model not found: the student's)."""
    cfg, files, _ = find_model_files(model) if model else (None, [], "")
    arch = architecture(cfg, files) if cfg else None
    return arch.params if arch is not None else student


def _activation_bytes(arch: Arch, params: Any, profile: dict[str, Any], lora: bool, gpu: bool, half: bool) -> int:
    """Saved activations of one micro-batch at the start of backward: layers (or their checkpoints) + logits."""
    batch = int(_p(params, "batch_size", 8)) * int(profile.get("sequences_per_example", 1))
    seq = int(_p(params, "block_size", 0) or _p(params, "max_length", 512))
    if profile.get("length_fields"):  # online RL: a prompt and its sampled completion
        seq = sum(int(_p(params, name, 0)) for name in profile["length_fields"])
    dtype = 2 if half else 4
    if arch.kind == "vision":
        seq = arch.image_tokens
    tokens = batch * seq
    per_layer = _activations_per_token(arch, params, lora, seq, gpu, half)
    if bool(_p(params, "gradient_checkpointing", False)):  # layer inputs + one recomputed layer and its gradients
        layers = tokens * (arch.layers * arch.hidden * dtype + 2 * per_layer)
    else:
        layers = tokens * arch.layers * per_layer
    logits = 0
    lm_head = profile.get("lm_logits", arch.kind in ("decoder", "seq2seq"))
    if lm_head and arch.vocab:
        out_tokens = batch * int(_p(params, "max_target_length", seq)) if arch.kind == "seq2seq" else tokens
        # logits, log-softmax and its gradient in fp32 (+ the compute-dtype logits and their fp32 copy on GPU)
        logits = out_tokens * arch.vocab * (3 * 4 + (2 + 4 if half else 0))
    train = int(layers + logits + tokens * arch.hidden * dtype)  # + the embedding output
    if not profile.get("generations"):
        return train
    # online RL samples a whole generation batch (batch x grad_accum sequences) at once: its key/value cache
    sampled = tokens * int(_p(params, "grad_accum", 1)) // int(profile.get("sequences_per_example", 1))
    return max(train, sampled * arch.layers * 2 * arch.hidden * dtype)


# ---- the verdict --------------------------------------------------------------------------


class _With:
    """``params`` with some fields replaced (read with getattr, like the estimate does)."""

    def __init__(self, params: Any, **changes: Any):
        self._params, self._changes = params, changes

    def __getattr__(self, name: str) -> Any:
        if name in self._changes:
            return self._changes[name]
        return getattr(self._params, name)


def _gb(n: float) -> str:
    return f"{n / GIB:.1f}"


def verdict(est: Estimate, device_memory_bytes: int, params: Any, task: Any = None, arch: Arch | None = None) -> str:
    """``fits (est. X of Y GB)``, or ``will not fit: …`` naming the first change that makes it fit, in order of
    least harm: a smaller batch, LoRA, 4-bit (GPU, LLMs), gradient checkpointing. ``arch`` (the model's
    dimensions) lets it re-estimate without reading the config again."""
    if est.needed <= device_memory_bytes:
        return f"fits (est. {_gb(est.needed)} of {_gb(device_memory_bytes)} GB)"
    where = "RAM" if est.device == "cpu" else "device"
    head = f"will not fit: est. {_gb(est.needed)} GB on a {_gb(device_memory_bytes)} GB {where}"
    fix = _first_fix(est, device_memory_bytes, params, task, arch)
    return f"{head} — try {fix}" if fix else f"{head} — use a smaller model or more devices (FSDP)"


def _first_fix(est: Estimate, memory: int, params: Any, task: Any, arch: Arch | None) -> str:
    devices = [None] * est.processes if est.device == "cuda" else []
    if arch is None:
        cfg, files, _ = find_model_files(str(_p(params, "base_model", "")))
        arch = architecture(cfg, files) if cfg else None
        if arch is None:
            return ""

    def fits(**changes: Any) -> bool:
        return estimate(task, _With(params, **changes), devices, arch).needed <= memory

    batch = int(_p(params, "batch_size", 1))
    smaller = [b for b in _halvings(batch) if fits(batch_size=b)]
    if smaller:
        b = smaller[0]
        return f"batch size {b} (grad_accum {math.ceil(batch / b) * int(_p(params, 'grad_accum', 1))} keeps the effective batch)"
    if hasattr(params, "use_lora") and not _p(params, "use_lora", False) and fits(use_lora=True):
        return "LoRA (use_lora: true)"
    four_bit = {"use_lora": True, "quantization": "int4"}
    if est.device == "cuda" and hasattr(params, "quantization") and _p(params, "quantization", "none") != "int4":
        if fits(**four_bit):
            return "4-bit (quantization: int4, with LoRA)"
    if not _p(params, "gradient_checkpointing", False) and fits(gradient_checkpointing=True):
        return "gradient checkpointing (gradient_checkpointing: true)"
    every = {"batch_size": 1, "gradient_checkpointing": True}
    if hasattr(params, "use_lora"):
        every["use_lora"] = True
    if est.device == "cuda" and hasattr(params, "quantization"):
        every |= four_bit
    if fits(**every):
        return " + ".join(_describe(k, v) for k, v in every.items())
    return ""


def _halvings(batch: int) -> list[int]:
    """Batch sizes below ``batch`` from the largest: batch/2, batch/4, ..., 1."""
    out, b = [], batch // 2
    while b >= 1:
        out.append(b)
        b //= 2
    return out


def _describe(name: str, value: Any) -> str:
    return {"batch_size": f"batch size {value}", "use_lora": "LoRA", "quantization": "4-bit"}.get(
        name, "gradient checkpointing"
    )


# ---- what Check / Start / `trainpad validate` call ----------------------------------------


def device_memory(params: Any, gpus: list[Any] | None = None) -> tuple[list[Any], int]:
    """(the GPUs the run will use, the memory of the smallest), or ([], available RAM) on a CPU-only machine."""
    if gpus is None:
        from engine.preflight.system import gpus as find_gpus

        gpus = find_gpus()
    if not gpus:
        import psutil

        return [], int(psutil.virtual_memory().available)
    named = [g.strip() for g in str(_p(params, "gpus", "")).split(",") if g.strip()]
    chosen = [gpus[int(i)] for i in named if i.isdigit() and int(i) < len(gpus)]
    if not chosen:
        n = int(_p(params, "num_processes", 1) or 0) or len(gpus)  # 0 = every GPU
        chosen = gpus[:n]
    return chosen, int(min(g.memory_gb for g in chosen) * GIB)


def memory_check(task: Any, params: Any, gpus: list[Any] | None = None) -> str:
    """One Markdown line for Check / Start: the verdict with its estimate, or why there is none ("" when the
    task has no transformer model). Never raises; imports no torch."""
    model = str(getattr(params, "base_model", "") or "")
    if not model:
        return ""
    try:
        cfg, files, why = find_model_files(model)
        arch = architecture(cfg, files) if cfg else None
        if arch is None:
            return f"Memory: not estimated — {why or 'unknown model layout in config.json'}." if why else ""
        devices, memory = device_memory(params, gpus)
        est = estimate(task, params, devices, arch)
        where = f"{len(devices)}× {devices[0].name}" if devices else "CPU"
        if not devices and est.processes > 1:
            where += f" ({est.processes} processes)"
        text = verdict(est, memory, params, task, arch)
        mark = "✅" if text.startswith("fits") else "⚠️"
        return f"{mark} **Memory** on {where}: {text}. {describe(est)}"
    except Exception as e:  # a check must never block Start
        return f"Memory: not estimated ({type(e).__name__}: {e})."


def describe(est: Estimate) -> str:
    """The parts of the estimate in GB, e.g. ``weights 2.00 · gradients 2.00 · …``."""
    parts = " · ".join(f"{k} {v / GIB:.2f}" for k, v in est.parts().items() if v >= GIB / 200)
    per = "process" if est.device == "cpu" else "device"
    extra = "".join(f"; {n}" for n in est.notes)
    return f"({parts} GB per {per}; {est.trainable:,} trainable params{extra})"
