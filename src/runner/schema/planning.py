"""The `plan` keys' schema: `task=plan` and `+experiment=auto` (`runner.tasks.plan`), rules as in
`runner.schema.groups`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from .groups import require


@dataclass
class PlanConfig:
    name: Optional[str] = None  # plans/NAME.yaml; None: the dataset folder's name
    output: str = MISSING
    memory_budget: Optional[str] = None  # "8GB"; None: unetlab.planning.probe.default_memory_budget
    time_budget: Optional[str] = None  # "15m"; None: nnU-Net's 1000 epochs x 250 steps
    min_steps: int = MISSING
    optimizer: str = MISSING  # auto, or a key of unetlab.planning.planner.OPTIMIZERS
    probe_steps: int = MISSING

    def __post_init__(self) -> None:
        from unetlab.planning.budget import parse_duration, parse_size

        if self.memory_budget is not None:
            parse_size(self.memory_budget)
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        from unetlab.planning.planner import OPTIMIZERS

        require(self.min_steps >= 0, "plan.min_steps", self.min_steps, ">= 0")
        require(self.optimizer == "auto" or self.optimizer in OPTIMIZERS, "plan.optimizer", self.optimizer,
                f"auto or one of {', '.join(OPTIMIZERS)}")
        require(self.probe_steps >= 1, "plan.probe_steps", self.probe_steps, ">= 1")
        require(not self.name or self.name.replace("-", "").replace("_", "").isalnum(), "plan.name", self.name,
                "letters, digits, - and _ (the file plans/NAME.yaml)")
