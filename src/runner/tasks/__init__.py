"""Tasks, selected by the `task` key; each takes the composed config and returns its result."""

from .check_data import check_data
from .evaluate import evaluate
from .export import export
from .predict import predict
from .preview import preview
from .train import train

TASKS = {"train": train, "evaluate": evaluate, "predict": predict, "export": export, "check_data": check_data,
         "preview": preview}

__all__ = ["TASKS", "check_data", "evaluate", "export", "predict", "preview", "train"]
