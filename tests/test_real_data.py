"""Smoke run on the real Fashion-MNIST: one epoch of the article's CNN through every stage's main.

Uses Debian's copy (apt-get install dataset-fashion-mnist), which CI installs; skipped elsewhere.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_project, project_env

# The article's model and training settings (README: "the article's run, exactly").
ARTICLE_RUN = {
    "model": "seed",
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "lr_schedule": "constant",
    "weight_decay": 0.0,
    "dropout": 0.25,
    "label_smoothing": 0.0,
    "augment": "none",
    "max_shift": 0,
}

DEBIAN_COPY = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not DEBIAN_COPY.is_dir() and not os.environ.get("CI"),
        reason="needs Debian's dataset-fashion-mnist (CI installs it)",
    ),
]


def test_one_epoch_on_real_data_beats_080(tmp_path):
    project = copy_project(
        tmp_path,
        download={"sources": [str(DEBIAN_COPY)]},
        train=ARTICLE_RUN | {"epochs": 1},
        evaluate={"mirror_average": False, "shift_average": False},
    )
    for stage in ("download", "preprocess", "train", "evaluate"):
        result = subprocess.run(
            [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=project_env(), capture_output=True, text=True
        )
        assert result.returncode == 0, f"{stage}:\n{result.stdout}\n{result.stderr}"
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["accuracy"] > 0.80
    print(f"real data, 1 epoch: test accuracy {metrics['accuracy']}")
