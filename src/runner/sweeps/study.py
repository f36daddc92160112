"""The Optuna study of a sweep: its name, storage, sampler and pruner; resuming it; the
heartbeat of the trials a sweep runs, which tells another sweep on the study its live trials
from those a dead sweep left RUNNING; what it records of itself (its search space, fixed
settings, parent run, interrupted trials) as study user attrs, never a password."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import TrialState

from unetlab.errors import ConfigError

from ..redact import mask_secrets

if TYPE_CHECKING:
    from ..schema import SearchConfig

log = logging.getLogger(__name__)

# Study user attrs.
INTERRUPTED = "interrupted_trials"  # trials a dead or interrupted sweep left unfinished
PARENT_RUN_ID = "mlflow_parent_run_id"  # the sweep's MLflow parent run
SEARCH_SPACE = "search_space"  # the distributions it searches
FIXED_OVERRIDES = "fixed_overrides"  # the command line's other overrides

_in_memory: dict[str, optuna.Study] = {}  # studies without storage, for jobs run in this process


def storage(url: str | None, **options: Any) -> optuna.storages.RDBStorage | None:
    """The study storage at `url` (`options` go to RDBStorage); SQLite waits up to a minute for a
    lock instead of failing."""
    if url is None:
        return None
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **options)
    except Exception as error:  # bad URL, unreachable server, missing driver
        message = f"hparams_search.storage={url!r}: {' '.join(str(error).split())[:300]}"
        raise ConfigError(mask_secrets(message)) from None


def build_pruner(pruner) -> optuna.pruners.BasePruner:
    """The pruner `hparams_search.pruner` configures (its PrunerConfig); it decides from the
    values trials report once per epoch."""
    builders = {
        "median": lambda: optuna.pruners.MedianPruner(pruner.n_startup_trials, pruner.n_warmup_epochs),
        "percentile": lambda: optuna.pruners.PercentilePruner(pruner.percentile, pruner.n_startup_trials,
                                                              pruner.n_warmup_epochs),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(pruner.min_resource, pruner.max_resource,
                                                            pruner.reduction_factor),
        "threshold": lambda: optuna.pruners.ThresholdPruner(pruner.lower, pruner.upper, pruner.n_warmup_epochs),
        "none": optuna.pruners.NopPruner,
    }
    return builders[pruner.name.value]()


def build_sampler(search: SearchConfig, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The seeded sampler; a resumed study offsets the seed by its trial count, so it goes on
    sampling new points instead of replaying the first run's."""
    seed = search.seed + trials_so_far
    if search.sampler.value == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.n_startup_trials,
                                      constant_liar=True)  # parallel trials avoid each other's points


def study_name(search: SearchConfig, experiment: str, space: dict[str, BaseDistribution], direction: str,
               monitor: str) -> str:
    """The name of the study a sweep runs: `hparams_search.study_name` when set, else
    `<experiment>-<8 hex digits>` hashed from the search space (keys sorted, so their order does
    not count; `model.filters=2,4` and `choice(2, 4)` are one space), the direction and the
    monitored metric. So a new space starts a new study and the same space resumes its own."""
    if search.study_name is not None:
        return search.study_name
    identity = {"space": _space_json(space), "direction": direction, "monitor": monitor}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{experiment}-{digest[:8]}"


def _space_json(space: dict[str, BaseDistribution]) -> dict[str, str]:
    return {name: distribution_to_json(d) for name, d in space.items()}


def open_study(search: SearchConfig, direction: str) -> optuna.Study:
    """Create the study `search.study_name` (`study_name` gives it), or load it to resume; its
    direction must match trainer.monitor's."""
    if search.study_name is None:
        raise ValueError("open_study needs a study name: resolve it with study_name() first")
    study = optuna.create_study(storage=storage(search.storage), pruner=build_pruner(search.pruner),
                                study_name=search.study_name, direction=direction, load_if_exists=True)
    # A study that already holds trials, or was run by a sweep (it recorded its space), is resumed.
    trials = len(study.trials)
    resumed = trials > 0 or SEARCH_SPACE in study.user_attrs
    log.info("study %s (%s) in %s", study.study_name, f"resumed, {trials} trial{'s' * (trials != 1)}"
             if resumed else "new", mask_secrets(search.storage or "memory"))
    study.sampler = build_sampler(search, trials)
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"hparams_search.study_name={search.study_name!r} exists with direction "
            f"{study.direction.name.lower()}, but trainer.monitor asks to {direction}: "
            "use another study name or trainer.monitor_mode"
        )
    if search.storage is None:
        _in_memory[search.study_name] = study
    return study


def find_study(search: SearchConfig) -> optuna.Study | None:
    """The study a job's trial belongs to: loaded from its storage, or the in-memory study the
    sweeper opened in this process (None when it is in another process's memory)."""
    if search.storage is None:
        return _in_memory.get(search.study_name)
    return optuna.load_study(study_name=search.study_name, storage=storage(search.storage),
                             pruner=build_pruner(search.pruner))


# ---------------------------------------------------------------- what the study records of itself
def check_same_space(study: optuna.Study, space: dict[str, BaseDistribution]) -> None:
    """Record the search space on a new study; refuse to resume a study with another one."""
    current = _space_json(space)
    recorded = study.user_attrs.get(SEARCH_SPACE)
    if recorded is None:
        study.set_user_attr(SEARCH_SPACE, current)
    elif recorded != current:
        names = sorted(set(recorded) ^ set(current) or {n for n in current if recorded[n] != current[n]})
        raise ConfigError(
            f"hparams_search.study_name={study.study_name!r} holds trials of another search space (differs in "
            f"{', '.join(names)}): set hparams_search.study_name=NEW_NAME (or leave it unset: named after its "
            "space) for a new study, or search the same space to resume it")


def recorded_space(study: optuna.Study) -> dict[str, Any]:
    """The search space the study recorded, as JSON-ready distributions."""
    return {name: json.loads(dist) for name, dist in study.user_attrs.get(SEARCH_SPACE, {}).items()}


def check_same_settings(study: optuna.Study, fixed: list[str]) -> None:
    """Record the command line's fixed overrides (passwords masked) on a new study; warn when a
    resume changes them (hparams_search.* settings aside), since its trials then compare runs of
    other settings."""
    current = sorted(mask_secrets(o) for o in fixed if not o.lstrip("+~").startswith("hparams_search"))
    recorded = study.user_attrs.get(FIXED_OVERRIDES)
    if recorded is None:
        study.set_user_attr(FIXED_OVERRIDES, current)
    elif recorded != current:
        log.warning("study %r was run with %s; this run uses %s: its trials will be compared with trials of "
                    "other settings (use a new hparams_search.study_name to keep them apart)", study.study_name,
                    " ".join(recorded) or "no overrides", " ".join(current) or "no overrides")


def parent_run_id(study: optuna.Study) -> str | None:
    """The MLflow parent run the study was last run under (None for a new study)."""
    return study.user_attrs.get(PARENT_RUN_ID)


def set_parent_run_id(study: optuna.Study, run_id: str) -> None:
    study.set_user_attr(PARENT_RUN_ID, run_id)


# ---------------------------------------------------------------- heartbeat and resume
@contextmanager
def heartbeat(search: SearchConfig, trials) -> Iterator[None]:
    """Record a heartbeat of `trials` (asked by this sweep) now and every
    `hparams_search.heartbeat_interval` seconds from a thread while the block runs: another sweep
    on the study leaves them alone while it beats (`reclaim_stale_trials`). Nothing in memory."""
    store = storage(search.storage)
    if store is None:
        yield
        return
    ids = [trial._trial_id for trial in trials]
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in ids:
                try:
                    store.record_heartbeat(trial_id)
                except Exception as error:  # a store locked past its timeout: the next beat may pass
                    log.warning("trial id %d: could not record its heartbeat: %s", trial_id, error)
            if stop.wait(search.heartbeat_interval):
                return

    for trial_id in ids:  # the first beat before the block starts, so no trial is RUNNING without one
        store.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        store.remove_session()


def reclaim_stale_trials(search: SearchConfig, study: optuna.Study) -> list:
    """Fail the RUNNING trials whose heartbeat stopped more than `hparams_search.grace_period`
    seconds ago (their sweep died: killed, its machine lost) with Optuna's `fail_stale_trials`,
    set them aside and queue them again with the same parameters; return them. A trial whose
    sweep still beats (another sweep on the same study) is left alone, RUNNING."""
    if search.storage is None:  # in this process's memory: no other sweep can have left a trial
        return []
    stale: list = []
    store = storage(search.storage, heartbeat_interval=search.heartbeat_interval, grace_period=search.grace_period,
                    heartbeat_stale_trial_callback=lambda _, trial: stale.append(trial))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(optuna.load_study(study_name=study.study_name, storage=store))
    store.remove_session()
    for trial in stale:
        log.info("trial %d lost its sweep (no heartbeat for over hparams_search.grace_period=%d s): it runs again "
                 "with the same parameters", trial.number, search.grace_period)
    set_aside(study, stale, again=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.info("trial %d is running in another sweep (its heartbeat is not older than "
                 "hparams_search.grace_period=%d s): left alone", trial.number, search.grace_period)
    return stale


def trials_to_run(study: optuna.Study, n_trials: int) -> int:
    """How many more trials reach `n_trials` finished ones (trials set aside do not count)."""
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
