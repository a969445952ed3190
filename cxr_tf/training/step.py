"""A flat train function for Keras' ``fit``: one ``tf.function`` that reads a batch and runs the
model's ``train_step`` under its strategy.

Keras' TensorFlow trainer traces the step as a ``tf.function`` called from a second one that reads
the iterator (the outer one exists for ``steps_per_execution`` > 1). With one step per execution
the nesting only costs: it added about 0.45 s (10 %) to DenseNet121's first step on a 2-core CPU,
the inner function's own tracing wrapper and a second function to instantiate
(``benchmarks/training_startup.py``). The step itself is Keras' ``train_step``, the outputs are
reduced across replicas as Keras does, and running out of data raises the ``OutOfRangeError``
that ``fit``'s epoch iterator turns into the end of the epoch, as with Keras' own function.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def use_flat_train_function(model) -> bool:
    """Give a compiled ``model`` the flat train function (``fit`` uses a set ``train_function``
    until the next ``compile``); False, leaving Keras' own, where it does not apply: eager
    execution, XLA, several steps per execution, another backend or another Keras layout."""
    import keras
    import tensorflow as tf

    if (keras.backend.backend() != "tensorflow" or model.run_eagerly or model.jit_compile
            or model.steps_per_execution != 1):
        return False
    try:
        from keras.src.backend.tensorflow.trainer import reduce_per_replica
    except ImportError:   # a Keras whose trainer moved: keep its own function
        log.debug("keras.src.backend.tensorflow.trainer.reduce_per_replica not found: Keras' train function")
        return False
    strategy = model.distribute_strategy

    def train_step(data):
        # as Keras' function: optional inputs (absent sample weights) reach train_step as None
        data = tf.nest.map_structure(lambda x: None if isinstance(x, tf.experimental.Optional) else x, data)
        return model.train_step(data)

    @tf.function(reduce_retracing=True)
    def one_step(iterator):
        outputs = strategy.run(train_step, args=(iterator.get_next(),))
        return reduce_per_replica(outputs, strategy, reduction="auto")

    keras_function = None

    def train_function(iterator):
        nonlocal keras_function
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            return one_step(iterator)
        if keras_function is None:   # an input fit does not hand over as a tf.data iterator
            keras_function = model._make_function(model.train_step)
        return keras_function(iterator)

    model.train_function = train_function
    return True
