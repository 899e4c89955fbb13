"""Prediction with a finished run's model, in-process (CLI) or in a subprocess (UI playground).

``python -m engine.run.predict RUN_DIR`` reads one JSON value (the inputs) on stdin and prints one JSON
object ``{"output": ...}`` or ``{"error": ...}`` on its last stdout line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine.errors import UserError


def run_dir_of(run_id: str, data_dir: str | Path | None = None) -> Path:
    from engine.run.procs import data_dir_from_env
    from engine.run.store import Store

    row = Store(data_dir_from_env(data_dir) / "trainpad.db").get_run(run_id)
    if row is None:
        raise UserError(f"No run with id `{run_id}`. See `trainpad runs`.")
    if row["status"] != "succeeded":
        raise UserError(f"Run `{run_id}` is {row['status']}; only succeeded runs have a model to predict with.")
    return Path(row["run_dir"])


def predict_dir(run_dir: Path, inputs: Any) -> Any:
    """Run the task's ``predict`` on the run's saved model (imports the heavy libraries)."""
    from engine.task import get_task

    task = get_task((yaml.safe_load((run_dir / rf.CONFIG).read_text()) or {})["task"])
    model_dir = run_dir / rf.MODEL_DIR
    if not model_dir.exists():
        raise UserError(f"Run folder `{run_dir}` has no model/ folder.")
    return task.predict(model_dir, inputs)


def predict_run(run_id: str, inputs: Any, data_dir: str | Path | None = None) -> Any:
    return predict_dir(run_dir_of(run_id, data_dir), inputs)


def predict_in_subprocess(run_dir: str | Path, inputs: Any, timeout: float = 600) -> Any:
    """Predict in a separate process so the caller (the UI) never imports torch; raises UserError on failure."""
    from engine.run.procs import run_engine_module

    return run_engine_module("engine.run.predict", run_dir, inputs, timeout=timeout, what="Prediction")


def main() -> int:
    run_dir = Path(sys.argv[1])
    try:
        out = predict_dir(run_dir, json.loads(sys.stdin.read() or "null"))
        print(json.dumps({"output": out}, default=_jsonable))
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the caller as JSON
        print(json.dumps({"error": f"{type(e).__name__}: {e}" if not isinstance(e, UserError) else str(e)}))
        return 1


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict(orient="records") if "orient" in obj.to_dict.__code__.co_varnames else obj.to_dict()
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
