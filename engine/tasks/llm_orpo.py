"""LLM preference tuning with ORPO (trl.experimental.orpo): SFT and preference in one loss, no reference model.

ORPO moved to ``trl.experimental.orpo`` in trl 1.x; its trainer tokenizes plain text itself and renders
chats with the tokenizer's chat template (the one chosen in ``chat_template``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine import llm_utils as lu
from engine.params import field
from engine.task import Task


class Params(lu.PreferenceParams):
    """ORPO options on top of the shared LLM and preference options."""

    beta: float = field(
        0.1,
        "Weight of the odds-ratio (preference) term beside the SFT loss on chosen answers (λ in the paper).",
        gt=0.0,
        le=10.0,
    )


def train(params: Params, run_dir: Path) -> dict[str, float]:
    import warnings

    from engine import train_utils as tu

    with warnings.catch_warnings():  # "experimental" warning: we pin the trl version range
        warnings.simplefilter("ignore")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    train_ds, valid_ds = lu.preference_datasets("llm_orpo", params)
    has_eval = valid_ds is not None
    tok = lu.load_tokenizer(params)
    model = lu.load_causal_lm(params)
    lu.ready_to_train()

    class ORPO(ORPOTrainer):
        """ORPOTrainer that also honours max_prompt_length (keeps the prompt's end) and max_completion_length."""

        def tokenize_row(self, feature, model=None):  # noqa: ANN001
            feature = dict(feature)
            feature["prompt"] = lu.truncate_text(tok, feature["prompt"], params.max_prompt_length, keep_end=True)
            for key in ("chosen", "rejected"):
                feature[key] = lu.truncate_text(tok, feature[key], params.max_completion_length)
            return super().tokenize_row(feature, model)

    args = tu.training_arguments(
        params,
        run_dir,
        n_train=len(train_ds),
        has_eval=has_eval,
        args_cls=ORPOConfig,
        metric="rewards/accuracies",
        greater_is_better=True,
        beta=params.beta,
        max_length=params.max_length,
        dataset_num_proc=None,
        remove_unused_columns=False,
    )
    trainer = ORPO(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tok,
        peft_config=lu.lora_config(params),
    )
    lu.add_callbacks(trainer, params, run_dir, has_eval, tokens_per_sample=_tokens_per_pair(trainer.train_dataset))
    return lu.fit(trainer, params, run_dir, has_eval)


def _tokens_per_pair(dataset: Any) -> float:
    """Mean tokens in one training example (chosen + rejected sequences), for the tokens/s figure."""
    n = len(dataset)
    chosen, rejected = dataset["chosen_input_ids"], dataset["rejected_input_ids"]
    return sum(len(c) + len(r) for c, r in zip(chosen, rejected, strict=True)) / max(1, n)


def predict(model_dir: Path, inputs: Any) -> str:
    """Generate a reply for a prompt string or a chat (list of messages)."""
    return lu.generate(model_dir, inputs)


TASK = Task(
    name="llm_orpo",
    title="LLM preference tuning (ORPO)",
    family="LLM",
    description="Fine-tune and preference-tune in one step (Odds Ratio Preference Optimization, no reference "
    "model): rows of prompt, chosen and rejected answers.",
    params=Params,
    columns=lu.PREFERENCE_COLUMNS,
    train=train,
    predict=predict,
    key_metric="eval_rewards/accuracies",
    greater_is_better=True,
    model_note="A causal language model (base or chat); ORPO also teaches the chosen answers directly.",
    check_data=lu.check_preferences,
    predict_input="chat",
    autotrain_columns={"prompt_text_column": "prompt", "text_column": "chosen", "rejected_text_column": "rejected"},
    data_summary=lu.data_summary,
    autotrain_names=["llm-orpo", "llm:orpo"],
)
