"""Side-by-side votes: a user's "which answer is better" judgments, kept as preference rows (one JSON line each in
``<data-dir>/preferences/<user>.jsonl``) and exported as DPO pairs or KTO thumbs, so that the user's own judgments
become training data (llm_dpo / llm_kto take these files as they are). Also the folder that lets a base model
answer in the Playground like a run does."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine.errors import UserError

VOTES = ("A", "B", "tie")
_LOCK = threading.Lock()


def votes_file(data_dir: Path, user: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user) or "local"
    return data_dir / "preferences" / f"{safe}.jsonl"


def save_vote(path: Path, prompt: Any, answer_a: str, answer_b: str, vote: str, models: tuple[str, str]) -> dict:
    """Append one preference row; UserError when there is nothing to compare yet."""
    if vote not in VOTES:
        raise UserError(f"A vote is one of {', '.join(VOTES)}; got `{vote}`.")
    if not prompt or not (str(answer_a).strip() or str(answer_b).strip()):
        raise UserError("Ask both models first: there are no two answers to vote on yet.")
    row = {"time": time.time(), "prompt": prompt, "answer_a": answer_a, "answer_b": answer_b, "vote": vote}
    row |= {"model_a": models[0], "model_b": models[1]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row


def read_votes(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def as_dpo(votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """{prompt, chosen, rejected} per decided vote (ties say nothing about which is better)."""
    out = []
    for v in votes:
        if v["vote"] in ("A", "B"):
            win, lose = (v["answer_a"], v["answer_b"]) if v["vote"] == "A" else (v["answer_b"], v["answer_a"])
            out.append({"prompt": v["prompt"], "chosen": win, "rejected": lose})
    return out


def as_kto(votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """{prompt, completion, label}: the preferred answer True, the other False (a tie: both True)."""
    out = []
    for v in votes:
        for side in ("a", "b"):
            good = v["vote"] == "tie" or v["vote"] == side.upper()
            out.append({"prompt": v["prompt"], "completion": v[f"answer_{side}"], "label": good})
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    if not rows:
        raise UserError("No votes to export yet: vote on a few side-by-side answers first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def base_model_home(data_dir: Path, model_dir: str | Path, task: str) -> Path:
    """A folder that predicts like a run's (config.yaml + model/) for a base model folder, made once."""
    model_dir = Path(model_dir).expanduser().resolve()
    if not (model_dir / "config.json").exists() and not (model_dir / "adapter_config.json").exists():
        raise UserError(f"`{model_dir.name}` is not a model folder (no config.json).")
    home = data_dir / "evals" / "base-models" / hashlib.sha256(f"{model_dir}|{task}".encode()).hexdigest()[:16]
    if not (home / rf.CONFIG).exists():
        home.mkdir(parents=True, exist_ok=True)
        link = home / rf.MODEL_DIR
        if not link.exists():
            link.symlink_to(model_dir, target_is_directory=True)
        config = {"task": task, "name": model_dir.name, "params": {"base_model": str(model_dir)}}
        (home / rf.CONFIG).write_text(yaml.safe_dump(config))
    return home
