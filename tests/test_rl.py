"""The RL tasks: reward presets (math-aware exact_match, format, length), a user's reward file (works locally, refused
on a shared instance), and on tiny models GRPO from the CLI raising its mean reward, RLOO, KTO and distillation
moving the weights the expected way."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from engine.errors import UserError
from engine.llm import rewards
from engine.params import validate_params
from engine.run.policy import Policy, problems
from engine.task import Job, get_task
from tests.tiny import build_tiny_llama

WORDS = "one two three four five six seven eight nine ten".split()


def chat(q: str) -> list[dict]:
    return [{"role": "user", "content": q}]


def sum_prompts(n: int = 100) -> list[dict]:
    return [{"prompt": chat(f"what is {i % 10} plus {i // 10 % 10}?")} for i in range(n)]


@pytest.fixture(scope="session")
def sft_llama(tmp_path_factory) -> Path:
    """A tiny Llama fine-tuned (a few seconds, plain torch) to answer with 1-10 words and end its turn: completions of
    varied lengths, so that a length reward has something to choose between."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path_factory.mktemp("models") / "sft-llama")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    rng = random.Random(0)
    texts = [
        tok.apply_chat_template(
            [*p["prompt"], {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 10)))}],
            tokenize=False,
        )
        for p in sum_prompts(256)
    ]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(80):
        enc = tok(rng.sample(texts, 8), return_tensors="pt", padding=True, add_special_tokens=False)
        model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def quarters(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of ``values``."""
    q = max(1, len(values) // 4)
    return sum(values[:q]) / q, sum(values[-q:]) / q


# ---- presets ------------------------------------------------------------------------------------


def test_exact_match_numbers_and_latex():
    score = rewards.exact_match_reward()
    completions = [
        "The answer is 42.",
        "so it is <answer>1,000</answer>",
        r"We get $\frac{1}{2}$",
        r"\boxed{\sqrt{4}}",
        "It is 41.",
        "whatever",
    ]
    answers = ["42", "1000", "0.5", "2", "42", ""]
    assert score(prompts=[""] * 6, completions=completions, answer=answers) == [1.0, 1.0, 1.0, 1.0, 0.0, None]
    chats = [[{"role": "assistant", "content": r"x = \frac{3}{4}"}]]
    assert score(prompts=[chat("x?")], completions=chats, answer=["0.75"]) == [1.0]
    with pytest.raises(UserError, match="answer"):
        score(prompts=[""], completions=["1"])


def test_format_and_length_presets():
    fmt = rewards.format_reward()
    assert fmt(prompts=["", ""], completions=["<think>hm</think> <answer>4</answer>", "4"]) == [1.0, 0.0]
    assert rewards.format_reward(r"\d+$")(prompts=[""], completions=["it is 12"]) == [1.0]
    length = rewards.length_reward(4)
    assert length(prompts=[""] * 3, completions=["", "", ""], completion_ids=[[1] * 4, [1] * 2, [1] * 9]) == [
        1.0,
        0.5,
        0.0,
    ]
    assert length.__name__ == "length" and fmt.__name__ == "format"


def test_reward_choices_checked_before_launch(tmp_path):
    task = get_task("llm_grpo")
    p = validate_params(task.params, {"reward_functions": ["length", "exact_match"], "reward_weights": [1.0]})
    found = " ".join(rewards.problems(p, {"prompt"}))
    assert "reward_weights has 1 values for 2" in found and "`answer` column" in found
    with pytest.raises(UserError, match="multiple of num_generations"):
        validate_params(task.params, {"batch_size": 6, "num_generations": 4})
    p = validate_params(task.params, {"reward_functions": ["python"], "reward_file": str(tmp_path / "none.py")})
    assert "not a .py file that exists" in " ".join(rewards.problems(p, {"prompt"}))


# ---- a user's reward file -------------------------------------------------------------------------


REWARD_FILE = """
def reward(prompts, completions, answer=None, **kwargs):
    return [float(len(c)) + (100.0 if a == "yes" else 0.0) for c, a in zip(completions, answer)]
"""


def test_python_reward_runs_locally_and_is_refused_when_shared(tmp_path):
    file = tmp_path / "my_reward.py"
    file.write_text(REWARD_FILE)
    task = get_task("llm_grpo")
    p = validate_params(task.params, {"reward_functions": ["python", "length"], "reward_file": str(file)})
    assert rewards.problems(p, {"prompt", "answer"}) == []
    funcs, weights = rewards.build(p)
    assert [f.__name__ for f in funcs] == ["reward", "length"] and weights == [1.0, 1.0]
    assert funcs[0](prompts=["", ""], completions=["ab", "abc"], answer=["no", "yes"]) == [2.0, 103.0]
    uploads = [tmp_path]
    assert problems(Policy(shared=False), p, tmp_path / "runs", uploads) == []
    refused = problems(Policy(shared=True), p, tmp_path / "runs", uploads)
    assert len(refused) == 1 and "refuses it" in refused[0] and refused[0].field == "reward_functions"
    assert problems(Policy(shared=True, allow_remote_code=True), p, tmp_path / "runs", uploads) == []
    wrong = validate_params(task.params, {**p.model_dump(), "reward_function_name": "score"})
    assert "defines no top-level function `score`" in " ".join(rewards.problems(wrong, {"prompt"}))


# ---- training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_length_from_the_cli_raises_the_reward(sft_llama, tmp_path, data_dir):
    """`trainpad run` of a YAML with `reward_functions: [length]` and `target_length`: the mean reward of the last
    quarter of logged steps is above the first quarter's; the run page gets per-function charts and rollouts."""
    from engine.cli import main as cli
    from engine.run.store import Store
    from engine.train import charts

    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sum_prompts()))
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(
        f"task: llm_grpo\nparams:\n  base_model: {sft_llama}\n  data_path: {data}\n  reward_functions: [length]\n"
        "  target_length: 2\n  max_steps: 30\n  batch_size: 8\n  num_generations: 4\n  max_completion_length: 16\n"
        "  learning_rate: 0.005\n  logging_steps: 1\n  valid_fraction: 0\n"
    )
    assert cli(["run", str(cfg)]) == 0
    store = Store(data_dir / "trainpad.db")
    (run,) = store.list_runs()
    reward = [m["value"] for m in store.metrics(run["id"], ["rewards/length/mean"])]
    first, last = quarters(reward)
    print(
        f"GRPO length reward: first quarter {first:.2f}, last quarter {last:.2f}; curve {[round(r, 2) for r in reward]}"
    )
    assert len(reward) == 30 and last > first + 0.3
    assert charts.group(store.metric_names(run["id"]))["reward"][:2] == ["reward", "rewards/length/mean"]
    from ui.runs_view import results

    rollouts = results(Path(run["run_dir"]))["rollouts"]
    assert list(rollouts.columns) == ["step", "prompt", "completion", "length", "advantage"]
    assert len(rollouts) == 8 and rollouts["step"].iloc[0] == 30


def run_in_process(task_name: str, params: dict, rows: list[dict], run_dir: Path) -> list[dict]:
    task = get_task(task_name)
    p = validate_params(task.params, {"data_path": "in-memory", "valid_fraction": 0, "logging_steps": 1, **params})
    run_dir.mkdir(parents=True)
    task.train(Job(task, p, run_dir, pd.DataFrame(rows), None))
    assert (run_dir / "model" / "config.json").exists()
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rloo_raises_the_reward(sft_llama, tmp_path):
    params = {"base_model": str(sft_llama), "reward_functions": ["length"], "target_length": 2, "max_steps": 20}
    params |= {"batch_size": 8, "num_generations": 4, "max_completion_length": 16, "learning_rate": 5e-3}
    events = run_in_process("llm_rloo", params, sum_prompts(), tmp_path / "run")
    first, last = quarters([e["reward"] for e in events if "reward" in e])
    print(f"RLOO length reward: first quarter {first:.2f}, last quarter {last:.2f}")
    assert last > first


def logprob(model_dir: Path, prompt: list[dict], answer: str) -> float:
    """Sum of the answer's token log-probabilities after the chat prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = tok(head + answer, return_tensors="pt", add_special_tokens=False)["input_ids"]
    n = len(tok(head, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logps = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logps[n - 1 :].sum())


@pytest.mark.slow
def test_kto_raises_thumbs_up_over_thumbs_down(sft_llama, tmp_path):
    rows = [
        {"prompt": p["prompt"], "completion": "three" if i % 2 else "ten ten ten", "label": "👍" if i % 2 else "👎"}
        for i, p in enumerate(sum_prompts(64))
    ]
    params = {"base_model": str(sft_llama), "max_steps": 12, "batch_size": 8, "learning_rate": 5e-3, "max_length": 64}
    run_in_process("llm_kto", params, rows, tmp_path / "run")
    q = chat("what is 2 plus 3?")
    before = logprob(sft_llama, q, "three") - logprob(sft_llama, q, "ten ten ten")
    after = logprob(tmp_path / "run" / "model", q, "three") - logprob(tmp_path / "run" / "model", q, "ten ten ten")
    print(f"KTO: log p(up) - log p(down) {before:.2f} -> {after:.2f}")
    assert after > before + 1.0


def kl_to_teacher(teacher: Path, student: Path, texts: list[str]) -> float:
    """Mean per-token KL(teacher || student) on ``texts``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teacher)
    t, s = (AutoModelForCausalLM.from_pretrained(m) for m in (teacher, student))
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        lt, ls = (m(**enc).logits.log_softmax(-1) for m in (t, s))
    kl = (lt.exp() * (lt - ls)).sum(-1)
    return float((kl * enc["attention_mask"]).sum() / enc["attention_mask"].sum())


@pytest.mark.slow
def test_distill_brings_the_student_to_the_teacher(sft_llama, tmp_path):
    student = build_tiny_llama(tmp_path / "student")  # same tokenizer, fresh weights
    task = get_task("llm_distill")
    p = validate_params(task.params, {"base_model": str(student), "teacher_model": str(sft_llama)})
    assert task.check_data(pd.DataFrame(sum_prompts(4)), None, p) == []
    other = build_tiny_llama(tmp_path / "other-vocab", vocab_size=300)
    mismatch = validate_params(task.params, {"base_model": str(student), "teacher_model": str(other)})
    assert "differs from the student's" in " ".join(task.check_data(pd.DataFrame(sum_prompts(4)), None, mismatch))
    params = {"base_model": str(student), "teacher_model": str(sft_llama), "max_steps": 15, "batch_size": 8}
    params |= {"max_completion_length": 12, "learning_rate": 5e-3, "beta": 0.0, "use_lora": False}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sft_llama)
    texts = [tok.apply_chat_template([*chat(f"what is {i} plus 1?"), {"role": "assistant", "content": "four five"}],
                                     tokenize=False) for i in range(8)]  # fmt: skip
    before = kl_to_teacher(sft_llama, student, texts)
    run_in_process("llm_distill", params, sum_prompts(), tmp_path / "run")
    after = kl_to_teacher(sft_llama, tmp_path / "run" / "model", texts)
    print(f"distillation: KL(teacher || student) {before:.3f} -> {after:.3f}")
    assert after < before * 0.8
