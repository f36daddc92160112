"""What a search leaves in its sweep directory (and on its parent run): plots of the study,
trials.csv, search_space.json (passwords masked), and a line on the best trial."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..redact import mask_secrets
from .space import trial_overrides
from .study import recorded_space

log = logging.getLogger(__name__)


def write_report(study: optuna.Study, directory: Path) -> list[Path]:
    """The plots, the search space and the trial table of `study`, written to `directory`."""
    paths = save_plots(study, directory)
    space = directory / "search_space.json"
    space.write_text(mask_secrets(json.dumps(recorded_space(study), indent=2)))
    paths.append(space)
    trials = study.trials_dataframe()
    if len(trials):
        (directory / "trials.csv").write_text(mask_secrets(trials.to_csv(index=False)))
        paths.append(directory / "trials.csv")
    return paths


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
