"""Checks before launch that are not about the data: the base model (models), one reader of a model's JSON files (model_files), the memory estimate (memory) and the machine's devices (system)."""
