"""Faults lose nothing: SIGKILL a real `dvc repro` mid-stage, then `dvc repro` completes with the same
metrics as a run that was never interrupted; a second concurrent `dvc repro` fails fast on DVC's lock."""

import http.server
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project, project_env, write_dataset


class TricklingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files slowly (about 20 KB/s), so a download is still running when it is killed."""

    def do_GET(self):
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for start in range(0, len(body), 2048):
                self.wfile.write(body[start : start + 2048])
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def new_repo(root: Path, name: str, source: str, checksums: dict) -> Path:
    project = copy_project(
        root / name,
        download={"sources": [source], "sha256": checksums, "backoff_s": 0},
        train={"epochs": 3, "learning_rate": 0.003},
    )
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, env=project_env(), check=True)
    return project


def repro(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", "repro"], cwd=project, env=project_env(), capture_output=True, text=True, timeout=600)


def start_repro(project: Path) -> subprocess.Popen:
    env = project_env() | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        ["dvc", "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_when(process: subprocess.Popen, marker: str, delay: float) -> str:
    """SIGKILL the repro and every stage process it started, `delay` s after `marker` is printed."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return "".join(seen)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return root, write_dataset(root / "mirror")


@pytest.fixture(scope="module")
def reference_metrics(dataset):
    root, checksums = dataset
    project = new_repo(root, "reference", str(root / "mirror"), checksums)
    assert repro(project).returncode == 0
    return json.loads((project / "reports/metrics.json").read_text())


@pytest.mark.parametrize(
    ("stage", "marker", "delay"),
    [
        ("download", "Running stage 'download'", 1.5),
        ("preprocess", "Running stage 'preprocess'", 0.5),
        ("train", "Epoch 2/3", 0.2),
    ],
)
def test_sigkill_mid_stage_then_repro_completes_with_the_same_metrics(
    dataset, reference_metrics, serve, stage, marker, delay
):
    root, checksums = dataset
    source = serve(root / "mirror", TricklingHandler) if stage == "download" else str(root / "mirror")
    project = new_repo(root, f"killed-{stage}", source, checksums)
    output = kill_when(start_repro(project), marker, delay)
    assert marker in output
    assert not (project / "reports/metrics.json").exists()  # it really died before the end

    if stage == "download":  # the rerun needs no slow server; only the source's location differs
        values = yaml.safe_load((project / "params.yaml").read_text())
        values["download"]["sources"] = [str(root / "mirror")]
        (project / "params.yaml").write_text(yaml.safe_dump(values))
    result = repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((project / "reports/metrics.json").read_text()) == reference_metrics
    assert not list(project.rglob(".*.tmp*")), "temporary files left behind"


def test_a_second_concurrent_repro_fails_fast_on_the_lock(dataset):
    root, checksums = dataset
    project = new_repo(root, "concurrent", str(root / "mirror"), checksums)
    first = start_repro(project)
    for line in first.stdout:
        if "Running stage 'train'" in line:
            break
    started = time.monotonic()
    second = repro(project)
    assert second.returncode != 0
    # DVC's repo lock ("Unable to acquire lock") or its per-output lock ("... is busy ..."), by timing.
    assert re.search(r"Unable to acquire lock|is busy", second.stderr), second.stderr
    assert time.monotonic() - started < 30
    rest = first.stdout.read()
    assert first.wait(timeout=300) == 0, rest
    assert (project / "reports/metrics.json").exists()
