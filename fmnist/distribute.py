"""Which `tf.distribute` strategy the train stage runs under (`train.distribute` in params.yaml).

auto: MirroredStrategy over all visible GPUs when there are any, else TensorFlow's default
strategy (one process, one device). none: always the default strategy. multi_worker:
MultiWorkerMirroredStrategy across the processes listed in the standard TF_CONFIG variable;
`batch_size` is then the global batch, split evenly across workers.
"""

import json
import os
from collections.abc import Mapping

from fmnist.stage_runner import StageError


def read_tf_config(environ: Mapping[str, str] = os.environ) -> dict:
    """TF_CONFIG, checked before TensorFlow loads: a cluster of workers and this process's place in it."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise StageError("train.distribute = 'multi_worker' needs the TF_CONFIG environment variable")
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        members = cluster[task["type"]]
        if not isinstance(members, list) or not 0 <= task["index"] < len(members):
            raise ValueError(f"task index {task['index']} is not in cluster.{task['type']}")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise StageError(f"TF_CONFIG: not a valid cluster and task: {error}") from None
    return tf_config


def strategy_for(distribute: str):
    import tensorflow as tf

    if distribute == "multi_worker":
        # Reads TF_CONFIG and waits for every worker to join; must come before other TF ops.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if distribute == "auto" and tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def on_gpus() -> bool:
    """Whether training runs on GPUs (exact mode hides them): then a batch lives in their memory, not the host's,
    and TensorFlow names running out of it (ResourceExhaustedError)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def is_chief(strategy) -> bool:
    """The one process that writes outputs: `chief` if the cluster has one, else worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
