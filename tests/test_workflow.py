"""The pull-request workflow is valid GitHub Actions and passes zizmor's security audit."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def test_there_is_a_pull_request_workflow_and_a_sweep_workflow():
    assert [w.name for w in WORKFLOWS] == ["review.yml", "sweep.yml"]
    text = WORKFLOWS[0].read_text()
    assert "pull_request:" in text and "python -m stages.report" in text
    assert "--reproduce" in text and "--comment" in text
    sweep = WORKFLOWS[1].read_text()
    assert "workflow_dispatch:" in sweep and "max-parallel: ${{ inputs.max-parallel }}" in sweep
    for command in ("stages.sweep plan", "stages.sweep run", "stages.sweep show"):
        assert command in sweep


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"],
        [str(BIN / "zizmor"), "--offline", "--no-progress"],
    ],
    ids=["check-jsonschema", "zizmor"],
)
def test_workflow_checks(command):
    result = subprocess.run([*command, *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
