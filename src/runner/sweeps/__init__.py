"""Sweeps: a grid or an Optuna search over many training runs, tracked as one MLflow parent
run with a nested child run per job.

Modules, each importing only those listed before it (and `runner.redact`, `runner.schema`,
`runner.settings`, `runner.tracking`, never the other way round):

- `space`: the search space, read from Hydra's sweep syntax; a trial's values as overrides.
- `study`: the Optuna study: storage, sampler, pruner, resume, the study's own records.
- `pruning`: the Keras callback that reports each epoch to the trial and stops a pruned one.
- `trial`: the trial protocol between a job and the sweeper: `job_trial(config)` in the
  train task, `recorded(user_attrs)` in the sweeper; the only module that knows its names.
- `parent`: the sweep's MLflow parent run: opened, summarised (sweep_summary.csv, best
  child), closed, with any child its lost job left RUNNING ended; `MlflowSweep` is the Hydra
  callback that does it for grid sweeps.
- `report`: the study's plots, trials.csv and search_space.json.
- `sweeper`: `OptunaSweeper`, on Hydra's public Sweeper API; Hydra instantiates it as
  `hydra_plugins.unetlab_sweeper.OptunaSweeper` (Hydra's plugins must live there), which
  `hydra_plugins.unetlab_sweeper.register_sweeper()` registers before the app composes.

Call flow of `python -m runner -m hparams_search=optuna`: `runner.app.register` calls
`hydra_plugins.unetlab_sweeper.register_sweeper`; Hydra composes, runs `MlflowSweep.on_multirun_start` (nothing to
do: the config has an `hparams_search`) and `OptunaSweeper.sweep`, which reads the space
(`space`), checks every choice composes, opens or resumes the study (`study`), opens the
parent run (`parent`), then asks the study for trials and launches one Hydra job each. A job
runs the train task, which calls `trial.job_trial(config)` for its tags, its pruning callback
and its records. The sweeper settles each trial from the job's return (or what it recorded),
writes the report (`report`), and `MlflowSweep.on_multirun_end` summarises and closes the
parent (`parent.finish_sweep`, also called by `runner.__main__` when a sweep stops early).

No run is left RUNNING: the sweeper ends the run of a trial it sets aside (Ctrl-C, or a dead
sweep's trial queued again) KILLED and that of a job the launcher lost FAILED, and
`finish_sweep` ends whatever child is still RUNNING. Passwords and environment secrets reach
no run name, tag, study attr or log line (`runner.redact`: `MlflowSweep` and the sweeper
install its log filter and note the config's `${oc.env:...}` keys).
"""
