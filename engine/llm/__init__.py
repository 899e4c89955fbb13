"""The LLM family's helpers: chat data and templates (data), loading, LoRA and generation (model), trl trainers and callbacks (train)."""
