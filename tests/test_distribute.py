"""train.distribute: strategy choice, TF_CONFIG checks, and a real two-worker run on 127.0.0.1."""

import json
import subprocess
import sys

import keras
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist import dataset, distribute, training
from fmnist.stage_runner import StageError
from tests.conftest import copy_project, free_port, project_env, synthetic_split

pytestmark = pytest.mark.slow  # real processes of dvc, git and the stages: run by CI, not everyday

WORKERS = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="auto picks MirroredStrategy on a GPU")
def test_auto_on_a_cpu_is_the_default_strategy_and_its_process_is_chief():
    strategy = distribute.strategy_for("auto")
    assert strategy is tf.distribute.get_strategy()
    assert distribute.is_chief(strategy)


def test_tf_config_is_read_when_valid():
    assert distribute.read_tf_config({"TF_CONFIG": json.dumps(WORKERS)}) == WORKERS


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "needs the TF_CONFIG environment variable"),
        ({"TF_CONFIG": "{cluster"}, "TF_CONFIG: not a valid cluster and task"),
        ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})}, "not a valid cluster and task: 'task'"),
        ({"TF_CONFIG": json.dumps(WORKERS | {"task": {"type": "worker", "index": 2}})}, "task index 2 is not in"),
        ({"TF_CONFIG": json.dumps(WORKERS | {"task": {"type": "chief", "index": 0}})}, "'chief'"),
    ],
)
def test_bad_tf_config_is_one_clear_error(environ, expected):
    with pytest.raises(StageError, match=expected):
        distribute.read_tf_config(environ)


def worker_project(path):
    project = copy_project(
        path,
        train={"model": "seed", "epochs": 2, "batch_size": 32, "learning_rate": 0.003, "distribute": "multi_worker"},
    )
    x, y = synthetic_split(256, seed=5)
    (project / "data/prepared").mkdir(parents=True)
    dataset.save_arrays(project / "data/prepared/train.npz", x[:200, ..., None], y[:200])
    dataset.save_arrays(project / "data/prepared/val.npz", x[200:, ..., None], y[200:])
    return project


def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    # Two checkouts, as on two machines; each process gets the same cluster and its own index.
    projects = [worker_project(tmp_path / f"worker{index}") for index in range(2)]
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in projects]}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "stages.train"],
            cwd=project,
            env=project_env() | {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, project in enumerate(projects)
    ]
    outputs = []
    for worker in workers:
        try:
            outputs.append(worker.communicate(timeout=300)[0])
        finally:
            worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output

    digests = [line.split()[-1] for output in outputs for line in output.splitlines() if "weights sha256" in line]
    assert len(digests) == 2 and digests[0] == digests[1], outputs

    chief, other = projects
    assert (chief / "models/model.keras").stat().st_size > 0
    assert len((chief / "reports/training/plots/metrics/eval/accuracy.tsv").read_text().splitlines()) == 1 + 2
    for run in ("train", "validation"):  # one value per epoch: logged by the chief alone
        logged = EventAccumulator(str(chief / "logs/fit" / run), size_guidance={"tensors": 0}).Reload()
        assert [event.step for event in logged.Tensors("epoch_accuracy")] == [0, 1]
    metrics = json.loads((chief / "reports/training/metrics.json").read_text())
    assert metrics["eval"]["accuracy"] > 0.5  # both workers' gradients, one model that learned
    for output in ("models", "logs", "reports"):
        assert not (other / output).exists(), output
    assert training.weights_sha256(keras.saving.load_model(chief / "models/model.keras")) == digests[0]


def test_multi_worker_without_tf_config_fails_before_training(tmp_path):
    project = worker_project(tmp_path / "project")
    env = {key: value for key, value in project_env().items() if key != "TF_CONFIG"}
    command = [sys.executable, "-m", "stages.train"]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: train.distribute = 'multi_worker' needs the TF_CONFIG environment variable"
    assert not (project / "models").exists()
