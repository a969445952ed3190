"""Pick the tf.distribute strategy from what is visible: several workers in ``TF_CONFIG`` ->
MultiWorkerMirroredStrategy; several GPUs -> MirroredStrategy; no GPU but several logical CPU
devices (how tests split one CPU) -> MirroredStrategy over them; otherwise the default strategy."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from cxr_tf.training.config import STRATEGIES
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.parallel import workers_in_tf_config

__all__ = ["is_chief", "prepare_fit", "strategy_for", "workers_in_tf_config"]

log = logging.getLogger(__name__)


def strategy_for(kind: str = "auto") -> tf.distribute.Strategy:
    """``auto`` (see module doc), ``default``, ``mirrored`` or ``multiworker``."""
    if kind == "auto":
        if workers_in_tf_config() > 1:
            kind = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        elif not tf.config.list_logical_devices("GPU") and len(tf.config.list_logical_devices("CPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
        else:  # CPU devices: no NCCL; reduce on one device (collectives can clash between strategies)
            strategy = tf.distribute.MirroredStrategy(
                [d.name for d in tf.config.list_logical_devices("CPU")],
                cross_device_ops=tf.distribute.ReductionToOneDevice())
    elif kind == "default":
        strategy = tf.distribute.get_strategy()
    else:
        raise CxrConfigError(f"unknown strategy {kind!r}", key="strategy",
                             choices=STRATEGIES)
    log.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def is_chief() -> bool:
    """True unless ``TF_CONFIG`` says this process is a non-chief worker (who must not write
    shared outputs such as checkpoints or logs into the run directory)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    cfg = json.loads(raw)
    task = cfg.get("task", {})
    cluster = cfg.get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0



def prepare_fit(model, dataset, strategy: tf.distribute.Strategy) -> None:
    """Work around two Keras 3.15 faults under MultiWorkerMirroredStrategy (TensorFlow issue
    #72388; other strategies are left alone):

    - Keras builds the model from the first *distributed* batch reduced across replicas, and that
      collective reduce of uint8 image batches fails across processes ("Attempt to convert a
      value (PerReplica...)"). The build needs only shapes and dtypes: build from one local batch
      of ``dataset`` and skip Keras' own.
    - Keras reduces each step's logs with ``strategy.reduce("MEAN", v, axis=0)``, which fails on
      scalars ("Invalid reduction dimension 0 for input with 0 dimensions"). The train step's
      logs are given one axis of length 1, so the same reduce is the mean over all replicas.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    batch = next(iter(dataset.take(1)))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    step = model.train_step

    def train_step(data):
        return {k: tf.reshape(v, [1]) for k, v in step(data).items()}
    model.train_step = train_step
