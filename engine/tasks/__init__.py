"""One module per task; the registry in engine.task lists them."""
