"""Sweeps end to end, for safety: no password reaches MLflow, Optuna or the logs. Real Hydra
multiruns of tiny models into real SQLite stores."""

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from helpers import TINY, run_runner

pytestmark = pytest.mark.slow

SECRET = "hunter2"
SEARCH = [*(o for o in TINY if not o.startswith(("model.filters=", "trainer.epochs="))),
          "hparams_search=optuna", "hparams_search.params=null", "model.filters=2,4", "hparams_search.n_trials=1"]


def runs_of(client: MlflowClient):
    """The parent runs and the child runs of the `unetlab` experiment."""
    runs = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
    return ([r for r in runs if r.data.tags.get("sweep") == "parent"],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


def shown(run) -> str:
    """Everything MLflow shows of a run but its artifacts: name, tags, params."""
    return json.dumps([run.info.run_name, run.data.tags, run.data.params])


@pytest.fixture(scope="module")
def secret_sweep(tmp_path_factory):
    """A one-trial search whose command line holds a database password (in a tag, where it is
    harmless) and a tag read from an environment secret."""
    work = tmp_path_factory.mktemp("secret-sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNETLAB_TEST_TOKEN", f"{SECRET}-token")
        result = run_runner("-m", *SEARCH, "trainer.epochs=1", f"+tracking.tags.db=postgresql://u:{SECRET}@h/db",
                            "+tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result, MlflowClient(f"sqlite:///{work}/mlflow.db")


def test_a_sweep_logs_and_records_no_secret_on_its_parent_and_study(secret_sweep):
    work, result, client = secret_sweep
    assert SECRET not in result.stdout + result.stderr
    logs = list(work.glob("multirun/**/*.log"))
    assert logs and not [log for log in logs if SECRET in log.read_text()]
    (parent,), _ = runs_of(client)
    assert SECRET not in shown(parent)
    assert "+tracking.tags.db=postgresql://u:***@h/db +tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}" in (
        parent.data.tags["overrides"])  # as typed, its password masked
    assert parent.data.tags["db"] == "postgresql://u:***@h/db"
    assert parent.data.tags["token"] == "${oc.env:UNETLAB_TEST_TOKEN}"  # as written: not its value
    for name in ("optuna/trials.csv", "optuna/search_space.json", "sweep_summary.csv"):
        assert SECRET not in Path(client.download_artifacts(parent.info.run_id, name)).read_text(), name
    study = optuna.load_study(study_name="unetlab", storage=f"sqlite:///{work}/optuna.db")
    attrs = json.dumps([study.user_attrs, [t.user_attrs for t in study.trials]])
    assert SECRET not in attrs and "postgresql://u:***@h/db" in attrs


@pytest.mark.xfail(strict=True, reason="until runner.tracking masks config_params, config.yaml and tags with "
                                       "runner.redact (then remove this mark)")
def test_a_sweep_records_no_secret_on_its_child_runs(secret_sweep):
    _, _, client = secret_sweep
    _, (child,) = runs_of(client)
    assert SECRET not in shown(child)
    assert SECRET not in Path(client.download_artifacts(child.info.run_id, "config.yaml")).read_text()
