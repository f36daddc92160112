"""Tasks, selected by the `task` key; each takes the composed config and returns its result."""

from .train import train

TASKS = {"train": train}

__all__ = ["TASKS", "train"]
