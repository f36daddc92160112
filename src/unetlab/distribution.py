"""Data-parallel training on every accelerator of this machine, or of a TensorFlow cluster.

`data_parallel()` returns a `Replication`: build, compile and fit the model inside its
`scope()`, and feed it batches of `trainer.batch_size x replicas` (the global batch, split
evenly: each replica computes the gradient of its share and the replicas average them).

- TensorFlow backend: `tf.distribute.MirroredStrategy` over the GPUs (or, without GPUs, the
  logical CPU devices), or `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG`
  names a cluster of several tasks: every worker runs the same command, and one, the chief
  (task `chief`, else `worker` 0), keeps the records.
- JAX backend: `keras.distribution.DataParallel` over `jax.devices()` (one process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, NamedTuple

from .errors import ConfigError

log = logging.getLogger(__name__)

TRAINING_TASKS = ("chief", "worker")  # the TF_CONFIG task types MultiWorkerMirroredStrategy trains on


@dataclass(frozen=True)
class Replication:
    """How a training is spread: `replicas` model copies, each on an equal share of every batch.

    `scope` opens where the model is built, compiled and fitted; `tasks` is the number of
    processes training together (several in a TF_CONFIG cluster), of which the one with
    `is_chief` keeps the records."""

    replicas: int
    description: str
    scope: Callable[[], ContextManager] = contextlib.nullcontext
    tasks: int = 1
    is_chief: bool = True

    def global_batch(self, per_replica: int) -> int:
        """The batch each step trains on: `per_replica` images for each replica."""
        return per_replica * self.replicas

    def distribute(self, dataset):
        """`dataset` with the sharding a cluster needs (each worker keeps its part of each
        batch; the inputs are not split by file); unchanged with one replica."""
        if self.replicas == 1:
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)


def single_device() -> Replication:
    """No replication: Keras places the model on its default device."""
    return Replication(replicas=1, description="one device")


class ClusterTask(NamedTuple):
    """This process's place in a TF_CONFIG cluster."""

    type: str
    index: int
    tasks: int  # in the whole cluster
    is_chief: bool  # task `chief`, else `worker` 0 when the cluster names no chief


def tf_config_task() -> ClusterTask | None:
    """This process's task in the `TF_CONFIG` cluster, or None outside a cluster of several
    tasks. ConfigError when TF_CONFIG is not the JSON TensorFlow reads."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec.get("task", {})
        tasks = sum(len(addresses) for addresses in cluster.values())
        task_type, index = str(task["type"]), int(task["index"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ConfigError(f"TF_CONFIG is not a cluster spec: expected JSON like "
                          f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": {{"type": "worker", "index": 0}}}} '
                          f"({type(error).__name__}: {error})") from None
    if tasks <= 1:
        return None
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    return ClusterTask(task_type, index, tasks, chief)


def data_parallel(backend: str) -> Replication:
    """Replication over every device this process (or its TF_CONFIG cluster) has, for the
    Keras backend `backend` ('tensorflow' or 'jax')."""
    if backend == "jax":
        return _jax_data_parallel()
    if backend == "tensorflow":
        return _tensorflow_data_parallel()
    raise ValueError(f"data parallelism runs on the tensorflow and jax backends, not KERAS_BACKEND={backend}")


def _jax_data_parallel() -> Replication:
    import jax
    import keras

    if tf_config_task() is not None:
        raise ValueError("TF_CONFIG names a cluster, but KERAS_BACKEND=jax trains on the devices of one machine: "
                         "unset TF_CONFIG, or use KERAS_BACKEND=tensorflow")
    devices = jax.devices()
    kinds = "/".join(sorted({device.platform.upper() for device in devices}))
    if len(devices) == 1:
        return Replication(replicas=1, description=f"one {kinds} device")
    distribution = keras.distribution.DataParallel(devices=devices)
    return Replication(replicas=len(devices), scope=distribution.scope,
                       description=f"keras.distribution.DataParallel over {len(devices)} {kinds} devices")


def _tensorflow_data_parallel() -> Replication:
    import tensorflow as tf

    task = tf_config_task()
    if task is not None:
        if task.type not in TRAINING_TASKS:
            raise ValueError(f"TF_CONFIG task type {task.type!r}: MultiWorkerMirroredStrategy trains on "
                             f"{' and '.join(TRAINING_TASKS)} tasks only")
        log.info("waiting for the %d tasks of the TF_CONFIG cluster to join (this is %s %d; every task "
                 "must start the same command)", task.tasks, task.type, task.index)
        strategy = _multi_worker_strategy()
        return Replication(replicas=strategy.num_replicas_in_sync, scope=strategy.scope, tasks=task.tasks,
                           is_chief=task.is_chief,
                           description=f"MultiWorkerMirroredStrategy: {strategy.num_replicas_in_sync} replicas "
                                       f"on {task.tasks} tasks; this is {task.type} {task.index}"
                                       f"{' (chief)' if task.is_chief else ''}")
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    kind = devices[0].device_type
    if len(devices) == 1:  # no strategy: it would only turn XLA's "auto" off
        return Replication(replicas=1, description=f"one {kind} device")
    strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    return Replication(replicas=strategy.num_replicas_in_sync, scope=strategy.scope,
                       description=f"MirroredStrategy over {len(devices)} {kind} devices")


def _multi_worker_strategy() -> Any:
    """`tf.distribute.MultiWorkerMirroredStrategy`, with `reduce` taking what Keras 3's `fit`
    hands it (keras-team/keras#20585, tensorflow/tensorflow#72388): a nested batch, reduced
    leaf by leaf, and per-replica scalars with `axis=0`, reduced across replicas only."""
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_one(leaf):
                scalar = axis is not None and self.experimental_local_results(leaf)[0].shape.rank == 0
                return super(KerasMultiWorkerMirroredStrategy, self).reduce(reduce_op, leaf, None if scalar else axis)

            return tf.nest.map_structure(reduce_one, value)

    return KerasMultiWorkerMirroredStrategy()
