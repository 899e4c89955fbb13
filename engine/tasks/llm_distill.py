"""LLM distillation (trl's DistillationTrainer): a smaller student learns a teacher's next-token distribution on the
completions the student itself samples for your prompts (on-policy, generalized Jensen-Shannon divergence).

The teacher is a model folder, a Hub id or a finished run's id; teacher and student must share a vocabulary (the
same tokenizer), checked before launch from their files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from engine.errors import Problem
from engine.llm import data as ld
from engine.llm import model as lm
from engine.llm import rl
from engine.llm.rewards import resolve_model
from engine.params import field
from engine.task import Job, Task


class Params(rl.GenerationParams):
    """Distillation options on top of the shared generation options."""

    teacher_model: str = field(
        "", "The teacher: a model folder, a Hub id, or a finished run's id. It must use the student's tokenizer."
    )
    beta: float = field(
        0.5,
        "Which divergence: 0 = forward KL (student covers the teacher), 1 = reverse KL (mode seeking), 0.5 = JSD.",
        ge=0.0,
        le=1.0,
    )


def tokenizer_fingerprint(model: str) -> tuple[int, str] | None:
    """(vocabulary size, hash of the vocabulary) of a local model's tokenizer.json; None when it is not local."""
    folder = ld.tokenizer_folder(model)
    file = folder / "tokenizer.json" if folder else None
    if file is None or not file.is_file():
        return None
    vocab = (json.loads(file.read_text(encoding="utf-8")).get("model") or {}).get("vocab") or {}
    items = sorted(vocab.items()) if isinstance(vocab, dict) else [tuple(v) for v in vocab]
    return len(items), hashlib.sha256(json.dumps(items).encode()).hexdigest()


def check_data(train: Any, valid: Any, params: Params, runs_dir: Path | None = None) -> list[str]:
    """Prompts, a teacher given, and teacher and student tokenizers the same (when both are local)."""
    found = rl.prompt_problems(train, valid) + rl.vllm_problems(params)
    if not params.teacher_model:
        return [
            *found,
            Problem("Distillation needs a teacher_model (a folder, Hub id or run id).", field="teacher_model"),
        ]
    teacher = resolve_model(params.teacher_model, runs_dir or _runs_dir())
    student_tok, teacher_tok = tokenizer_fingerprint(params.base_model), tokenizer_fingerprint(teacher)
    if student_tok and teacher_tok and student_tok != teacher_tok:
        found.append(
            Problem(
                f"The teacher's tokenizer ({teacher_tok[0]} tokens) differs from the student's ({student_tok[0]}): "
                "distillation compares next-token distributions over one vocabulary. Pick a teacher of the "
                "student's family (same tokenizer).",
                field="teacher_model",
            )
        )
    return found


def _runs_dir() -> Path:
    from engine import settings

    return Path(settings.text("TRAINPAD_DATA_DIR")).expanduser() / "runs"


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForCausalLM
    from trl import DistillationConfig, DistillationTrainer

    from engine.errors import UserError
    from engine.llm import rl_train
    from engine.llm import train as lt
    from engine.train import trainer as tu

    params = job.params
    teacher_path = resolve_model(params.teacher_model, job.run_dir.parent)
    if problems := check_data(job.train, None, params, job.run_dir.parent):
        raise UserError(problems)
    train_ds, valid_ds = rl_train.prompt_datasets(job)
    tok = lm.load_tokenizer(params)
    tok.padding_side = "left"
    teacher = AutoModelForCausalLM.from_pretrained(teacher_path, trust_remote_code=params.trust_remote_code)
    print(f"[trainpad] teacher: {Path(teacher_path).name} ({sum(p.numel() for p in teacher.parameters()):,} "
          "parameters)", flush=True)  # fmt: skip
    args = tu.training_arguments(
        job,
        len(train_ds),
        lt.n_rows(valid_ds),
        DistillationConfig,
        beta=params.beta,
        **rl_train.generation_config(params),
    )
    trainer = DistillationTrainer(
        model=lm.load_causal_lm(params),
        teacher_model=teacher,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tok,
        peft_config=lm.lora_config(params),
    )
    return lt.fit(trainer, job)


EVAL_HOW = (
    "Distillation test data has only prompts: give chat prompts that end with the reference assistant turn, e.g. "
    '[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}].'
)


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Exact / normalized match, ROUGE-L, chrF and perplexity of the greedy answers to the test prompts, against
    each chat prompt's final assistant turn (the test data has no answer column)."""
    from engine.llm import evaluate as le

    return le.evaluate_prompts(model_dir, df, options, EVAL_HOW)


TASK = Task(
    name="llm_distill",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM distillation (teacher → student)",
    family="LLM",
    description="Make a smaller model answer like a bigger one: the student samples answers to your prompts and "
    "learns the teacher's token probabilities on them. Both must share a tokenizer.",
    params=Params,
    columns=rl.PROMPT_COLUMNS[:1],
    check_data=check_data,
    predict_input="chat",
    memory_profile={"length_fields": ("max_length", "max_completion_length"), "teacher_model": "teacher_model"},
    train=train,
    predict=lm.generate,
    evaluate=evaluate,
    key_metric="eval_loss",
    greater_is_better=False,
    suggested_models=["HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"],
    model_note="The student: a causal language model smaller than the teacher, with the teacher's tokenizer.",
    autotrain_names=["llm-distill", "llm:distill"],
)
