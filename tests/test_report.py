"""The pull-request report and gate, in a temp git repo with two commits whose params and metrics differ."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from stages import report
from tests.conftest import REPO, copy_project, project_env

HISTORY_HEADER = "epoch,accuracy,images_per_second,learning_rate,loss,seconds,val_accuracy,val_loss"


def git(project, *args):
    subprocess.run(["git", *args], cwd=project, env=project_env(), check=True, capture_output=True)


def write_results(project, accuracy: float, epochs: int):
    values = yaml.safe_load((project / "params.yaml").read_text())
    values["train"]["epochs"] = epochs
    (project / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    reports = project / "reports"
    reports.mkdir(exist_ok=True)
    per_class = {"Shirt": accuracy - 0.2}
    (reports / "metrics.json").write_text(
        json.dumps({"accuracy": accuracy, "loss": 1 - accuracy, "per_class_accuracy": per_class})
    )
    (reports / "train_metrics.json").write_text(json.dumps({"val_accuracy": accuracy + 0.01}))
    rows = [
        f"{e},{accuracy - 0.1 / e:.4f},1000,0.001,{0.5 / e:.4f},10,{accuracy - 0.05 / e:.4f},{0.4 / e:.4f}"
        for e in range(1, epochs + 1)
    ]
    (reports / "history.csv").write_text("\n".join([HISTORY_HEADER, *rows]) + "\n")


@pytest.fixture
def two_commits(tmp_path):
    project = copy_project(tmp_path / "project")
    git(project, "init", "-q")
    subprocess.run(["dvc", "init", "-q"], cwd=project, env=project_env(), check=True)
    write_results(project, accuracy=0.90, epochs=3)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "base")
    git(project, "tag", "base")
    return project


def run_report(project, *args):
    env = project_env() | {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "stages.report", "--base", "base", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )


def test_report_shows_base_head_change_and_changed_params(two_commits):
    write_results(two_commits, accuracy=0.92, epochs=4)
    git(two_commits, "commit", "-qam", "head")
    result = run_report(two_commits, "--gate")
    assert result.returncode == 0, result.stderr
    text = (two_commits / "review" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| reports/")]
    assert table[0] == "| reports/metrics.json:accuracy | 0.9000 | 0.9200 | +0.0200 |"  # test accuracy first
    assert "| reports/metrics.json:per_class_accuracy.Shirt | 0.7000 | 0.7200 | +0.0200 |" in table
    assert "| train.epochs | 3 | 4 |" in text
    assert "Gate passed" in text and text.startswith(report.MARKER)
    assert (two_commits / "review" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    specs = json.loads((two_commits / "review" / "curves.vl.json").read_text())
    assert {row["rev"] for row in specs["Accuracy"]["data"]["values"]} == {"base", "workspace"}


def test_gate_fails_on_an_accuracy_drop_beyond_the_threshold(two_commits):
    write_results(two_commits, accuracy=0.894, epochs=3)  # -0.6 pp, the limit is 0.5 pp
    result = run_report(two_commits, "--gate")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: test accuracy fell from 0.9000 to 0.8940, more than the allowed 0.5 pp"
    assert "Gate failed" in (two_commits / "review" / "report.md").read_text()


def test_gate_tolerates_a_drop_within_the_threshold(two_commits):
    write_results(two_commits, accuracy=0.896, epochs=3)
    assert run_report(two_commits, "--gate").returncode == 0


def test_gate_rows():
    rows = [("reports/metrics.json:accuracy", 0.9, 0.89, -0.01)]
    assert "fell from 0.9000 to 0.8900" in report.gate_failure(rows, 0.005)
    assert report.gate_failure(rows, 0.02) is None
    assert report.gate_failure([("reports/metrics.json:accuracy", None, 0.9, None)], 0.005) is None


def test_an_unknown_base_revision_is_one_clear_error(two_commits):
    result = run_report(two_commits, "--base", "no-such-branch")
    assert result.returncode == 1
    assert result.stderr.startswith("error: dvc metrics diff no-such-branch")
    assert len(result.stderr.strip().splitlines()) == 1
