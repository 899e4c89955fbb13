"""One reader of a model's JSON files (config.json, processor and tokenizer configs), local folder or Hub repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.runfiles import read_json


def model_file(base_model: str, name: str) -> dict[str, Any]:
    """A JSON file of the model (local folder, or a Hub model in the cache); {} when not available here."""
    if not base_model:
        return {}
    local = Path(base_model).expanduser()
    path: Any = local / name if local.is_dir() else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(base_model, name)
        except Exception:  # noqa: BLE001 - an odd id only means "not cached"
            return {}
    return (read_json(path) or {}) if isinstance(path, (str, Path)) else {}
