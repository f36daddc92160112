"""Tasks, selected by the `task` key: each takes the typed `Config` and returns its result.

A task reads top to bottom like a recipe; the steps tasks share live in `runner.builders`,
so no task imports another. A task's module is imported only when it runs, so `--help`
and config errors answer without loading TensorFlow or MLflow.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

from ..schema import Config, Task


def task_function(task: Task) -> Callable[[Config], Any]:
    """The function that runs `task`: `runner.tasks.<task>.<task>`."""
    return getattr(import_module(f"{__name__}.{task.value}"), task.value)
