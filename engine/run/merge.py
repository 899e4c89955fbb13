"""Merge a finished run's LoRA adapter into its base model, as a separate job (never in the UI process).

``python -m engine.run.merge RUN_DIR`` writes a standalone model to ``RUN_DIR/merged/`` (loadable with
``AutoModelForCausalLM``, or ``AutoModelForSequenceClassification`` for a reward model) and prints one
JSON line ``{"output": "<merged dir>"}`` or ``{"error": ...}``. The run's ``model/`` and ``adapter/``
folders are left as they are, so the playground and resume keep working. The base model is loaded
in full precision, so an adapter trained on a 4-/8-bit (QLoRA) base merges without quantization loss.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine import runfiles as rf
from engine.errors import UserError

MERGED_DIR = "merged"


def adapter_of(run_dir: Path) -> Path:
    """The run's LoRA adapter folder: ``adapter/`` (kept by every LoRA run) or an adapter-only ``model/``."""
    for folder in (run_dir / "adapter", run_dir / rf.MODEL_DIR):
        if (folder / "adapter_config.json").exists():
            return folder
    raise UserError(
        f"Run folder `{run_dir.name}` has no LoRA adapter to merge: it was trained without LoRA "
        "(its model/ is already a standalone model), or its files were removed."
    )


def merge_run(run_dir: str | Path) -> Path:
    """Merge the run's adapter into its base model; return ``run_dir/merged``."""
    import yaml

    from engine.llm.model import merge_adapter

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / rf.CONFIG).read_text()) if (run_dir / rf.CONFIG).exists() else {}
    trust = bool(((config or {}).get("params") or {}).get("trust_remote_code", False))
    out = merge_adapter(adapter_of(run_dir), run_dir / MERGED_DIR, trust_remote_code=trust)
    print(f"[trainpad] merged adapter into a standalone model: {out}", flush=True)
    return out


def merge_in_subprocess(run_dir: str | Path, timeout: float = 1800) -> Path:
    """Run the merge as a worker process (the caller never imports torch); raises UserError on failure."""
    from engine.run.procs import run_engine_module

    adapter_of(Path(run_dir))  # fail fast, in plain words, before starting a process
    return Path(run_engine_module("engine.run.merge", run_dir, timeout=timeout, what="Merging the adapter"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.run.merge RUN_DIR", file=sys.stderr)
        return 2
    try:
        print(json.dumps({"output": str(merge_run(Path(argv[0]).resolve()))}))
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the caller as JSON
        print(json.dumps({"error": str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"}))
        return 1


if __name__ == "__main__":
    sys.exit(main())
