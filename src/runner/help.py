"""`python -m runner --help`: usage, tasks, config groups with their options, the composed config.

Hydra's own help lists groups by deep-copying the config repository once per group (seconds);
here the option names come from the packaged `conf/` and `experiments/` files, and the config is
composed once (about 0.3 s). Imports Hydra, never TensorFlow, Keras or MLflow.
"""

from __future__ import annotations

from importlib import resources
from typing import Dict, List, Sequence

import yaml

from .schema import Task

ABOUT = """\
unetlab: U-Net semantic segmentation experiments, configured by Hydra, tracked in MLflow."""

EXAMPLES = """\
examples:
  python -m runner                                             train on the built-in synthetic shapes
  python -m runner data=folder data.images=DIR data.masks=DIR model.filters=64 augment=basic
  python -m runner -m optimizer.lr=1e-4,3e-4,1e-3              a grid sweep: a parent run, one child per value
  python -m runner task=evaluate run_id=RUN data=folder data.images=DIR data.masks=DIR
  python -m runner task=predict run_id=RUN predict.input=DIR predict.output=masks

results: runs, metrics, checkpoints and pictures in MLflow (tracking.uri, default sqlite:///mlflow.db,
  see them with `mlflow ui --backend-store-uri sqlite:///mlflow.db`); logs and local files under
  outputs/DATE/TIME-UNIQUE (multirun/... for sweeps)."""

USAGE = """\
usage: python -m runner [KEY=VALUE ...]             run the task on the composed config
       python -m runner -m KEY=A,B [KEY=VALUE ...]  a sweep: one job per value (MLflow parent + child runs)
       python -m runner --cfg job [KEY=VALUE ...]   print the composed config, run nothing
       python -m runner --hydra-help                Hydra's own flags and hydra/* groups"""

TASKS = {
    Task.train: "build data, model and optimizer from the config, fit, track the run in MLflow",
    Task.evaluate: "score a trained model (run_id=, model_uri= or checkpoint=) on image/mask folders",
    Task.predict: "segment images of any size with a trained model: predict.input=DIR_OR_FILE",
    Task.export: "register a trained model in the MLflow Model Registry, or write a TF SavedModel",
    Task.check_data: "check image/mask folders (data=folder), as every training does first",
    Task.preview: "write a PNG grid of training pairs exactly as the model sees them",
    Task.plan: "plan network, patch, batch and schedule for a dataset, measured on this device: plans/NAME.yaml",
    Task.auto: "plan, then train the plan, in one command (+experiment=auto data=... plan.time_budget=15m)",
    Task.compare: "is run B better than run A? their evaluations paired case by case (run_id=[A,B] compare.metric=dice)",
}

NOTES = {
    "experiment": "a preset: +experiment=NAME",
    "hparams_search": "an Optuna study: -m hparams_search=optuna",
}

HELP_FLAGS = ("--help", "-h")


def wants_help(argv: Sequence[str]) -> bool:
    """`--help` or `-h` given (`--hydra-help` stays Hydra's)."""
    return any(arg in HELP_FLAGS for arg in argv)


def yaml_names(folder) -> List[str]:
    return sorted(item.name[: -len(".yaml")] for item in folder.iterdir() if item.name.endswith(".yaml"))


def config_groups() -> Dict[str, List[str]]:
    """Each group folder of the packaged `conf/` with its options, plus the `experiment` presets."""
    conf = resources.files("runner.conf")
    groups = {folder.name: yaml_names(folder) for folder in conf.iterdir() if folder.is_dir()}
    groups["experiment"] = yaml_names(resources.files("runner.experiments"))
    return {group: options for group, options in sorted(groups.items()) if options}


def main_config() -> dict:
    return yaml.safe_load(resources.files("runner.conf").joinpath("config.yaml").read_text())


def composed(args: Sequence[str]) -> str:
    """The config for these overrides, as `--cfg job` prints it (sweep values left out), or why not."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .app import register

    overrides = [arg for arg in args if not arg.startswith("-") and ("=" in arg or arg.startswith("~"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        if "-m" in args or "--multirun" in args:
            overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
        register()
        with initialize_config_module(config_module="runner.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:  # a bad override: reported, help goes on
        first = (str(error).strip() or type(error).__name__).splitlines()[0].rstrip(".")
        return f"(not composed: {first}; see python -m runner --cfg job ...)"
    return OmegaConf.to_yaml(cfg)


def help_text(args: Sequence[str] = ()) -> str:
    """The whole help screen; `args` are the command-line arguments (overrides and flags)."""
    config = main_config()
    defaults = {k: v for item in config["defaults"] if isinstance(item, dict) for k, v in item.items()}
    lines = [ABOUT, "", USAGE, "", "tasks (task=NAME):"]
    for task in Task:
        default = " (default)" if task.value == config.get("task") else ""
        lines.append(f"  {task.value:<12} {TASKS.get(task, '')}{default}")
    lines += ["", "config groups (GROUP=OPTION, * marks the default):"]
    for group, options in config_groups().items():
        names = ", ".join(f"{o}*" if o == defaults.get(group) else o for o in options)
        note = [NOTES[group]] if group in NOTES else []
        if not defaults.get(group):
            note.insert(0, "none by default")
        lines.append(f"  {group:<15} {names}" + (f"   ({'; '.join(note)})" if note else ""))
    lines += ["", EXAMPLES]
    given = " ".join(arg for arg in args if arg not in HELP_FLAGS)
    sweep = ", sweep values left out" if "-m" in args or "--multirun" in args else ""
    lines += ["", f"config{' for ' + given if given else ''} (set any key: KEY=VALUE, add one: +KEY=VALUE{sweep}):"]
    return "\n".join(lines) + "\n" + composed(args).rstrip()
