"""TensorBoard shows everything for a run: read back with TensorBoard's own reader, served over HTTP, and looked at
in headless Chromium as a person would."""

import io
import json
import re
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.graph import keras_util
from tensorboard.plugins.projector import projector_config_pb2

from fmnist import dataset, params, tensorboard_logs
from fmnist.model import build_model
from fmnist.params.all_sections import AllParams
from tests.conftest import REPO, TINY_RUN_EPOCHS, TOOLS_REQUIRED, free_port, project_on_tiny_data, run_every_stage
from tools import screenshots

EPOCHS = TINY_RUN_EPOCHS


@pytest.fixture
def logs(tiny_run):
    """The logs/ folder of every stage's main run on tiny data (EPOCHS epochs)."""
    return tiny_run / "logs"


def load(run_dir) -> EventAccumulator:
    return EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "images": 0}).Reload()


def steps(run: EventAccumulator, tag: str, plugin: str) -> list[int]:
    assert run.SummaryMetadata(tag).plugin_data.plugin_name == plugin, tag
    return [event.step for event in run.Tensors(tag)]


def test_scalars_one_value_per_epoch(logs):
    every_epoch = list(range(EPOCHS))
    for run in ("train", "validation"):
        for tag in ("epoch_loss", "epoch_accuracy"):
            assert steps(load(logs / "fit" / run), tag, "scalars") == every_epoch
    assert steps(load(logs / "fit" / "train"), "epoch_learning_rate", "scalars") == every_epoch
    # Times live in the timing run, one per training, named by its start (UTC); none in the DVC outputs.
    (timing_run,) = (logs / "timing").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}", timing_run.name)
    timing = load(timing_run)
    for tag in ("epoch_seconds", "epoch_images_per_second"):
        assert steps(timing, tag, "scalars") == every_epoch
        assert tag not in load(logs / "fit" / "train").Tags()["tensors"]
    run = timing.Tensors("run")[0].tensor_proto.string_val[0].decode()
    assert re.search(r" cores, exact mode: \d+\.\d s; weights sha256 [0-9a-f]{64}$", run), run


def test_a_second_run_gives_the_same_bytes_in_every_dvc_output(logs, tmp_path):
    """Event files name their host, process and time and stamp every event; the graph and hparams serialize maps
    in hash order. Made reproducible, every output in dvc.yaml comes out byte for byte (names too), so a
    reproduction leaves dvc.lock's hashes and the DVC cache as they were."""
    first = logs.parent
    second = run_every_stage(project_on_tiny_data(tmp_path, EPOCHS))
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    outputs = [
        next(iter(out)) if isinstance(out, dict) else out
        for stage in pipeline["stages"].values()
        for kind in ("outs", "metrics", "plots")
        for out in stage.get(kind, [])
    ]
    assert "logs/fit" in outputs and "logs/evaluate" in outputs

    def contents(project):
        files = [path for out in outputs for path in [project / out, *sorted((project / out).rglob("*"))]]
        return {path.relative_to(project).as_posix(): path.read_bytes() for path in files if path.is_file()}

    before, after = contents(first), contents(second)
    assert sorted(before) == sorted(after)
    assert [name for name in before if before[name] != after[name]] == []
    assert len([name for name in before if "tfevents" in name]) >= 5
    assert len(list((second / "logs" / "timing").iterdir())) == 1  # the times: beside, in no output


def test_histograms_of_every_weight_every_epoch(logs):
    train = load(logs / "fit" / "train")
    histograms = [tag for tag in train.Tags()["tensors"] if tag.endswith("/histogram")]
    config = params.load(AllParams, REPO / "params.yaml").train
    model = build_model(config.model, config.dropout)
    assert sorted(histograms) == sorted(f"{weight.path}/histogram" for weight in model.weights)
    for tag in histograms:
        assert steps(train, tag, "histograms") == list(range(EPOCHS))


def test_graph_text_and_sample_images(logs):
    train = load(logs / "fit" / "train")
    assert "Conv2D" in str(train.Graph())
    # The conceptual graph: the Keras config that TensorBoard's Graphs plugin draws layer by layer.
    assert steps(train, "keras", "graph_keras_model") == [0]
    config = json.loads(train.Tensors("keras")[0].tensor_proto.string_val[0])
    drawn = [node.name for node in keras_util.keras_model_to_graph_def(config).node]
    model = build_model(params.load(AllParams, REPO / "params.yaml").train.model, 0.1)
    assert drawn == [f"{model.name}/{name}" for name in ["pixels", *[layer.name for layer in model.layers]]]
    assert steps(train, "model_summary", "text") == [0]
    assert "(Conv2D)" in train.Tensors("model_summary")[0].tensor_proto.string_val[0].decode()
    assert steps(train, "sample_inputs", "images") == [0]


def test_evaluation_images_and_hparams(logs):
    evaluation = load(logs / "evaluate")
    assert steps(evaluation, "confusion_matrix", "images") == [0]
    assert steps(evaluation, "misclassified", "images") == [0]
    for tag in ("test_accuracy", "test_loss", "val_accuracy"):
        assert steps(evaluation, tag, "scalars") == [0]
    assert "_hparams_/session_start_info" in evaluation.Tags()["tensors"]


def test_one_precision_recall_curve_per_class_on_the_test_set(logs):
    evaluation = load(logs / "evaluate")
    tags = [tag for tag in evaluation.Tags()["tensors"] if tag.endswith("/pr_curves")]
    classes = enumerate(dataset.CLASS_NAMES)
    assert sorted(tags) == sorted(f"{index}_{name.replace('/', '-')}/pr_curves" for index, name in classes)
    for tag in tags:
        assert steps(evaluation, tag, "pr_curves") == [0]
        counts = tf.make_ndarray(evaluation.Tensors(tag)[0].tensor_proto)
        assert counts.shape == (6, 201)  # TP, FP, TN, FN, precision, recall at 201 thresholds
        assert counts[0, 0] + counts[1, 0] == 50  # at threshold 0 every test image counts as positive


def test_pr_curves_are_the_classes_own(tmp_path):
    """A classifier that is right with certainty on class 0 and unsure elsewhere: class 0's curve is perfect."""
    labels = np.array([0, 0, 1, 2, 3, 3])
    probabilities = np.full((6, 10), 0.1, dtype=np.float32)
    probabilities[:, 0] = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    tensorboard_logs.write_pr_curves(tmp_path, labels, probabilities)
    run = load(tmp_path)
    true_positives, false_positives, _, false_negatives, precision, recall = tf.make_ndarray(
        run.Tensors("0_T-shirt-top/pr_curves")[0].tensor_proto
    )
    assert true_positives[100] == 2 and false_positives[100] == 0 and false_negatives[100] == 0  # threshold 0.5
    assert precision[100] == recall[100] == 1
    assert tf.make_ndarray(run.Tensors("3_Dress/pr_curves")[0].tensor_proto)[0, 0] == 2  # 2 dresses in all


def test_projector_holds_the_test_set_embeddings_images_and_labels(logs):
    run_dir = logs / "evaluate"
    config = text_format.Parse((run_dir / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    # TensorBoard refuses asset paths outside the config's folder, and the folder moves (DVC's cache): relative.
    assert not config.model_checkpoint_path
    assert embedding.metadata_path == "metadata.tsv" and embedding.sprite.image_path == "sprite.png"
    vectors = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run_dir))).get_tensor(embedding.tensor_name)
    assert vectors.shape == (50, 256)  # every test image, the dense layer's 256 outputs
    assert "/" not in (run_dir / "checkpoint").read_text().split('"')[1]  # the checkpoint is named relatively
    rows = [line.split("\t") for line in (run_dir / "metadata.tsv").read_text().splitlines()]
    assert rows[0] == ["label", "predicted", "correct"] and len(rows) == 51
    test_labels = np.load(logs.parent / "data" / "prepared" / "test.npz")["y"]
    assert [row[0] for row in rows[1:]] == [dataset.CLASS_NAMES[label] for label in test_labels]
    assert all(row[2] == ("yes" if row[0] == row[1] else "no") for row in rows[1:])
    assert list(embedding.sprite.single_image_dim) == [28, 28]
    assert Image.open(run_dir / "sprite.png").size == (8 * 28, 8 * 28)  # 50 images in an 8 x 8 grid


def test_sprite_lays_images_out_row_by_row_dark_on_white():
    images = np.zeros((5, 28, 28, 1), dtype=np.uint8)
    images[3] = 200  # the 4th image: row 1, column 1 of a 3 x 3 grid
    sprite = np.asarray(Image.open(io.BytesIO(tensorboard_logs.sprite_png(images))))
    assert sprite.shape == (84, 84)
    assert (sprite[28:56, 0:28] == 55).all() and (sprite[0:28, 0:28] == 255).all()
    assert (sprite[56:, 56:] == 255).all()  # cells past the last image stay white


def test_tensorboard_serves_the_runs_and_plugins(logs):
    with screenshots.serving(logs, free_port()) as url:

        def get(path: str, data: bytes | None = None):
            request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        deadline = time.monotonic() + 60
        while len(runs := get("/data/runs")) < 3:  # it answers before it has read every run
            assert time.monotonic() < deadline, f"tensorboard lists only {runs}"
            time.sleep(0.5)
        assert {"fit/train", "fit/validation", "evaluate"} <= set(runs)
        active = {name for name, plugin in get("/data/plugins_listing").items() if plugin["enabled"]}
        assert {
            "scalars", "histograms", "distributions", "graphs", "images", "text", "hparams", "pr_curves"
        } <= active  # fmt: skip
        assert get("/data/plugin/projector/runs") == ["evaluate"]  # (it reports itself active only once asked)
        assert "epoch_accuracy" in get("/data/plugin/scalars/tags")["fit/validation"]
        experiment = get("/data/plugin/hparams/experiment", json.dumps({"experimentName": ""}).encode())
        assert {h["name"] for h in experiment["hparamInfos"]} >= {"model", "epochs", "learning_rate", "val_fraction"}
        assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"test_accuracy", "val_accuracy"}


@pytest.mark.slow
@pytest.mark.skipif(
    not screenshots.CHROMIUM and not TOOLS_REQUIRED, reason="needs Debian's chromium (.ci/run installs it)"
)
def test_every_dashboard_shows_the_run_in_a_browser(logs):
    """Each dashboard the README lists, opened in headless Chromium: its data on screen, not only in the HTTP API."""
    with screenshots.serving(logs, free_port()) as url:
        seen = screenshots.check_dashboards(url)
    assert seen["projector"].startswith("Points: 50,")  # every test image, no more
