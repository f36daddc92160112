"""Tasks, selected by the `task` key; each takes the composed config and returns its result."""

from .evaluate import evaluate
from .export import export
from .predict import predict
from .train import train

TASKS = {"train": train, "evaluate": evaluate, "predict": predict, "export": export}

__all__ = ["TASKS", "evaluate", "export", "predict", "train"]
