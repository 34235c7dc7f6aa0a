"""Running a stage with bad params: one line naming the key, exit 1, and every existing output untouched."""

import subprocess
import sys

import pytest
import yaml

from tests.conftest import copy_project, project_env

OUTPUTS = [
    "data/raw/train-images-idx3-ubyte.gz",
    "data/prepared/train.npz",
    "models/model.keras",
    "reports/metrics.json",
]


@pytest.fixture
def project(tmp_path):
    project = copy_project(tmp_path / "project")
    for output in OUTPUTS:
        (project / output).parent.mkdir(parents=True, exist_ok=True)
        (project / output).write_text(f"previous good {output}")
    return project


def set_param(project, key: str, value) -> None:
    values = yaml.safe_load((project / "params.yaml").read_text())
    section, name = key.split(".")
    values[section][name] = value
    (project / "params.yaml").write_text(yaml.safe_dump(values))


def run_stage(project, stage: str):
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=project_env(), capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("stage", "key", "value", "message"),
    [
        ("train", "train.epochs", -1, "params.yaml: train.epochs = -1: Input should be greater than or equal to 1"),
        (
            "train",
            "train.model",
            "vgg",
            "params.yaml: train.model = 'vgg': Input should be 'seed', 'conv2_bn', 'conv3_bn' or 'conv3_slim'",
        ),
        (
            "preprocess",
            "preprocess.val_fraction",
            1.0,
            "params.yaml: preprocess.val_fraction = 1.0: Input should be less than 1",
        ),
        (
            "download",
            "download.retries",
            "many",
            "params.yaml: download.retries = 'many': Input should be a valid integer",
        ),
    ],
)
def test_bad_param_stops_the_stage_before_any_work(project, stage, key, value, message):
    set_param(project, key, value)
    result = run_stage(project, stage)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"]  # no TensorFlow start-up either
    for output in OUTPUTS:
        assert (project / output).read_text() == f"previous good {output}"


@pytest.mark.parametrize(("text", "message"), [("", "is empty"), ("train: {epochs: [", "not valid YAML")])
def test_broken_params_file(project, text, message):
    (project / "params.yaml").write_text(text)
    result = run_stage(project, "train")
    assert result.returncode == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (project / "models/model.keras").read_text() == "previous good models/model.keras"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.mkdir(), "params.yaml: cannot read: Is a directory"),
        (lambda path: path.write_bytes(b"train:\n  epochs: \xff\xfe\n"), "not UTF-8 text (at byte offset 17)"),
        (lambda path: path.write_text("train: {epochs: 3}\ntrain: {epochs: 4}\n"), 'found duplicate key "train"'),
        (lambda path: path.write_text("train: !!python/object:os.system {}\n"), "could not determine a constructor"),
    ],
)
def test_no_params_file_problem_shows_a_traceback(project, make, message):
    (project / "params.yaml").unlink()
    make(project / "params.yaml")
    for stage in ("download", "preprocess", "train", "evaluate"):
        result = run_stage(project, stage)
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: params.yaml: ") and message in line


def test_a_bug_shows_its_traceback_then_which_stage_failed(project):
    """An unexpected error is not bad input: the traceback stays, and the last line says what it means."""
    code = (project / "stages/preprocess.py").read_text()
    assert "    started = time.perf_counter()\n" in code
    # Every occurrence: under mutation testing (docs/mutation.md) main() is there once per mutant.
    (project / "stages/preprocess.py").write_text(code.replace("    started = time.perf_counter()\n", "    1 / 0\n"))
    result = run_stage(project, "preprocess")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "ZeroDivisionError" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: stage preprocess failed on an unexpected error (above: a bug, not bad input);"
        " its outputs were left as they were"
    )
    for output in OUTPUTS:
        assert (project / output).read_text() == f"previous good {output}"
