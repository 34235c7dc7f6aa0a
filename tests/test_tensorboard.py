"""TensorBoard shows everything for a run: read back with TensorBoard's own reader and served over HTTP."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stages import params
from stages.model import build_model
from tests.conftest import REPO, free_port, project_on_tiny_data, run_every_stage

EPOCHS = 2


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Run every stage's main on tiny data; return the logs/ folder."""
    project = project_on_tiny_data(tmp_path_factory.mktemp("tensorboard"), EPOCHS)
    return run_every_stage(project) / "logs"


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
    for tag in ("epoch_learning_rate", "epoch_seconds", "epoch_images_per_second"):
        assert steps(load(logs / "fit" / "train"), tag, "scalars") == every_epoch


def test_histograms_of_every_weight_every_epoch(logs):
    train = load(logs / "fit" / "train")
    histograms = [tag for tag in train.Tags()["tensors"] if tag.endswith("/histogram")]
    config = params.load(REPO / "params.yaml").train
    model = build_model(config.model, config.dropout)
    assert sorted(histograms) == sorted(f"{weight.path}/histogram" for weight in model.weights)
    for tag in histograms:
        assert steps(train, tag, "histograms") == list(range(EPOCHS))


def test_graph_text_and_sample_images(logs):
    train = load(logs / "fit" / "train")
    assert "Conv2D" in str(train.Graph())
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


def test_tensorboard_serves_the_runs_and_plugins(logs):
    port = free_port()
    tensorboard = [str(Path(sys.executable).parent / "tensorboard")]
    server = subprocess.Popen(
        [*tensorboard, "--logdir", str(logs), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def get(path: str, data: bytes | None = None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                runs = get("/data/runs")
                if len(runs) >= 3:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "tensorboard did not start"
            time.sleep(0.5)
        assert {"fit/train", "fit/validation", "evaluate"} <= set(runs)
        active = {name for name, plugin in get("/data/plugins_listing").items() if plugin["enabled"]}
        assert {"scalars", "histograms", "distributions", "graphs", "images", "text", "hparams"} <= active
        assert "epoch_accuracy" in get("/data/plugin/scalars/tags")["fit/validation"]
        experiment = get("/data/plugin/hparams/experiment", json.dumps({"experimentName": ""}).encode())
        assert {h["name"] for h in experiment["hparamInfos"]} >= {"model", "epochs", "learning_rate", "val_fraction"}
        assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"test_accuracy", "val_accuracy"}
    finally:
        server.terminate()
        server.wait(timeout=10)
