"""Evaluations: a finished run's model or a base model on a test set, as an ``eval`` job (engine.run.jobs) whose
result becomes a row of the evaluations table; LLM-as-judge comparisons; lm-eval benchmarks."""
