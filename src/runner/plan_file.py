"""A plan (`unetlab.planning.Plan`) as an ordinary Hydra experiment: `plans/NAME.yaml`, a `@package _global_`
patch with each value's reason beside it, selected as `+experiment=plans/NAME` (and edited like any preset)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from unetlab.errors import ConfigError

from .schema import Config, NNUNetDataConfig
from .settings import plain

GROUP = "plans"  # +experiment=plans/NAME
# data=folder's keys that say where its data is and how to read it (data=isbi2012's root resolved into images/masks)
FOLDER_DATA_KEYS = ("images", "masks", "val_images", "val_masks", "channels", "num_classes", "ignore_index",
                    "palette", "invert_masks", "objects")


@dataclass
class PlanFile:
    """The experiment's group choices and values, each value with its reason, and header lines."""

    choices: dict[str, str]
    values: dict[str, dict[str, tuple]] = field(default_factory=dict)  # section -> key -> (value, reason)
    header: list[str] = field(default_factory=list)

    def set(self, section: str, key: str, value, reason: str = "") -> None:
        self.values.setdefault(section, {})[key] = (value, reason)

    def text(self) -> str:
        """The YAML file: header comments, the defaults list, then each section's keys with their reasons."""
        lines = ["# @package _global_", *(f"# {line}" for line in self.header), "defaults:"]
        lines += [f"  - override /{group}: {option}" for group, option in self.choices.items()]
        for section, keys in self.values.items():
            lines += ["", f"{section}:"]
            for key, (value, reason) in keys.items():
                line = f"  {key}: {yaml_value(value)}"
                lines.append(f"{line:<44}  # {reason}" if reason else line)
        return "\n".join(lines) + "\n"


def yaml_value(value) -> str:
    """`value` as one line of YAML (flow style: lists in brackets; floats with a dot, as YAML 1.1 reads them)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()


def plan_file(plan, config: Config, *, schedule=None, fitted=None, memory_budget: int, time_budget: float | None,
              properties: dict, fingerprint: str, device: str) -> PlanFile:
    """The experiment that trains `plan` on the configured data (`fitted`: the memory probes, `schedule`:
    epochs x steps from the time budget; without one, nnU-Net's 1000 x 250)."""
    from unetlab import __version__
    from unetlab.planning.budget import MAX_STEPS_PER_EPOCH, NNUNET_EPOCHS, megabytes, seconds_text

    nnunet, dims = isinstance(config.data, NNUNetDataConfig), plan.dims
    x = lambda values: "x".join(str(v) for v in values)  # noqa: E731
    document = PlanFile(choices={"data": "nnunet" if nnunet else "folder", "model": "nnunet", "loss": plan.loss,
                                 "optimizer": plan.optimizer["name"], "augment": "basic"})
    peak = (f", {'predicted' if fitted.predicted else 'measured'} peak {megabytes(fitted.measurement.peak_bytes)}"
            if fitted else "")
    document.header = [
        f"unetlab {__version__} plan for {dataset_name(config)} (content fingerprint {fingerprint}), on {device}.",
        f"{properties['num_cases']} cases, {dims}D, median shape {x(int(v) for v in properties['median_shape'])} at "
        f"spacing {x(round(v, 3) for v in properties['median_spacing'])}; channels "
        f"{', '.join(c['name'] for c in properties['channels'])}; classes {', '.join(properties['classes'])}.",
        f"Budgets: memory {megabytes(memory_budget)}{peak}; time "
        f"{seconds_text(time_budget) if time_budget else 'none (nnU-Net schedule)'}.",
        f"Train it: python -m runner +experiment={GROUP}/{plan_name(config)}   (an ordinary experiment: edit any value)",
    ]
    data = plain(config.data)
    for key in source_keys(config):
        document.set("data", key, data[key], "")
    reasons = plan.reasons
    if nnunet:
        document.set("data", "patch_size", list(plan.patch_size), reasons["patch_size"])
        document.set("data", "target_spacing", [round(v, 5) for v in plan.target_spacing], reasons["target_spacing"])
        document.set("data", "normalization", list(plan.normalization), reasons["normalization"])
    else:
        document.set("data", "patch_size", min(plan.patch_size),
                     f"data=folder trains square patches: the planned {x(plan.patch_size)} patch's shorter edge")
        document.set("data", "image_size", min(plan.patch_size), "the patch (whole images are not resized)")
        document.set("data", "normalize", "zscore", reasons["normalization"])
    topology = plan.topology
    document.set("model", "strides", [list(s) for s in topology.strides], reasons["topology"])
    document.set("model", "kernel_sizes", [list(k) for k in topology.kernel_sizes],
                 "3 on axes under 2x the finest spacing, else 1 (until the spacing evens out)")
    document.set("model", "filters", plan.filters, reasons["filters"])
    document.set("model", "max_filters", plan.max_filters, "")
    document.set("model", "deep_supervision", plan.deep_supervision, reasons["loss"])
    document.set("augment", "rotate90", dims == 2, "mirroring on every axis (nnU-Net); quarter turns in 2D")
    for key, value in plan.optimizer.items():
        if key != "name":
            document.set("optimizer", key, value, reasons["optimizer"] if key == "lr" else "")
    memory = reasons.get("memory", reasons["batch_size"])
    document.set("trainer", "batch_size", plan.batch_size, f"{reasons['batch_size']}; {memory}")
    if schedule is not None:
        document.set("trainer", "epochs", schedule.epochs, schedule.reason)
        document.set("trainer", "steps_per_epoch", schedule.steps_per_epoch, "")
        if schedule.validation_steps:
            document.set("trainer", "validation_steps", schedule.validation_steps,
                         "a fixed subset of the validation batches: whole passes would leave too few epochs")
        document.set("trainer", "time_limit", math.floor(schedule.time_limit_minutes * 100) / 100,
                     "minutes of fit: the budget less planning, start and end (a slower machine stops in time)")
    else:
        document.set("trainer", "epochs", NNUNET_EPOCHS, "nnU-Net's schedule (no plan.time_budget)")
        document.set("trainer", "steps_per_epoch", MAX_STEPS_PER_EPOCH, "")
    document.set("trainer", "schedule", plan.schedule, "")
    document.set("trainer", "min_lr", 0.0, "")
    document.set("trainer", "monitor", "val_dice", "")
    return document


def source_keys(config: Config) -> list[str]:
    """The data keys that say where the data is and how to read it (the rest, the plan sets)."""
    if isinstance(config.data, NNUNetDataConfig):
        return ["root"]
    return [key for key in FOLDER_DATA_KEYS if hasattr(config.data, key)]


def dataset_name(config: Config) -> str:
    data = config.data
    where = getattr(data, "root", None) or getattr(data, "images", "")
    path = Path(where).resolve()
    return (path.parent.name if path.name in ("images", "image", "imagesTr") else path.name) or "dataset"


def plan_name(config: Config) -> str:
    """`plan.name`, else the dataset folder's name."""
    name = config.plan.name or dataset_name(config)
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def user_overrides(*leave_out: str) -> list[str]:
    """This command's overrides that a plan goes on top of: not the task, presets or plan.*, nor `leave_out`."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task
            if not o.lstrip("+~").startswith(("experiment=", "task=", "plan.", *leave_out))]


def register_plans(folder: Path = Path(GROUP), argv: list[str] | None = None) -> None:
    """Store each `plans/NAME.yaml` under the working directory as `+experiment=plans/NAME`. A plan the
    command line selects that is not valid YAML is a one-line error naming the file."""
    from hydra.core.config_store import ConfigStore

    if not folder.is_dir():
        return
    argv = sys.argv[1:] if argv is None else argv
    for path in sorted(folder.glob("*.yaml")):
        try:
            node = OmegaConf.create(path.read_text())
        except Exception as error:  # yaml's and OmegaConf's parse errors
            if f"experiment={GROUP}/{path.stem}" in (arg.lstrip("+") for arg in argv):
                raise ConfigError(f"{path}: not a valid plan file ({' '.join(str(error).split())[:200]})") from None
            continue
        store_plan(path.stem, node)


def store_plan(name: str, node) -> None:
    """`node` (a plan file's text or config) as the experiment `plans/NAME`."""
    from hydra.core.config_store import ConfigStore

    if isinstance(node, str):
        node = OmegaConf.create(node)
    ConfigStore.instance().store(group=f"experiment/{GROUP}", name=name, node=node, package="_global_")
