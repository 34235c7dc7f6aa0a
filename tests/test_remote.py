"""A shared DVC remote on S3 (moto's S3 server on 127.0.0.1): push from one clone, pull into others, re-run nothing."""

import subprocess
from pathlib import Path

import pytest

from tests.conftest import copy_tiny_run, project_env
from tests.s3 import CREDENTIALS

pytestmark = pytest.mark.slow  # real processes of dvc, git and the stages: run by CI, not everyday


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(
        ["dvc", *args], cwd=project, env=project_env() | CREDENTIALS, capture_output=True, text=True
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=project_env(), check=True, capture_output=True)


def test_push_then_pull_into_fresh_clones_runs_nothing(tmp_path, tiny_run, s3_endpoint):
    origin = copy_tiny_run(tiny_run, tmp_path / "origin")  # `dvc repro` ran there
    dvc(origin, "remote", "add", "-d", "team", "s3://team-cache/fashion-mnist")
    dvc(origin, "remote", "modify", "team", "endpointurl", s3_endpoint)
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "results")
    assert "pushed" in dvc(origin, "push")

    git(tmp_path, "clone", "-q", str(origin), "second")
    second = tmp_path / "second"
    dvc(second, "pull")
    assert "Data and pipelines are up to date" in dvc(second, "status")
    assert "Running stage" not in dvc(second, "repro")
    assert (second / "models/model.keras").exists() and (second / "logs/fit/train").is_dir()

    git(tmp_path, "clone", "-q", str(origin), "third")
    output = dvc(tmp_path / "third", "repro", "--pull", "--allow-missing")
    assert "Running stage" not in output

    # The model alone, without cloning the repository or its data: by registered version, or by any commit.
    git(origin, "tag", "-a", "fashion-mnist-cnn@v1.0.0", "-m", "first model")
    dvc(tmp_path, "artifacts", "get", str(origin), "fashion-mnist-cnn", "--rev", "v1.0.0", "-o", "v1.keras")
    assert (tmp_path / "v1.keras").read_bytes() == (origin / "models/model.keras").read_bytes()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=origin, capture_output=True, text=True).stdout.strip()
    dvc(tmp_path, "get", str(origin), "models/model.keras", "--rev", commit, "-o", "head.keras")
    assert (tmp_path / "head.keras").read_bytes() == (origin / "models/model.keras").read_bytes()
