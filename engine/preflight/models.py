"""Settle the base model before launch: a missing folder, a folder that is not a model, a Hub id that cannot
be reached from here, and a model class that does not fit the task each become one plain problem beside the
`base_model` field, instead of a transformers traceback seconds into the run.

What a task accepts is decided by naming rules on the task's name (like ``engine.train.charts``): a new task gets
the right check without a UI change. Nothing here imports torch or transformers; the network is asked only
when the Hub is online, with a short timeout, and the answer is remembered for a while.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from engine.data.tables import names_local_path
from engine.errors import Problem
from engine.runfiles import read_json

FIELD = "base_model"
HUB_HOST, HUB_PORT = "huggingface.co", 443
TIMEOUT_S = 1.5  # how long Check waits for the Hub, at most
REMEMBER_S = 300.0  # how long a Hub answer (reachable or not, a repo's config) is reused

KIND_WORDS = {
    "causal": "a causal language model (…ForCausalLM, e.g. Llama, Qwen, SmolLM, GPT-2)",
    "seq2seq": "an encoder-decoder model (…ForConditionalGeneration, e.g. T5, BART)",
    "vision": "an image model (e.g. ViT, ConvNeXt, DETR)",
    "speech": "a speech model (e.g. Whisper, wav2vec2)",
    "text": "a text model (e.g. BERT, RoBERTa, DeBERTa, or a causal LM)",
    "encoder": "an encoder-only text model (e.g. BERT)",
    "vlm": "a vision-language model (e.g. SmolVLM, Idefics3, LLaVA, Qwen2-VL)",
}
# what each needed kind accepts among the kinds a config can have
FITS = {
    "causal": {"causal"},
    "seq2seq": {"seq2seq"},
    "vision": {"vision"},
    "speech": {"speech"},
    "text": {"encoder", "causal", "seq2seq"},
    "vlm": {"causal"},  # a VLM's own config names no kind above (…ForConditionalGeneration): it is not refused
}
VISION_TYPES = {
    "vit", "deit", "beit", "convnext", "convnextv2", "swin", "swinv2", "resnet", "efficientnet", "mobilenet_v1",
    "mobilenet_v2", "mobilevit", "mobilevitv2", "regnet", "dinov2", "detr", "conditional_detr", "deformable_detr",
    "yolos", "rt_detr", "rt_detr_v2", "table-transformer", "levit", "poolformer", "segformer", "focalnet", "hiera",
    "vit_msn", "vit_mae", "bit", "cvt", "van", "dinat", "clip_vision_model", "siglip_vision_model", "d_fine",
}  # fmt: skip
SPEECH_TYPES = {
    "whisper", "wav2vec2", "wav2vec2-bert", "wav2vec2-conformer", "hubert", "wavlm", "speech_to_text",
    "data2vec-audio", "sew", "sew-d", "unispeech", "unispeech-sat", "moonshine",
}  # fmt: skip
ENCODER_TYPES = {
    "bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "xlm-roberta", "xlm-roberta-xl",
    "camembert", "mpnet", "modernbert", "xlm", "funnel", "ernie", "nomic_bert", "mobilebert", "squeezebert",
    "convbert", "rembert", "longformer", "big_bird", "canine", "esm", "data2vec-text", "luke", "megatron-bert",
    "ibert", "nystromformer", "yoso", "layoutlm", "flaubert", "mra", "roformer", "eurobert", "neobert",
}  # fmt: skip
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

_hub_up: tuple[float, bool] | None = None
_pool: Any = None
_hub_configs: dict[str, tuple[float, dict[str, Any] | None]] = {}


def model_kind(config: dict[str, Any]) -> str | None:
    """causal | seq2seq | encoder | vision | speech, read from a config.json; None when it cannot be told."""
    model_type = str(config.get("model_type") or "")
    archs = [str(a) for a in config.get("architectures") or []]
    if model_type in VISION_TYPES:
        return "vision"
    if model_type in SPEECH_TYPES:
        return "speech"
    if config.get("is_encoder_decoder"):
        return "seq2seq"
    if model_type in ENCODER_TYPES:
        return "encoder"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    return None


def base_model_problems(task: Any, base_model: str, token: str | None = None) -> list[str]:
    """Every problem with ``base_model`` for ``task`` (a :class:`Task`), each a ``Problem`` about the
    ``base_model`` field; [] when it is fine or cannot be told without waiting on the network."""
    name = str(base_model or "").strip()
    kind = task.model_kind
    if not name or kind is None:
        return []
    if names_local_path(name):
        return _folder_problems(Path(name).expanduser(), name, kind)
    if not HUB_ID.match(name):
        return [
            _problem(
                f"Base model `{name}` is neither a folder on this machine nor a Hub model id (`owner/name`). "
                "Fix the path, or type an id such as `HuggingFaceTB/SmolLM2-135M`."
            )
        ]
    return _hub_problems(name, kind, token)


def check_params(task: Any, params: Any, token: str | None = None) -> list[str]:
    """:func:`base_model_problems` for validated params (for ``trainpad validate`` and ``Supervisor.submit``)."""
    return base_model_problems(task, getattr(params, FIELD, ""), token)


def _problem(text: str) -> Problem:
    return Problem(text, field=FIELD)


def _folder_problems(folder: Path, name: str, kind: str) -> list[str]:
    if not folder.exists():
        return [_problem(f"Base model folder `{name}` does not exist. Fix the path, or pick a folder in the list.")]
    if not folder.is_dir():
        return [_problem(f"Base model `{name}` is a file; pick the folder that holds `config.json` and the weights.")]
    if (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        return []  # a LoRA adapter: its base model is named inside and checked by the worker
    config = read_json(folder / "config.json")
    if config is None:
        return [
            _problem(
                f"Folder `{name}` is not a model: it has no `config.json`. Pick the folder that holds "
                "`config.json` and the weights (a saved model, or a run's `model/` folder)."
            )
        ]
    return _config_problems(config, name) or _fit_problems(config, name, kind) or _file_problems(folder, name, kind)


# Files a task of each kind loads from the model folder besides config.json and the weights (any one of each
# group): what makes a folder loadable, beyond a config. Speech tasks build a missing feature extractor and CTC
# vocabulary themselves.
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "vision": (("preprocessor_config.json", "processor_config.json"), "image processor (preprocessor_config.json)"),
    "vlm": (("processor_config.json", "preprocessor_config.json"), "processor (processor_config.json)"),
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
)
for _kind in ("causal", "seq2seq", "text", "vlm"):
    NEEDS.setdefault(_kind, (TOKENIZER_FILES, "tokenizer (tokenizer.json or tokenizer_config.json)"))


def _config_problems(config: dict[str, Any], name: str) -> list[str]:
    """A config.json that names no model type transformers knows (and no code of its own)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type.strip():
        return [
            _problem(
                f"Folder `{name}` has a `config.json` that is not a model's (it names no `model_type`). Pick the "
                "folder of a saved model (a run's `model/` folder, or a model downloaded from the Hub)."
            )
        ]
    known = known_model_types()
    if known is not None and model_type not in known and not config.get("auto_map"):
        return [
            _problem(
                f"Folder `{name}`: `config.json` names model_type `{model_type[:60]}`, which this version of "
                "transformers does not know. Pick a model of a supported architecture, or upgrade transformers."
            )
        ]
    return []


def _file_problems(folder: Path, name: str, kind: str) -> list[str]:
    """A model folder without the processor/tokenizer files the task loads with the model."""
    files, what = NEEDS.get(kind, ((), ""))
    needed = (TOKENIZER_FILES,) if kind == "vlm" else ()
    for group, words in [(files, what), *((g, NEEDS["text"][1]) for g in needed)]:
        if group and not any((folder / f).is_file() for f in group):
            return [_problem(f"Folder `{name}` has no {words}: the task loads it with the model. Save it there too.")]
    return []


@functools.cache
def known_model_types() -> frozenset[str] | None:
    """The model types the installed transformers knows, read from its source files (nothing is imported: the UI
    never imports transformers); None when they cannot be read."""
    import importlib.util

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.origin:
        return None
    auto = Path(spec.origin).parent / "models" / "auto"
    names = {p.name for p in (Path(spec.origin).parent / "models").iterdir() if p.is_dir()}
    text = "".join(
        f.read_text(encoding="utf-8") for f in auto.glob("*.py") if "mapping" in f.name or "config" in f.name
    )
    quoted = set(re.findall(r'"([\w.-]+)"', text))
    return frozenset(quoted | names | {n.replace("_", "-") for n in names}) or None


def _fit_problems(config: dict[str, Any], name: str, kind: str) -> list[str]:
    found = model_kind(config)
    if found is None or found in FITS[kind]:
        return []
    arch = ", ".join(config.get("architectures") or []) or config.get("model_type") or "?"
    return [
        _problem(
            f"Base model `{name}` is {KIND_WORDS[found]} ({arch}); this task needs {KIND_WORDS[kind]}. "
            "Pick a model of that kind (see the suggestions in the list)."
        )
    ]


# --- the Hub ----------------------------------------------------------------------------------


def hub_offline() -> bool:
    """True when the Hub is switched off (HF_HUB_OFFLINE) or did not answer within the timeout lately."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_reachable()


def _hub_reachable() -> bool:
    global _hub_up
    if _hub_up and time.time() - _hub_up[0] < REMEMBER_S:
        return _hub_up[1]
    try:  # in a thread: name resolution is not bounded by the socket timeout
        up = bool(_background(_connects, _hub_host()).result(timeout=TIMEOUT_S + 0.5))
    except Exception:
        up = False
    _hub_up = (time.time(), up)
    return up


def _connects(host: str) -> bool:
    try:
        socket.create_connection((host, HUB_PORT), timeout=TIMEOUT_S).close()
        return True
    except OSError:
        return False


def _background(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` started in the module's worker threads (a future)."""
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hub")
    return _pool.submit(fn, *args)


def _hub_host() -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "")
    return re.sub(r"^https?://", "", endpoint).split("/")[0].split(":")[0] if endpoint else HUB_HOST


def _cached_config(repo_id: str) -> dict[str, Any] | None:
    """The repo's config.json from the local Hugging Face cache, if it was downloaded before."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return None
    return read_json(Path(path)) if isinstance(path, str) else None


def _hub_problems(repo_id: str, kind: str, token: str | None) -> list[str]:
    config = _cached_config(repo_id)
    if config is not None:
        return _fit_problems(config, repo_id, kind)
    if hub_offline():
        return [
            _problem(
                f"Base model `{repo_id}` is a Hub id, but the Hub cannot be reached from here (offline) and the "
                "model is not in the local Hugging Face cache. It works online; offline, download it once or pick "
                "a local model folder."
            )
        ]
    found, config = _hub_config(repo_id, token)
    if not found:
        return [
            _problem(
                f"There is no model `{repo_id}` on the Hugging Face Hub (or it is private/gated and needs a token). "
                "Check the id's spelling, or give an access token."
            )
        ]
    return _fit_problems(config, repo_id, kind) if config else []


def _hub_config(repo_id: str, token: str | None) -> tuple[bool, dict[str, Any] | None]:
    """(the repo exists, its config as the Hub reports it); a network error counts as existing (unknown)."""
    now = time.time()
    if repo_id in _hub_configs and now - _hub_configs[repo_id][0] < REMEMBER_S:
        config = _hub_configs[repo_id][1]
        return config is not None, config or None
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError

        info = HfApi(token=token or None).model_info(repo_id, timeout=TIMEOUT_S * 2)
    except RepositoryNotFoundError:
        _hub_configs[repo_id] = (now, None)
        return False, None
    except Exception:
        return True, None  # slow or flaky network: the worker will tell
    config = dict(getattr(info, "config", None) or {})
    _hub_configs[repo_id] = (now, config)
    return True, config


# --- suggestions from the Hub (online only) ---------------------------------------------------

_hub_lists: dict[str, tuple[float, list[str]]] = {}


def hub_suggestions(task: Any, limit: int = 10) -> list[str]:
    """The Hub's most downloaded models for the task's pipeline tag (remembered for a while); [] at once when
    offline, and [] when the Hub does not answer within the timeout (the answer is kept for the next call)."""
    tag = task.hub_pipeline
    if tag is None or hub_offline():
        return []
    cached = _hub_lists.get(tag)
    if cached and time.time() - cached[0] < REMEMBER_S * 12:
        return cached[1]
    try:
        return _background(_list_models, tag, limit).result(timeout=TIMEOUT_S * 2)
    except Exception:
        return []


def _list_models(tag: str, limit: int) -> list[str]:
    from huggingface_hub import HfApi

    names = [m.id for m in HfApi().list_models(pipeline_tag=tag, sort="downloads", limit=limit)]
    _hub_lists[tag] = (time.time(), names)
    return names


# --- experiment trackers (the `report_to` parameter) -------------------------------------------

TRACKER_MODULES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "trackio": ("trackio",),
}


def tracker_installed(name: str) -> bool:
    """Whether the tracker ``report_to`` names can be used here (its package is installed); nothing imported."""
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in TRACKER_MODULES.get(name, ()))


def tracker_problems(params: Any) -> list[str]:
    """A problem beside `report_to` when the chosen tracker is not installed (Check says so before launch)."""
    name = str(getattr(params, "report_to", None) or "none")
    if name == "none" or tracker_installed(name):
        return []
    package = TRACKER_MODULES.get(name, (name,))[0]
    return [
        Problem(
            f"`report_to` is {name}, but {package} is not installed here. Install it (pip install {package}) "
            "or choose none.",
            field="report_to",
        )
    ]
