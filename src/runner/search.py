"""Optuna hyperparameter search: the study, its search space, and the trial a job runs.

The sweeper (`hydra_plugins.unetlab_sweeper`) asks the study for trials and launches one
Hydra job per trial; each job finds its trial again through `hparams_search.trial_id`
and the shared storage, reports the monitored metric every epoch and stops early when
the pruner says so (`runner.pruning`).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)
from optuna.trial import TrialState

from unetlab.errors import ConfigError

from .schema import Pruner, PrunerConfig, Sampler, SearchConfig

log = logging.getLogger(__name__)

_IN_MEMORY: dict[str, optuna.Study] = {}  # studies without storage, for jobs run in this process
INTERRUPTED = "interrupted_trials"  # study user attr: trials a dead sweep left RUNNING
PARENT_RUN_ID = "mlflow_parent_run_id"  # study user attr: the sweep's MLflow parent run
MLFLOW_RUN_ID = "mlflow_run_id"  # trial user attr: the job's MLflow run
PRUNED_AT_EPOCH = "pruned_at_epoch"  # trial user attr (and MLflow metric) of a pruned trial
OBJECTIVE = "objective"  # trial user attr: the value the job returns, for when its return is lost
SEARCH_SPACE = "search_space"  # study user attr: the distributions it searches
FIXED_OVERRIDES = "fixed_overrides"  # study user attr: the command line's other overrides


def storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """The study storage at `url`; SQLite waits up to a minute for a lock instead of failing."""
    if url is None:
        return None
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as error:  # bad URL, unreachable server, missing driver
        raise ConfigError(f"hparams_search.storage={url!r}: {' '.join(str(error).split())[:300]}") from None


def build_pruner(pruner: PrunerConfig) -> optuna.pruners.BasePruner:
    """The configured pruner; it decides from the values trials report once per epoch."""
    if pruner.name is Pruner.median:
        return optuna.pruners.MedianPruner(pruner.n_startup_trials, pruner.n_warmup_epochs)
    if pruner.name is Pruner.percentile:
        return optuna.pruners.PercentilePruner(pruner.percentile, pruner.n_startup_trials, pruner.n_warmup_epochs)
    if pruner.name is Pruner.hyperband:
        return optuna.pruners.HyperbandPruner(pruner.min_resource, pruner.max_resource, pruner.reduction_factor)
    if pruner.name is Pruner.threshold:
        return optuna.pruners.ThresholdPruner(pruner.lower, pruner.upper, pruner.n_warmup_epochs)
    return optuna.pruners.NopPruner()


def build_sampler(search: SearchConfig, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The seeded sampler; a resumed study offsets the seed by its trial count, so it goes on
    sampling new points instead of replaying the first run's."""
    seed = search.seed + trials_so_far
    if search.sampler is Sampler.random:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.n_startup_trials,
                                      constant_liar=True)  # parallel trials avoid each other's points


def open_study(search: SearchConfig, direction: str) -> optuna.Study:
    """Create the study, or load it to resume; its direction must match trainer.monitor's."""
    study = optuna.create_study(storage=storage(search.storage), pruner=build_pruner(search.pruner),
                                study_name=search.study_name, direction=direction, load_if_exists=True)
    study.sampler = build_sampler(search, len(study.trials))
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"hparams_search.study_name={search.study_name!r} exists with direction "
            f"{study.direction.name.lower()}, but trainer.monitor asks to {direction}: "
            "use another study name or trainer.monitor_mode"
        )
    if search.storage is None:
        _IN_MEMORY[search.study_name] = study
    return study


def job_trial(search: SearchConfig) -> optuna.Trial | None:
    """The trial this job runs (None outside an Optuna sweep)."""
    if search.trial_id is None:
        return None
    if search.storage is None:
        study = _IN_MEMORY.get(search.study_name)
        if study is None:
            log.warning("trial %d: study %r is in another process's memory; pruning is off "
                        "(set hparams_search.storage)", search.trial_id, search.study_name)
            return None
    else:
        study = optuna.load_study(study_name=search.study_name, storage=storage(search.storage),
                                  pruner=build_pruner(search.pruner))
    return optuna.trial.Trial(study, search.trial_id)


# ---------------------------------------------------------------- search space
def search_space(params: dict[str, str] | None, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions from `hparams_search.params` and the command line's sweep overrides
    (`model.filters=16,32` is a choice), and the command line's other overrides."""
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []

    def drop(override: Override) -> None:  # a key given again (also as +key / ++key) replaces the earlier one
        for name in [n for n in space if n.lstrip("+~") == override.key_or_group]:
            del space[name]

    for key, value in (params or {}).items():
        space[key] = distribution(parse(parser, f"{key}={value}", f"hparams_search.params.{key}"))
    for argument in arguments:
        override = parse(parser, argument, argument)
        drop(override)
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(argument)  # a fixed value on the command line wins over a dimension
    return space, fixed


def parse(parser: OverridesParser, text: str, where: str) -> Override:
    try:
        return parser.parse_override(text)
    except Exception as error:
        raise ConfigError(f"{where}: not valid sweep syntax ({' '.join(str(error).split())[:200]})") from None


def distribution(override: Override) -> BaseDistribution:
    """choice(...) -> categorical; range(a, b, step) -> int or stepped float; interval(a, b) -> float
    (tag `log` for a log scale, tag `int` for integers)."""
    key = override.get_key_element()
    try:
        return _distribution(key, override)
    except ConfigError:
        raise
    except ValueError as error:  # Optuna's checks, e.g. a log scale that includes 0
        raise ConfigError(f"{key}: {' '.join(str(error).split())}") from None


def _distribution(key: str, override: Override) -> BaseDistribution:
    sweep = override.value()
    tags = getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        choices = list(override.sweep_iterator())
        if any(isinstance(c, (list, dict)) for c in choices):
            raise ConfigError(f"{key}: choice() values must be numbers, strings or booleans")
        return CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        values = [round(v, 10) for v in override.sweep_iterator()]
        if not values:
            raise ConfigError(f"{key}: range({sweep.start}, {sweep.stop}, {sweep.step}) is empty")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(min(values), max(values), step=abs(int(sweep.step)))
        return FloatDistribution(min(values), max(values), step=abs(float(sweep.step)))
    if isinstance(sweep, IntervalSweep):
        if sweep.start >= sweep.end:
            raise ConfigError(f"{key}: interval({sweep.start}, {sweep.end}) needs low < high")
        if "int" in tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log="log" in tags)
        return FloatDistribution(sweep.start, sweep.end, log="log" in tags)
    return CategoricalDistribution([sweep])  # a single value: fixed, but recorded with the trial


def trial_overrides(trial: optuna.Trial | optuna.trial.FrozenTrial) -> list[str]:
    """The trial's parameters as Hydra overrides (strings quoted where Hydra would read them otherwise)."""
    return [f"{key}={override_value(value)}" for key, value in trial.params.items()]


def override_value(value: Any) -> str:
    if isinstance(value, str) and not (re.fullmatch(r"[A-Za-z_][\w./-]*", value)
                                       and value.lower() not in ("true", "false", "null", "nan", "inf")):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def sample_overrides(space: dict[str, BaseDistribution]) -> list[list[str]]:
    """Override sets that between them use every choice of every categorical dimension (the
    others at their low end): composing them finds a mistyped key or group option up front."""
    def first(dist: BaseDistribution) -> Any:
        return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low

    base = {name: first(dist) for name, dist in space.items()}
    samples = [base] + [{**base, name: choice} for name, dist in space.items()
                        if isinstance(dist, CategoricalDistribution) for choice in dist.choices[1:]]
    return [[f"{name}={override_value(value)}" for name, value in sample.items()] for sample in samples]


def check_same_settings(study: optuna.Study, fixed: list[str]) -> None:
    """Record the command line's fixed overrides on a new study; warn when a resume changes them
    (hparams_search.* settings aside), since its trials then compare runs of other settings."""
    current = sorted(o for o in fixed if not o.lstrip("+~").startswith("hparams_search"))
    recorded = study.user_attrs.get(FIXED_OVERRIDES)
    if recorded is None:
        study.set_user_attr(FIXED_OVERRIDES, current)
    elif recorded != current:
        log.warning("study %r was run with %s; this run uses %s: its trials will be compared with trials of "
                    "other settings (use a new hparams_search.study_name to keep them apart)", study.study_name,
                    " ".join(recorded) or "no overrides", " ".join(current) or "no overrides")


def check_same_space(study: optuna.Study, space: dict[str, BaseDistribution]) -> None:
    """Record the search space on a new study; refuse to resume a study with another one."""
    current = {name: distribution_to_json(d) for name, d in space.items()}
    recorded = study.user_attrs.get(SEARCH_SPACE)
    if recorded is None:
        study.set_user_attr(SEARCH_SPACE, current)
    elif recorded != current:
        names = sorted(set(recorded) ^ set(current) or {n for n in current if recorded[n] != current[n]})
        raise ConfigError(
            f"hparams_search.study_name={study.study_name!r} holds trials of another search space (differs in "
            f"{', '.join(names)}): set hparams_search.study_name=NEW_NAME for a new study, or search the same space "
            "to resume it")


# ---------------------------------------------------------------- resume
def trials_to_run(study: optuna.Study, n_trials: int) -> int:
    """How many more trials reach `n_trials` finished ones. Trials a dead sweep left RUNNING
    are set aside and queued again with the same parameters."""
    left_running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in left_running:
        log.info("trial %d was interrupted: it runs again with the same parameters", trial.number)
    set_aside(study, left_running, again=True)
    interrupted = set(study.user_attrs.get(INTERRUPTED, []))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return max(0, n_trials - len([t for t in finished if t.number not in interrupted]))


def set_aside(study: optuna.Study, trials, *, again: bool) -> None:
    """Fail trials that did not run to an end, leave them out of the count of finished trials
    and, with `again`, queue their parameters for the next run of the same command."""
    interrupted = set(study.user_attrs.get(INTERRUPTED, []))
    for trial in trials:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if again:
            study.enqueue_trial(trial.params, skip_if_exists=False)
        interrupted.add(trial.number)
    study.set_user_attr(INTERRUPTED, sorted(interrupted))


def failed_trials(study: optuna.Study) -> int:
    """Trials that failed (not counting those a dead or interrupted sweep left behind)."""
    interrupted = set(study.user_attrs.get(INTERRUPTED, []))
    return len([t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number not in interrupted])


# ---------------------------------------------------------------- results
def save_plots(study: optuna.Study, directory: Path) -> list[Path]:
    """Objective per trial, learning curves, parallel coordinates and parameter importances as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    directory.mkdir(parents=True, exist_ok=True)
    drawings = {
        "optimization_history": plots.plot_optimization_history,
        "intermediate_values": plots.plot_intermediate_values,
        "parallel_coordinate": plots.plot_parallel_coordinate,
        "param_importances": plots.plot_param_importances,
    }
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:  # nothing to compare yet
        drawings = {name: draw for name, draw in drawings.items()
                    if name in ("optimization_history", "intermediate_values")}
    written = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no complete trials" and the like: we log what is missing
    try:
        for name, draw in drawings.items():
            path = _draw(name, draw, study, directory, plt)
            if path is not None:
                written.append(path)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return written


def _draw(name: str, draw, study: optuna.Study, directory: Path, plt) -> Path | None:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = draw(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:  # too few finished trials to draw
        log.info("no %s plot: %s", name, error)
        return None
    figure = getattr(axes, "figure", None) or axes.flat[0].figure
    figure.set_size_inches(9, 5)
    figure.tight_layout()
    path = directory / f"{name}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def describe_best(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "no trial completed"
    params = " ".join(trial_overrides(best))
    return f"best trial {best.number}: {best.value:.4f} with {params}"


def objective_value(value: Any) -> float | None:
    """The job's return value as an objective (None when missing or not finite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
