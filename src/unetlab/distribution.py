"""Data-parallel training on every accelerator of this machine, or of a TensorFlow cluster.

`data_parallel()` returns a `Replication`: build, compile and fit the model inside its
`scope()`, and feed it batches of `trainer.batch_size x replicas` (the global batch; each
replica computes the gradient of its share and the replicas average them).

- TensorFlow backend: `tf.distribute.MirroredStrategy` over the GPUs (or, without GPUs, the
  logical CPU devices), or `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG`
  names a cluster of several tasks: every worker runs the same command, and one, the chief
  (task `chief`, else `worker` 0), keeps the records.
- JAX backend: `keras.distribution.DataParallel` over `jax.devices()` (one process).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, NamedTuple


@dataclass(frozen=True)
class Replication:
    """How a training is spread: `replicas` model copies, each on its share of every batch.

    `scope` opens where the model is built, compiled and fitted; `is_chief` says whether this
    process keeps the records (one process per training unless a TF_CONFIG cluster runs it);
    `batch_multiple` is what every batch's size must divide by (JAX shards each batch evenly
    across its devices; TensorFlow splits uneven batches itself)."""

    replicas: int
    description: str
    scope: Callable[[], ContextManager] = contextlib.nullcontext
    is_chief: bool = True
    batch_multiple: int = 1

    def distribute(self, dataset):
        """`dataset` with the sharding a cluster needs (each worker keeps its part of each
        batch; the inputs are not split by file); unchanged on one machine."""
        if self.is_chief and self.replicas == 1:
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
    tasks. ValueError when TF_CONFIG is not the JSON TensorFlow reads."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec.get("task", {})
        tasks = sum(len(addresses) for addresses in cluster.values())
        task_type, index = str(task["type"]), int(task["index"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster spec: expected JSON like "
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
    raise ValueError(f"trainer.distribution=data_parallel supports the tensorflow and jax backends, "
                     f"not KERAS_BACKEND={backend}")


def _jax_data_parallel() -> Replication:
    import jax
    import keras

    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    kinds = sorted({device.platform.upper() for device in devices})
    return Replication(replicas=len(devices), scope=distribution.scope, batch_multiple=len(devices),
                       description=f"keras.distribution.DataParallel over {len(devices)} {'/'.join(kinds)} device(s)")


def _tensorflow_data_parallel() -> Replication:
    import tensorflow as tf

    task = tf_config_task()
    if task is not None:
        strategy = _multi_worker_strategy()
        return Replication(replicas=strategy.num_replicas_in_sync, scope=strategy.scope, is_chief=task.is_chief,
                           description=f"MultiWorkerMirroredStrategy: {strategy.num_replicas_in_sync} replicas "
                                       f"on {task.tasks} tasks; this is {task.type} {task.index}"
                                       f"{' (chief)' if task.is_chief else ''}")
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    kinds = sorted({device.device_type for device in devices})
    return Replication(replicas=strategy.num_replicas_in_sync, scope=strategy.scope,
                       description=f"MirroredStrategy over {len(devices)} {'/'.join(kinds)} device(s)")


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
