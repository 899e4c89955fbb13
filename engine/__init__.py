"""Trainpad engine: tasks, data, run store, supervisor, worker and CLI (no UI code)."""

__version__ = "0.1.0"
