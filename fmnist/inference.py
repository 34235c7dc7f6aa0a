"""Running a trained model on images: batches without tf.data autotuning, test-time views, saved-model loading.

Imports TensorFlow: import it only after `runtime.pin()` (the evaluate stage and `tools.predict` do).
"""

import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fmnist.errors import StageError, raise_if_stopped


class StopOnSignal(keras.callbacks.Callback):
    """Ends fit, evaluate or predict at the next step after SIGINT/SIGTERM (fmnist.errors: why at a step)."""

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


def load_model(path: Path) -> keras.Model:
    if not path.exists():
        raise StageError(f"{path}: not found")
    try:
        # safe_mode refuses models that would run arbitrary code (lambda layers) when loaded.
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise StageError(f"{path}: not a loadable Keras model ({str(error).splitlines()[0]})") from None


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return model.predict(in_batches(images, 1024), verbose=0, callbacks=[StopOnSignal()])


def embeddings(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """What the classifier layer sees for each image (the Projector's points): the model up to its last layer."""
    return predict(keras.Model(model.inputs, model.get_layer("classifier").input), images)


def mirror(images: np.ndarray) -> np.ndarray:
    return images[:, :, ::-1]  # (N, height, width, channels): reverse the width


ONE_PIXEL_SHIFTS = [(-1, 0), (1, 0), (0, -1), (0, 1)]  # up, down, left, right (rows, columns)


def shift(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Each image moved by whole pixels, the border filled with black: as train.max_shift moves training images."""
    height, width = images.shape[1:3]
    moved = np.zeros_like(images)
    moved[:, max(rows, 0) : height + min(rows, 0), max(columns, 0) : width + min(columns, 0)] = images[
        :, max(-rows, 0) : height + min(-rows, 0), max(-columns, 0) : width + min(-columns, 0)
    ]
    return moved


def views(images: np.ndarray, mirror_average: bool, shift_average: bool) -> list[np.ndarray]:
    """Every view the evaluated answer averages over (params `evaluate`); the first is the images as they are."""
    bases = [images, mirror(images)] if mirror_average else [images]
    moves = ONE_PIXEL_SHIFTS if shift_average else []
    return [*bases, *(shift(base, rows, columns) for base in bases for rows, columns in moves)]


def class_probabilities(
    model: keras.Model, images: np.ndarray, mirror_average: bool, shift_average: bool
) -> tuple[np.ndarray, np.ndarray]:
    """What the model answers as evaluated (the mean over `views`: with mirror_average and shift_average, the image,
    its mirror, and each moved one pixel up, down, left and right), and its own single-view answer."""
    answers = [predict(model, view) for view in views(images, mirror_average, shift_average)]
    return sum(answers) / len(answers), answers[0]
