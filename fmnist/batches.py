"""Feeding arrays to Keras: deterministic tf.data batches, and a callback that stops a step loop on Ctrl-C.

Imports TensorFlow: import it only after `exact_mode.pin()`.
"""

import keras
import tensorflow as tf

from fmnist.stage_runner import raise_if_stopped


class StopOnSignal(keras.callbacks.Callback):
    """Ends fit, evaluate or predict at the next step after SIGINT/SIGTERM (fmnist.stage_runner: why at a step)."""

    def on_train_batch_end(self, batch, logs=None):
        raise_if_stopped()

    on_test_batch_end = on_predict_batch_end = on_train_batch_end


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset without tf.data's autotuning thread, which stalled training for about 20 s at a time.

    Keras makes new iterators over the training and validation data every epoch, and deleting an old one waits
    for its autotuning thread to end. Here that wait left the process idle, every thread asleep, for about 20 s
    in 2 to 10 of every 20 epochs (gdb: the main thread in ~RootDataset::Iterator, the autotuning thread in the
    timed wait of Model::OptimizeLoop). Without the thread: no such epoch in 20, and the same weights bit for bit.
    Nothing here needs tuning: the maps run in one thread ahead of the step and take about 2% of its time.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def in_batches(arrays, batch_size: int) -> tf.data.Dataset:
    """Arrays in order, in batches, for validation and prediction (what Keras would make of them, untuned)."""
    return without_autotune(tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size).prefetch(1))
