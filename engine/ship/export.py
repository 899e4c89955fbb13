"""An export job: a finished run's model as GGUF (LLM tasks) or ONNX (encoder tasks), in its own process.

``python -m engine.ship.export JOB_DIR`` reads ``job.json`` ({"run_dir", "format", "quant", "int8"}), writes the
files to ``RUN_DIR/exports/<format>-<quant>/`` and reports through the job's files (``engine.run.jobs``):
``progress.json`` while it works, ``result.json`` ({"path", "format", "bytes", "sha256", "files", ...}) or
``error.json`` at the end.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine.errors import UserError
from engine.run import jobs
from engine.ship import gguf, onnx, tools
from engine.task import get_task

FORMATS = ("gguf", "onnx")


def formats_for(task_name: str) -> dict[str, str]:
    """{format: "" when this run's task can export it, else why not (with the install line when that is all)}."""
    task = get_task(task_name)
    out = {}
    if task.model_kind == "causal":
        out["gguf"] = tools.missing("gguf")
    else:
        out["gguf"] = f"GGUF is for the LLM tasks' language models; a {task.title} model is not one."
    if onnx.supports(task.hub_pipeline) and task.model_kind in ("text", "vision"):
        out["onnx"] = tools.missing("onnx")
    else:
        out["onnx"] = f"ONNX export covers the encoder tasks; {task.title} is not one of them."
    return out


def check_request(task_name: str, fmt: str, quant: str = "") -> None:
    """UserError (plain words) when ``fmt`` / ``quant`` cannot be exported for this task here."""
    if fmt not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}; got `{fmt}`.")
    if why := formats_for(task_name)[fmt]:
        raise UserError(why)
    if fmt == "gguf" and quant and quant not in gguf.QUANTS:
        raise UserError(f"quant must be one of {', '.join(gguf.QUANTS)} for GGUF; got `{quant}`.")


def run_export(job_dir: Path) -> dict[str, Any]:
    spec = rf.read_json(job_dir / jobs.JOB_FILE) or {}
    run_dir = Path(spec["run_dir"])
    config = yaml.safe_load((run_dir / rf.CONFIG).read_text()) or {}
    task = get_task(config["task"])
    fmt, quant = spec["format"], spec.get("quant") or ("f16" if spec["format"] == "gguf" else "")
    check_request(task.name, fmt, quant)
    model_dir = standalone_model(run_dir, job_dir)
    out_dir = run_dir / "exports" / (f"{fmt}-{quant}" if quant else fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = (config.get("name") or run_dir.name).replace("/", "_").replace(" ", "_")
    started = time.time()
    if fmt == "gguf":
        result = _gguf(model_dir, out_dir, name, quant, job_dir, config)
    else:
        result = _onnx(model_dir, out_dir, task.hub_pipeline or "", bool(spec.get("int8")), job_dir)
    path = Path(result["path"])
    result |= {"format": fmt, "quant": quant, "bytes": path.stat().st_size, "sha256": sha256(path)}
    result |= {"seconds": round(time.time() - started, 2), "run_id": spec.get("run_id")}
    result["files"] = [{"path": str(p), "bytes": p.stat().st_size} for p in sorted(out_dir.iterdir()) if p.is_file()]
    return result


def push(result: dict[str, Any], repo_id: str, token: str, private: bool = True) -> str:
    """Upload an export's folder (the file, and for GGUF its Modelfile) to a model repository with a card whose
    metadata says what it holds (``library_name: gguf`` / ``onnx``, tags), as the Hub lists such repositories.
    Runs in the process that holds the token (the CLI), never in the job; returns the repository id."""
    from huggingface_hub import HfApi

    if not token:
        raise UserError("Pushing an export needs a Hugging Face write token: set HF_TOKEN (or `hf auth login`).")
    folder = Path(result["path"]).parent
    fmt = result.get("format") or ("gguf" if folder.name.startswith("gguf") else "onnx")
    meta = {"library_name": fmt, "tags": ["trainpad", fmt, *([result["quant"]] if result.get("quant") else [])]}
    card = "\n".join(
        [
            "---",
            yaml.safe_dump(meta, sort_keys=False).strip(),
            "---",
            "",
            f"# {Path(result['path']).name}",
            "",
            f"{fmt.upper()} export of a Trainpad run ({result.get('quant') or 'full precision'}); "
            f"sha256 `{result.get('sha256', '')}`.",
            *(["", f"Ollama: `{result['ollama']}`"] if result.get("ollama") else []),
            "",
        ]
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    api = HfApi(token=token, endpoint=os.environ.get("HF_ENDPOINT") or None)  # as set now, not at import
    repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message=f"Trainpad {fmt} export")
    return repo


def standalone_model(run_dir: Path, job_dir: Path) -> Path:
    """The run's model as a standalone folder: model/, or (a LoRA run kept as an adapter) merged/ made now."""
    model_dir = run_dir / rf.MODEL_DIR
    if not model_dir.exists():
        raise UserError(f"Run folder `{run_dir.name}` has no model/ folder to export.")
    if not (model_dir / "adapter_config.json").exists():
        return model_dir
    from engine.run.merge import MERGED_DIR, merge_run

    if (run_dir / MERGED_DIR / "config.json").exists():
        return run_dir / MERGED_DIR
    say(job_dir, 0.05, "merging the LoRA adapter into its base model")
    return merge_run(run_dir)


def _gguf(model_dir: Path, out_dir: Path, name: str, quant: str, job_dir: Path, config: dict) -> dict[str, Any]:
    say(job_dir, 0.1, f"converting to GGUF ({quant}) with llama.cpp's converter")
    out = out_dir / f"{name}-{quant}.gguf"
    with open(job_dir / jobs.LOG, "a") as log:
        gguf.convert(model_dir, out, quant, log)
    say(job_dir, 0.9, "writing the Ollama Modelfile")
    num_ctx = (config.get("params") or {}).get("max_length")
    (out_dir / "Modelfile").write_text(gguf.modelfile(out.name, model_dir, num_ctx), encoding="utf-8")
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())
    return {"path": str(out), "modelfile": str(out_dir / "Modelfile"), "ollama": f"ollama create {tag} -f Modelfile"}


def _onnx(model_dir: Path, out_dir: Path, pipeline: str, int8: bool, job_dir: Path) -> dict[str, Any]:
    say(job_dir, 0.1, "exporting to ONNX and checking it against torch with onnxruntime")
    out = out_dir / "model.onnx"
    report = onnx.export(model_dir, out, pipeline, int8=int8)
    for extra in model_dir.iterdir():  # the tokenizer / image processor and config travel with the graph
        if extra.suffix in (".json", ".txt", ".model") and extra.name != "trainer_state.json":
            (out_dir / extra.name).write_bytes(extra.read_bytes())
    return {"path": str(out), **report}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


say = jobs.say


def main(argv: list[str] | None = None) -> int:
    return jobs.job_main(argv, run_export, "export", lambda r: f"done: {r['path']} ({r['bytes']:,} bytes)")


if __name__ == "__main__":
    sys.exit(main())
