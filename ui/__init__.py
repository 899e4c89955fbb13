"""Trainpad's Gradio UI: forms generated from the task registry, the runs page, the playground."""
