"""The pipeline and the tools on a system without Linux's interfaces, as on macOS: no `os.sched_getaffinity`, no
psutil `cpu_affinity`, no /proc, and no CPUID (executable memory refused, as on a hardened kernel; an ARM CPU has no
CPUID at all). Each process loads tests/not_linux/sitecustomize.py, which hides them."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fmnist import paths
from tests.conftest import REPO, copy_tiny_run, project_env

pytestmark = pytest.mark.slow  # a pipeline run and a reproduction: CI, not everyday

NOT_LINUX = REPO / "tests" / "not_linux"


def not_linux_env(project) -> dict[str, str]:
    return project_env() | {"PYTHONPATH": f"{NOT_LINUX}:{project}"}


def run(args, cwd, env) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_hiding_takes_effect(tiny_run):
    """Without this, the test below could pass on a Linux that still shows everything."""
    probe = (
        "import os, psutil\n"
        "from fmnist import cpu\n"
        "assert not hasattr(os, 'sched_getaffinity') and not hasattr(psutil.Process, 'cpu_affinity')\n"
        "try:\n    open('/proc/cpuinfo')\nexcept FileNotFoundError:\n    pass\n"
        "else:\n    raise AssertionError('/proc')\n"
        "assert cpu.flags() == frozenset(), cpu.flags()\n"
        "assert cpu.usable_cores() == os.cpu_count()\n"
        "assert psutil.Process().cwd()  # psutil itself still works, as it does on macOS\n"
    )
    run([sys.executable, "-c", probe], tiny_run, not_linux_env(tiny_run))


def test_pipeline_predict_and_review_complete_without_linux_interfaces(tiny_run, tmp_path):
    project = copy_tiny_run(tiny_run, tmp_path / "project")
    env = not_linux_env(project)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "base"], project, env)
    committed = json.loads((project / paths.FINGERPRINT).read_text())["weights_sha256"]

    repro = run(["dvc", "repro", "--force"], project, env)
    for stage in ("download", "preprocess", "train", "evaluate"):
        assert f"Running stage '{stage}'" in repro.stdout
    assert "is not one, so its results will differ" in repro.stdout + repro.stderr  # exact mode saw no AVX2
    # No CPU flags read, yet the same bits: exact mode pins the ISA rather than trusting what the CPU reports.
    assert json.loads((project / paths.FINGERPRINT).read_text())["weights_sha256"] == committed
    timing = sorted((project / paths.TIMING_LOGS).iterdir())
    assert timing, "no timing run written"

    image = tmp_path / "shirt.png"
    Image.fromarray(np.full((40, 30), 200, np.uint8)).save(image)
    predicted = json.loads(run([sys.executable, "-m", "tools.predict", "--json", str(image)], project, env).stdout)
    assert len(predicted) == 1

    review = run([sys.executable, "-m", "tools.review", "--base", "HEAD", "--reproduce"], project, env)
    report = (project / "review" / "report.md").read_text()
    assert f"weights digest `{committed[:12]}`" in report, review.stdout
    assert "**Reproduced exactly**" in report
