"""TensorBoard summaries that Keras 3's TensorBoard callback does not write: graphs, text, images, hparams,
PR curves and the embedding projector; and event files made reproducible, so that the same run gives the same bytes."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from fmnist.dataset import CLASS_NAMES, class_names
from fmnist.figures import image_grid, png_bytes
from fmnist.model import INPUT_SHAPE

# The projector's files, relative to its run folder: TensorBoard refuses asset paths that resolve outside it.
EMBEDDING_CHECKPOINT = "embedding.ckpt"
EMBEDDING_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # tf.train.Checkpoint's name for the variable
PROJECTOR_METADATA = "metadata.tsv"
PROJECTOR_SPRITE = "sprite.png"


@contextmanager
def summary_writer(run_dir: Path) -> Iterator[None]:
    """tf.summary calls inside go to an event file in run_dir, flushed and closed on exit."""
    writer = tf.summary.create_file_writer(str(run_dir))
    try:
        with writer.as_default():
            yield
    finally:
        writer.close()


def write_graph(model: keras.Model, run_dir: Path) -> None:
    """The Graphs tab's op graph: the forward pass traced as a tf.function, one expandable group of ops per layer.

    Keras 3's TensorBoard callback writes only the conceptual graph (tag `keras`: the model's config, which
    TensorBoard draws layer by layer). It writes an op graph only when model.train_function is a tf.function, and
    Keras 3 wraps it in a plain Python function.
    """
    forward = tf.function(lambda pixels: model(pixels, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec((None, *INPUT_SHAPE), tf.uint8)).graph
    with summary_writer(run_dir):
        tf.summary.graph(graph)


def write_text(run_dir: Path, tag: str, text: str, step: int = 0) -> None:
    with summary_writer(run_dir):
        # Indented by four spaces, TensorBoard's Markdown shows it as preformatted text.
        tf.summary.text(tag, "\n".join("    " + line for line in text.splitlines()), step=step)


def write_images(run_dir: Path, pngs: dict[str, bytes], step: int = 0) -> None:
    with summary_writer(run_dir):
        for tag, png in pngs.items():
            tf.summary.image(tag, tf.image.decode_png(png, channels=4)[tf.newaxis], step=step)


def write_hparams(run_dir: Path, hparams: dict[str, object], metrics: dict[str, float]) -> None:
    """One HParams session: the run's hyperparameters with its final metrics, so runs can be ranked."""
    with summary_writer(run_dir):
        hparams_api.hparams(hparams, start_time_secs=0)  # a time would make each run's bytes differ
        for tag, value in metrics.items():
            tf.summary.scalar(tag, value, step=0)


def write_model_overview(model: keras.Model, run_dir: Path, summary: str, images, labels) -> None:
    """What a training run logs before its first epoch: graph, model summary, a grid of sample inputs."""
    write_graph(model, run_dir)
    write_text(run_dir, "model_summary", summary)
    write_images(run_dir, {"sample_inputs": png_bytes(image_grid(images[:32], class_names(labels[:32])))})


def write_pr_curves(run_dir: Path, labels: np.ndarray, probabilities: np.ndarray) -> None:
    """The PR Curves tab: one precision-recall curve per class (that class against the rest), computed by
    TensorBoard's own pr_curve summary and written through TF2's raw-protobuf summary writer."""
    with summary_writer(run_dir):
        for index, name in enumerate(CLASS_NAMES):
            tag = f"{index}_{name.replace('/', '-')}"  # `/` would split the tag into groups; numbered in class order
            summary = pr_curve_summary.pb(
                tag, labels == index, probabilities[:, index].astype(np.float32), display_name=name
            )
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)


def sprite_png(images: np.ndarray) -> bytes:
    """Every image in one square grid, row by row, as the projector expects; dark on white like Zalando's photos
    (the light-on-black originals look like black squares on the projector's white background)."""
    count, height, width = images.shape[:3]
    side = int(np.ceil(np.sqrt(count)))
    cells = np.zeros((side * side, height, width), dtype=np.uint8)  # black cells past the last image: white below
    cells[:count] = images.reshape(count, height, width)
    grid = 255 - cells.reshape(side, side, height, width).transpose(0, 2, 1, 3).reshape(side * height, side * width)
    buffer = io.BytesIO()
    # Pillow's default compression: 0.4 s for the test set's sprite against 2.7 s with optimize=True, 1% larger.
    Image.fromarray(grid, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_projector(
    run_dir: Path, embeddings: np.ndarray, images: np.ndarray, labels: np.ndarray, predicted: np.ndarray
) -> None:
    """The Projector tab: one point per image (its embedding), drawn as the image itself, with its class, the
    predicted class and whether they agree as metadata to colour and search by."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # The checkpoint's state file names it relatively, so the folder can move (DVC's cache, tools.compare).
    tf.train.Checkpoint(embedding=tf.Variable(embeddings)).save(str(run_dir / EMBEDDING_CHECKPOINT))
    rows = ["label\tpredicted\tcorrect"] + [
        f"{CLASS_NAMES[actual]}\t{CLASS_NAMES[guess]}\t{'yes' if actual == guess else 'no'}"
        for actual, guess in zip(labels, predicted)
    ]
    (run_dir / PROJECTOR_METADATA).write_text("\n".join(rows) + "\n")
    (run_dir / PROJECTOR_SPRITE).write_bytes(sprite_png(images))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = EMBEDDING_TENSOR
    embedding.metadata_path = PROJECTOR_METADATA
    embedding.sprite.image_path = PROJECTOR_SPRITE
    embedding.sprite.single_image_dim.extend(images.shape[1:3])
    projector.visualize_embeddings(str(run_dir), config)


EVENT_FILE_MARK = "tfevents"  # what TensorBoard looks for in a file name


def _write_order(path: Path) -> tuple[int, int, int]:
    """events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2, the host possibly dotted: n counts the process's writers."""
    parts = path.name.split(".")
    return int(parts[3]), int(parts[-3]), int(parts[-2])


def make_reproducible(log_root: Path) -> None:
    """Rewrite every event file under log_root so that the same run gives the same bytes, on any machine.

    Event files name the host, the process and the time they were opened, stamp every event with the wall time,
    and hold the op graph and the hparams serialized with their maps (node attributes, hparam values) in hash order.
    Each run folder's files are renamed events.out.tfevents.<n>.v2 in the order they were opened, every event's
    wall_time is set to 0 (the Unix epoch, as reproducible builds do with SOURCE_DATE_EPOCH) and those maps are
    re-serialized sorted.
    What TensorBoard draws by step is unchanged; its Relative and Wall axes have nothing to show. The run's real
    times are in logs/timing/, which no DVC output holds.
    """
    for run_dir in sorted({path.parent for path in log_root.rglob(f"*{EVENT_FILE_MARK}*")}):
        originals = sorted(run_dir.glob(f"*{EVENT_FILE_MARK}*"), key=_write_order)
        for index, original in enumerate(originals):
            events = [Event.FromString(record.numpy()) for record in tf.data.TFRecordDataset(str(original))]
            rewritten = run_dir / f".events.{index}.tmp"
            with tf.io.TFRecordWriter(str(rewritten)) as writer:
                for event in events:
                    event.wall_time = 0.0
                    if event.graph_def:
                        graph = GraphDef.FromString(event.graph_def)
                        event.graph_def = graph.SerializeToString(deterministic=True)
                    for value in event.summary.value:
                        plugin = value.metadata.plugin_data
                        if plugin.plugin_name == hparams_metadata.PLUGIN_NAME:
                            content = HParamsPluginData.FromString(plugin.content)
                            plugin.content = content.SerializeToString(deterministic=True)
                    writer.write(event.SerializeToString(deterministic=True))
            original.unlink()
            rewritten.rename(run_dir / f"events.out.{EVENT_FILE_MARK}.{index:03d}.v2")
