"""Which replication a process gets: TF_CONFIG clusters, the chief, dataset sharding."""

import json

import pytest
import tensorflow as tf

from unetlab.distribution import Replication, data_parallel, single_device, tf_config_task
from unetlab.errors import ConfigError


def cluster(monkeypatch, task_type: str, index: int, **jobs: int) -> None:
    spec = {name: [f"127.0.0.1:{2000 + 10 * n + i}" for i in range(count)] for n, (name, count) in
            enumerate(jobs.items())}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": spec, "task": {"type": task_type, "index": index}}))


def test_without_tf_config_or_with_one_task_there_is_no_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert tf_config_task() is None
    cluster(monkeypatch, "worker", 0, worker=1)
    assert tf_config_task() is None


@pytest.mark.parametrize("task_type, index, jobs, chief", [
    ("worker", 0, {"worker": 2}, True),
    ("worker", 1, {"worker": 2}, False),
    ("worker", 0, {"chief": 1, "worker": 2}, False),
    ("chief", 0, {"chief": 1, "worker": 2}, True),
])
def test_the_chief_is_task_chief_else_worker_0(monkeypatch, task_type, index, jobs, chief):
    cluster(monkeypatch, task_type, index, **jobs)
    task = tf_config_task()
    assert (task.type, task.index, task.tasks, task.is_chief) == (task_type, index, sum(jobs.values()), chief)


@pytest.mark.parametrize("text", ["{not json", '{"cluster": {"worker": ["a:1", "b:2"]}}', "[1, 2]"])
def test_an_unreadable_tf_config_is_a_config_error_showing_the_expected_form(monkeypatch, text):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ConfigError, match=r'TF_CONFIG is not a cluster spec: expected JSON like \{"cluster"'):
        tf_config_task()


def test_one_device_leaves_datasets_as_they_are():
    replication = single_device()
    dataset = tf.data.Dataset.range(4)
    assert (replication.replicas, replication.tasks, replication.is_chief) == (1, 1, True)
    assert replication.distribute(dataset) is dataset


def test_replicas_shard_batches_by_data_not_by_file():
    replication = Replication(replicas=2, description="two workers", tasks=2, is_chief=False)
    options = replication.distribute(tf.data.Dataset.range(4)).options()
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_tensorflow_on_one_device_trains_without_a_strategy(monkeypatch):
    """A one-replica MirroredStrategy would only turn off Keras' XLA "auto"."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not tf.config.list_logical_devices("GPU") and len(tf.config.list_logical_devices("CPU")) == 1
    replication = data_parallel("tensorflow")
    assert (replication.replicas, replication.description) == (1, "one CPU device")
    with replication.scope():
        assert not tf.distribute.has_strategy()


def test_jax_refuses_a_tf_config_cluster_it_would_not_join(monkeypatch):
    cluster(monkeypatch, "worker", 1, worker=2)
    with pytest.raises(ValueError, match="TF_CONFIG names a cluster, but KERAS_BACKEND=jax trains on the devices "
                                         "of one machine"):
        data_parallel("jax")


def test_tensorflow_trains_on_chief_and_worker_tasks_only(monkeypatch):
    cluster(monkeypatch, "ps", 0, worker=2, ps=1)
    with pytest.raises(ValueError, match="TF_CONFIG task type 'ps': MultiWorkerMirroredStrategy trains on chief and "
                                         "worker tasks only"):
        data_parallel("tensorflow")


def test_a_backend_without_data_parallelism_is_refused_by_name():
    with pytest.raises(ValueError, match="data parallelism runs on the tensorflow and jax backends, not "
                                         "KERAS_BACKEND=torch"):
        data_parallel("torch")


def test_the_global_batch_is_the_per_replica_batch_times_the_replicas():
    assert Replication(replicas=4, description="four").global_batch(8) == 32
    assert single_device().global_batch(8) == 8
