"""Stage `train`: fit the model named in params on the prepared arrays, log to TensorBoard.

Writes models/model.keras, its summary, per-epoch history (a `dvc plots` file) and the
final validation metrics; TensorBoard logs go to logs/ (scalars, histograms, graph).
"""

import csv
import io
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages import dataset, params, paths
from stages.errors import run_stage
from stages.files import atomic_dir, atomic_path, write_text
from stages.model import INPUT_SHAPE, build_model


class EpochSpeed(keras.callbacks.Callback):
    """Adds each epoch's wall time and training throughput to the history."""

    def __init__(self, train_images: int):
        super().__init__()
        self.train_images = train_images

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        logs["seconds"] = seconds  # TensorBoard tag: epoch_seconds
        logs["images_per_second"] = self.train_images / seconds


def compile_model(config: params.TrainParams) -> keras.Model:
    keras.utils.set_random_seed(config.seed)  # weights, shuffling and dropout all follow the seed
    model = build_model(config.model, config.dropout)
    optimizer = keras.optimizers.get(
        {"class_name": config.optimizer, "config": {"learning_rate": config.learning_rate}}
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(
    model: keras.Model,
    config: params.TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    log_dir: Path | None,
) -> dict[str, list[float]]:
    # EpochSpeed comes first so TensorBoard logs its numbers too.
    callbacks: list[keras.callbacks.Callback] = [EpochSpeed(len(train[0]))]
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq))
    history = model.fit(
        *train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=val,
        callbacks=callbacks,
        verbose=2,
    )
    return history.history


def write_graph(model: keras.Model, log_dir: Path) -> None:
    """Keras 3's TensorBoard callback writes no graph: trace the forward pass ourselves."""
    forward = tf.function(lambda pixels: model(pixels, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec((None, *INPUT_SHAPE), tf.uint8)).graph
    with tf.summary.create_file_writer(str(log_dir / "train")).as_default():
        tf.summary.graph(graph)


def model_summary(model: keras.Model) -> str:
    lines = io.StringIO()
    model.summary(print_fn=lambda line, **_: lines.write(line + "\n"))
    return lines.getvalue()


def write_history(history: dict[str, list[float]], path: Path) -> None:
    columns = sorted(history)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["epoch", *columns])
        for epoch, row in enumerate(zip(*(history[c] for c in columns)), start=1):
            writer.writerow([epoch, *(f"{value:.6g}" for value in row)])


def main() -> None:
    config = params.load().train
    train = dataset.load_arrays(paths.TRAIN_ARRAYS)
    val = dataset.load_arrays(paths.VAL_ARRAYS)
    started = time.perf_counter()
    model = compile_model(config)
    with atomic_dir(paths.LOGS) as log_dir:
        write_graph(model, log_dir)
        history = fit(model, config, train, val, log_dir)
    train_seconds = time.perf_counter() - started

    with atomic_path(paths.MODEL) as tmp:
        model.save(tmp)
    write_text(paths.MODEL_SUMMARY, model_summary(model))
    write_history(history, paths.HISTORY_CSV)
    final = {
        "val_accuracy": history["val_accuracy"][-1],
        "val_loss": history["val_loss"][-1],
        "parameters": model.count_params(),
        "train_seconds": round(train_seconds, 1),
    }
    write_text(paths.TRAIN_METRICS, json.dumps(final, indent=2) + "\n")
    print(f"train: {train_seconds:.1f}s, validation accuracy {final['val_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)
