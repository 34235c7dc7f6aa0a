"""TensorBoard summaries that Keras 3's TensorBoard callback does not write: graph, text, images, hparams."""

from pathlib import Path

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from stages.dataset import class_names
from stages.figures import image_grid, png_bytes
from stages.model import INPUT_SHAPE


def write_graph(model: keras.Model, run_dir: Path) -> None:
    """The Graphs tab: trace the model's forward pass as a tf.function and log its graph."""
    forward = tf.function(lambda pixels: model(pixels, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec((None, *INPUT_SHAPE), tf.uint8)).graph
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        tf.summary.graph(graph)


def write_text(run_dir: Path, tag: str, text: str, step: int = 0) -> None:
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        # Indented by four spaces, TensorBoard's Markdown shows it as preformatted text.
        tf.summary.text(tag, "\n".join("    " + line for line in text.splitlines()), step=step)


def write_images(run_dir: Path, pngs: dict[str, bytes], step: int = 0) -> None:
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        for tag, png in pngs.items():
            tf.summary.image(tag, tf.image.decode_png(png, channels=4)[tf.newaxis], step=step)


def write_hparams(run_dir: Path, hparams: dict[str, object], metrics: dict[str, float]) -> None:
    """One HParams session: the run's hyperparameters with its final metrics, so runs can be ranked."""
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        hparams_api.hparams(hparams)
        for tag, value in metrics.items():
            tf.summary.scalar(tag, value, step=0)


def write_model_overview(model: keras.Model, run_dir: Path, summary: str, images, labels) -> None:
    """What a training run logs before its first epoch: graph, model summary, a grid of sample inputs."""
    write_graph(model, run_dir)
    write_text(run_dir, "model_summary", summary)
    write_images(run_dir, {"sample_inputs": png_bytes(image_grid(images[:32], class_names(labels[:32])))})
