"""Training with Keras and TensorBoard: what the train stage runs once its inputs are known good."""

import io
import time
from pathlib import Path

import keras
import numpy as np

from stages import params
from stages.dataset import CLASS_NAMES
from stages.model import build_model


class EpochStats(keras.callbacks.Callback):
    """Adds each epoch's wall time (validation included), training throughput and learning rate to the history."""

    def __init__(self, train_images: int):
        super().__init__()
        self.train_images = train_images

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.training_seconds = None

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training part is over
        if self.training_seconds is None:
            self.training_seconds = time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        logs["seconds"] = seconds  # TensorBoard tag: epoch_seconds
        logs["images_per_second"] = self.train_images / (self.training_seconds or seconds)
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def learning_rate(
    config: params.TrainParams, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=config.epochs * steps_per_epoch)
    return config.learning_rate


def compile_model(config: params.TrainParams, train_images: int) -> keras.Model:
    keras.utils.set_random_seed(config.seed)  # weights, shuffling and dropout all follow the seed
    model = build_model(config.model, config.dropout)
    rate = learning_rate(config, steps_per_epoch=-(-train_images // config.batch_size))
    optimizer = keras.optimizers.get({"class_name": config.optimizer, "config": {"learning_rate": rate}})
    if config.label_smoothing:  # smoothing needs one-hot targets: fit() one-hot encodes the labels
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def targets(labels: np.ndarray, config: params.TrainParams) -> np.ndarray:
    return keras.utils.to_categorical(labels, len(CLASS_NAMES)) if config.label_smoothing else labels


def fit(
    model: keras.Model,
    config: params.TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    log_dir: Path | None,
) -> dict[str, list[float]]:
    # EpochStats comes first so TensorBoard logs its numbers too.
    callbacks: list[keras.callbacks.Callback] = [EpochStats(len(train[0]))]
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq))
    history = model.fit(
        train[0],
        targets(train[1], config),
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(val[0], targets(val[1], config)),
        callbacks=callbacks,
        verbose=2,
    )
    return history.history


def model_summary(model: keras.Model) -> str:
    lines = io.StringIO()
    model.summary(print_fn=lambda line, **_: lines.write(line + "\n"))
    return lines.getvalue()
