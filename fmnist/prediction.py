"""Running a trained model on images: saved-model loading, test-time views, averaged class probabilities.

Imports TensorFlow: import it only after `exact_mode.pin()` (the evaluate stage and `tools.predict` do).
"""

import zipfile
from pathlib import Path

import keras
import numpy as np

from fmnist.batches import StopOnSignal, in_batches
from fmnist.stage_runner import StageError


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
