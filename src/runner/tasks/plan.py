"""`task=plan`: plan a network and its training for the configured dataset on this device (`unetlab.planning`),
and write it as an ordinary experiment, `plans/NAME.yaml` (`+experiment=plans/NAME` trains it).

The steps: the dataset's properties (read once per dataset content, cached); the planner's decisions; the
probes, which build each candidate exactly as `task=train` will (the plan file composed on top of this
command's overrides) and time real training steps on the real data stream, shrinking the candidate until its
measured peak memory fits `plan.memory_budget`; epochs x steps from `plan.time_budget`. The properties, the
plan and the probes are logged to an MLflow run of its own.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mlflow

from unetlab.errors import ConfigError
from unetlab.planning import budget, probe
from unetlab.planning.budget import MAX_STEPS_PER_EPOCH, NNUNET_EPOCHS
from unetlab.planning.cases import folder_cases, nnunet_cases
from unetlab.planning.planner import WORK_PER_SECOND, Device, Plan, choose_optimizer, make_plan
from unetlab.planning.properties import cached_properties, dataset_properties

from .. import builders, tracking
from ..plan_file import GROUP, plan_file, plan_name, store_plan, user_overrides
from ..schema import Config, NNUNetDataConfig
from ..settings import STARTED_AT, to_config

log = logging.getLogger(__name__)
PROBE = "_probe"  # the candidate's experiment name while it is measured
END_SECONDS = 10.0  # kept at the end of a time budget, with 3 checkpoint writes: the model logged, the process ended
END_VALIDATION_PASS = 1.5  # the end's prediction of the validation data per window pass (reading, resampling: x 1.5)


def plan(config: Config) -> dict:
    """Plan, probe and write the plan file; returns {"plan_file", "experiment", "run_id", ...}."""
    started = time.monotonic() - command_seconds()
    data = config.data
    cases = nnunet_cases(data.root) if isinstance(data, NNUNetDataConfig) else folder_cases(
        data.images, data.masks, channels=data.channels, num_classes=data.num_classes,
        ignore_index=data.ignore_index, palette=data.palette, invert_masks=data.invert_masks)
    tags = {"task": "plan", "dataset_fingerprint": cases.fingerprint}
    with tracking.tracked_run(config.tracking, tags, what=f"plan {plan_name(config)}") as run:
        tracking.log_config(config)
        timer = time.monotonic()
        properties = cached_properties(builders.volume_cache_dir(), cases.fingerprint,
                                       lambda: dataset_properties(cases))
        properties_seconds = time.monotonic() - timer
        mlflow.log_text(json.dumps(properties, indent=1), "dataset_properties.json")
        kind, memory, device_name = probe.device_memory()
        memory_budget = (budget.parse_size(config.plan.memory_budget) if config.plan.memory_budget
                         else probe.default_memory_budget(kind, memory))
        time_budget = budget.parse_duration(config.plan.time_budget) if config.plan.time_budget else None
        # plan.optimizer=auto probes with Adam (its two moments: the larger state), and chooses once the steps are known
        probed = "adam" if config.plan.optimizer == "auto" else config.plan.optimizer
        if memory_budget > memory:
            raise ConfigError(f"plan.memory_budget={budget.megabytes(memory_budget)} is more than this device has "
                              f"({budget.megabytes(memory)}, {device_name})")
        initial = make_plan(properties, Device(kind, memory, device_name), memory_bytes=memory_budget,
                            optimizer=probed, head_classes=config.data.num_classes)
        log.info("planned %s: patch %s, batch %d; probing on %s", plan_name(config),
                 "x".join(map(str, initial.patch_size)), initial.batch_size, device_name)
        timer = time.monotonic()
        auto = config.task.value == "auto"  # the budget includes the planning: what is left of it trains
        left = time_budget - (time.monotonic() - started if auto else 0.0) if time_budget else None
        if left is not None and left <= 0:
            raise ConfigError(f"plan.time_budget={budget.seconds_text(time_budget)} is too short: planning alone "
                              f"took {budget.seconds_text(time.monotonic() - started)}")
        fitted = budget.fit_to_budgets(initial, lambda candidate: measure(candidate, config, properties),
                                       memory_bytes=memory_budget, time_seconds=left,
                                       min_steps=config.plan.min_steps if time_budget else 0,
                                       work_per_second=WORK_PER_SECOND[kind][initial.dims])
        probe_seconds = time.monotonic() - timer
        schedule = None
        if time_budget:
            batches = validation_batches(fitted.plan, config, properties)
            # decision.postprocess=auto predicts the validation data once more at the end, to choose its rules:
            # windows overlapping by predict.overlap along each axis, each mirrored along each axis with predict.tta
            dims = len(fitted.plan.patch_size)
            windows = (1 / (1 - config.predict.overlap)) ** dims * (2**dims if config.predict.tta.value != "none" else 1)
            choosing = END_VALIDATION_PASS * windows * batches * fitted.measurement.seconds_per_inference \
                if config.decision.postprocess.value == "auto" else 0.0
            schedule = budget.schedule(
                fitted.measurement, time_seconds=time_budget,
                spent_seconds=time.monotonic() - started if auto else 0.0, validation_batches=batches,
                end_seconds=END_SECONDS + 3 * fitted.measurement.seconds_per_save + choosing)
        if config.plan.optimizer == "auto":
            steps = schedule.epochs * schedule.steps_per_epoch if schedule else NNUNET_EPOCHS * MAX_STEPS_PER_EPOCH
            fitted = replace(fitted, plan=choose_optimizer(fitted.plan, steps))
        document = plan_file(fitted.plan, config, schedule=schedule, fitted=fitted, memory_budget=memory_budget,
                             time_budget=time_budget, properties=properties, fingerprint=cases.fingerprint,
                             device=device_name)
        path = write_plan(Path(config.plan.output), plan_name(config), document.text())
        store_plan(path.stem, document.text())
        figures = {"properties_seconds": properties_seconds, "probe_seconds": probe_seconds,
                   "probes": len(fitted.trials), "peak_memory_mb": fitted.measurement.peak_bytes / 2**20,
                   "memory_budget_mb": memory_budget / 2**20, "seconds_per_step": fitted.measurement.seconds_per_step}
        mlflow.log_metrics(figures)
        mlflow.log_params({"plan.patch_size": "x".join(map(str, fitted.plan.patch_size)),
                           "plan.batch_size": fitted.plan.batch_size, "plan.stages": len(fitted.plan.topology.strides),
                           "plan.normalization": ",".join(fitted.plan.normalization),
                           "plan.peak_memory": "predicted" if fitted.predicted else "measured"})
        mlflow.log_text(document.text(), f"{GROUP}/{path.name}")
        mlflow.log_text(json.dumps([trial.as_dict() for trial in fitted.trials], indent=1), "probes.json")
        select = (f"+experiment={GROUP}/{path.stem}" if path.parent.resolve() == Path(GROUP).resolve()
                  else f"+experiment={GROUP}/{path.stem} once it is in ./{GROUP}")
        print(f"plan written to {path} ({select}): patch "
              f"{'x'.join(map(str, fitted.plan.patch_size))}, batch {fitted.plan.batch_size}, "
              f"{len(fitted.plan.topology.strides)} stages, {'predicted' if fitted.predicted else 'measured'} peak "
              f"{budget.megabytes(figures['peak_memory_mb'] * 2**20)}"
              + (f", {schedule.epochs} epochs x {schedule.steps_per_epoch} steps" if schedule else ""))
        return {"plan_file": str(path), "experiment": f"{GROUP}/{path.stem}", "run_id": run.info.run_id, **figures}


def command_seconds() -> float:
    """Seconds since this command started (`python -m runner` sets UNETLAB_STARTED_AT), else since the process did."""
    import os

    started = os.environ.get(STARTED_AT)
    return max(0.0, time.time() - float(started)) if started else probe.process_seconds()


def measure(candidate: Plan, config: Config, properties: dict) -> probe.Measurement:
    """`candidate` built and trained as `task=train` will (its plan file on this command's overrides), measured
    in a fresh process: its peak is a training process's, with nothing left over from earlier probes (a CPU
    runtime keeps most of the memory a larger network took)."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    document = plan_file(candidate, config, memory_budget=0, time_budget=None, properties=properties,
                         fingerprint="", device="")
    given = user_overrides("output_dir=")  # the probe's own is this run's
    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            result = pool.submit(measure_candidate, document.text(), given, config.output_dir,
                                 config.plan.probe_steps).result()
    except BrokenProcessPool:  # the system's out-of-memory killer ended the probe
        result = probe.OUT_OF_MEMORY
    patch = "x".join(map(str, candidate.patch_size))
    if result.out_of_memory:
        log.info("probe: patch %s batch %d: out of memory", patch, candidate.batch_size)
    else:
        log.info("probe: patch %s batch %d: peak %s, %.2f s/step", patch, candidate.batch_size,
                 budget.megabytes(result.peak_bytes), result.seconds_per_step)
    return result


def measure_candidate(text: str, overrides: list[str], output_dir: str, steps: int) -> probe.Measurement:
    """In a probe's own process: the config of `overrides` with the plan file `text` on top, built and trained
    for a few steps as `task=train` would (the same data stream, model, loss and optimizer), measured."""
    from hydra import compose, initialize_config_module

    from ..app import register

    from tensorflow.errors import ResourceExhaustedError as ResourceExhausted

    register()
    store_plan(PROBE, text)
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        trial = to_config(compose("config", overrides=[*overrides, f"+experiment={GROUP}/{PROBE}", "task=train",
                                                       f"output_dir={output_dir}"]))
    splits = builders.make_splits(trial)
    model = builders.build_model(trial, splits.input_shape)
    builders.compile_model(model, trial, total_steps=1000)
    batches = iter(builders.make_training_batches(trial, splits, trial.trainer.batch_size,
                                                  label_size=builders.label_size(model)))
    first = next(batches)

    def train_steps(count: int) -> None:
        for _ in range(count):
            model.train_on_batch(*next(batches))

    try:
        with tempfile.TemporaryDirectory() as folder:
            return probe.measure(train_steps, lambda: model.predict_on_batch(first[0]), steps=steps,
                                 save=lambda: model.save(Path(folder) / "probe.keras"),
                                 parameters=model.count_params())
    except (MemoryError, ResourceExhausted):
        return probe.OUT_OF_MEMORY


def validation_batches(plan: Plan, config: Config, properties: dict) -> int:
    """About how many batches a validation pass takes: the validation cases' tiles of the patch, at their median
    shape at the target spacing, uncropped (training does not crop to the non-zero region)."""
    data = config.data
    cases = properties["num_cases"]
    val_cases = math.ceil(cases / data.folds) if data.folds else max(1, round(cases * data.val_fraction))
    shape = [size * spacing / target for size, spacing, target in zip(
        properties["median_shape"], properties["median_spacing"], plan.target_spacing)]
    tiles = math.prod(math.ceil(size / patch) for size, patch in zip(shape, plan.patch_size))
    return math.ceil(val_cases * tiles / plan.batch_size)


def write_plan(folder: Path, name: str, text: str) -> Path:
    """`folder/NAME.yaml`, written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path
