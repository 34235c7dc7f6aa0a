"""A sweep point against remotes that fail: moto's S3 server behind a proxy that refuses, stalls, throttles or cuts
requests (tests/fault_proxy.py), a Git remote that is not there, a local-folder remote that cannot be written, and
runners that are killed. Each failure is one line naming the remote and the step, before any training where it can
be; run again, the point completes, and what `sweep show` ranks is always whole."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import checked, free_port, project_env, pushed_baseline
from tests.fault_proxy import Fault, FaultProxy
from tests.s3 import BUCKET, CREDENTIALS
from tools import sweep

pytestmark = pytest.mark.slow  # real processes of dvc, git, moto and the stages: run by CI, not everyday

SWEEP = "train.learning_rate=0.001,0.002"
REMOTE = f"s3://{BUCKET}/fashion-mnist"
WHERE = re.escape(f"DVC remote 'team' ({REMOTE})")
RUNNER_ENV = CREDENTIALS | {"AWS_EC2_METADATA_DISABLED": "true"}
# A remote that stays dead is retried by botocore (5 attempts) within each of s3fs's: with the 1 s timeouts set
# below, 2 attempts make such a test take seconds, not minutes (docs/faults.md: how long users wait).
FAIL_FAST = project_env() | RUNNER_ENV | {"AWS_MAX_ATTEMPTS": "2"}


def sh(cwd: Path, *args: str) -> str:
    return checked(cwd, *args, env=project_env() | RUNNER_ENV)


def sweep_run(runner: Path, *extra: str, env: dict | None = None) -> tuple[int, str, float]:
    """Run point 0 of SWEEP in `runner`: exit status, output (the error line last), seconds."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tools.sweep", "run", SWEEP, "0", *extra],
        cwd=runner, env=env or project_env() | RUNNER_ENV, capture_output=True, text=True,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr, time.monotonic() - start


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def failed(result: tuple[int, str, float], name: str, expected: str) -> bool:
    """Exit 1, nothing trained, and the last line `error: sweep run NAME: <expected regex>`."""
    status, output, _ = result
    assert status == 1 and "Running stage" not in output, output
    assert re.fullmatch(rf"error: sweep run {name}: {expected}", last_line(output)), output
    return True


@pytest.fixture
def shared(tmp_path, tiny_run, s3_endpoint):
    """A baseline run pushed to a bare Git remote and to S3 through the fault proxy: (proxy, origin.git, name)."""
    proxy = FaultProxy(s3_endpoint)
    server, endpoint = proxy.serve()
    options = ("endpointurl", endpoint), ("read_timeout", "1"), ("connect_timeout", "1")
    baseline = pushed_baseline(tmp_path, tiny_run, REMOTE, *options, env=project_env() | RUNNER_ENV)
    yield proxy, tmp_path / "origin.git", f"sweep-{sweep.sweep_id(SWEEP, baseline)}-0"
    proxy.clear()
    server.shutdown()


def clone(origin: Path, dest: Path) -> Path:
    sh(dest.parent, "git", "clone", "-q", str(origin), dest.name)
    return dest


def remote_refs(origin: Path, name: str) -> list[str]:
    listing = sh(origin, "git", "for-each-ref", "--format=%(refname)", "refs/exps")
    return [ref for ref in listing.split() if ref.endswith("/" + name)]


def test_bad_credentials_and_unreachable_remotes_fail_before_any_training(tmp_path, shared):
    proxy, origin, name = shared
    runner = clone(origin, tmp_path / "runner")
    checks = []

    proxy.access_key = "AKIAOTHERKEY"  # the runner signs with another key
    checks.append((sweep_run(runner), rf"{WHERE} refused access \(write\): .*InvalidAccessKeyId.*; nothing was run"))
    proxy.access_key = None

    no_keys = {k: v for k, v in project_env().items() if not k.startswith("AWS_")} | {"HOME": str(tmp_path)}
    no_keys |= {"AWS_EC2_METADATA_DISABLED": "true"}
    checks.append((sweep_run(runner, env=no_keys), rf"no credentials for {WHERE}: set AWS_ACCESS_KEY_ID .*"))

    gone = r"cannot reach Git remote '.*gone\.git': .*; nothing was run"
    checks.append((sweep_run(runner, "--remote", str(tmp_path / "gone.git")), gone))

    proxy.add(Fault("status", status=503, code="SlowDown"))  # throttled for good: busy, not out of reach
    checks.append((sweep_run(runner, env=FAIL_FAST), rf"{WHERE} is throttling requests, .*SlowDown.*; nothing was run"))
    proxy.clear()

    sh(runner, "dvc", "remote", "modify", "--local", "team", "endpointurl", f"http://127.0.0.1:{free_port()}")
    checks.append((sweep_run(runner, env=FAIL_FAST), rf"cannot reach {WHERE}: .*; nothing was run"))

    (tmp_path / "a-file").write_text("")  # a local-folder remote under a file cannot be created or written
    sh(runner, "dvc", "remote", "add", "--local", "folder", str(tmp_path / "a-file/cache"))
    unwritable = r"cannot reach DVC remote 'folder' \(.*a-file/cache\): .*; nothing was run"
    checks.append((sweep_run(runner, "--dvc-remote", "folder"), unwritable))

    for result, expected in checks:
        assert failed(result, name, expected) and result[2] < 60
    assert remote_refs(origin, name) == []


def test_a_point_survives_refused_stalled_throttled_and_killed_transfers(tmp_path, shared):
    proxy, origin, name = shared
    runner = clone(origin, tmp_path / "runner")
    objects = "files"  # DVC's objects and their listings; the access check's probe is not among them
    pulling = f"pulling the baseline's outputs from {WHERE} failed:"

    # The remote refuses, then stalls, the pull: nothing is trained, nothing is pushed.
    proxy.add(Fault("status", method="GET", status=403, code="AccessDenied", path=objects))
    assert failed(sweep_run(runner), name, rf"{pulling} .*AccessDenied.*; nothing was trained")
    proxy.clear()
    proxy.add(Fault("stall", method="GET", path=objects))
    stalled = sweep_run(runner, env=FAIL_FAST)
    assert failed(stalled, name, rf"{pulling} .*[Tt]imeout.*; nothing was trained") and stalled[2] < 120
    proxy.clear()

    # Transient 500s and a cut connection on the pull are retried; the push stalls and the runner is killed
    # (SIGKILL, its children too).
    proxy.add(Fault("status", method="GET", times=2, status=500, code="InternalError", path=objects))
    proxy.add(Fault("cut", method="GET", times=1, path=objects))
    proxy.add(Fault("stall", method="PUT", path=objects))
    log = tmp_path / "killed-runner.log"
    with log.open("w") as output:
        killed = subprocess.Popen(
            [sys.executable, "-m", "tools.sweep", "run", SWEEP, "0"], cwd=runner, env=project_env() | RUNNER_ENV,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    while not proxy.stalled.wait(0.5):
        assert killed.poll() is None, f"the runner ended before its push:\n{log.read_text()}"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert proxy.count("InternalError") == 2 and proxy.count("cut") == 1
    assert remote_refs(origin, name) == []  # nothing half-pushed is listed
    proxy.clear()

    # Run again while the remote refuses uploads: no training, one line, still nothing listed.
    proxy.add(Fault("status", method="PUT", status=403, code="AccessDenied", path=objects))
    refused = sweep_run(runner)
    assert failed(
        refused, name, rf"pushing its outputs to {WHERE} failed: .*AccessDenied.*; its Git ref was not pushed, .*"
    )
    assert f"{name} already ran here" in refused[1]
    assert remote_refs(origin, name) == []
    proxy.clear()

    # ... and while it stalls every upload: the same, once the timeouts run out.
    proxy.add(Fault("stall", method="PUT", path=objects))
    stalled = sweep_run(runner, env=FAIL_FAST)
    pushing = rf"pushing its outputs to {WHERE} failed: .*[Tt]imeout.*; its Git ref was not pushed, .*"
    assert failed(stalled, name, pushing) and stalled[2] < 120
    assert remote_refs(origin, name) == []
    proxy.clear()

    # A ref pushed without its outputs (as `dvc exp push` leaves one killed between the two): not ranked.
    sh(runner, "dvc", "exp", "push", "--no-cache", str(origin), name)
    reviewer = clone(origin, tmp_path / "reviewer")
    table = sh(reviewer, sys.executable, "-m", "tools.sweep", "show", "--prefix", "sweep-")
    assert f"Incomplete, not ranked (Git ref pushed, outputs missing from the DVC remote): {name}" in table, table
    assert f"| {name} |" not in table
    own = sh(runner, sys.executable, "-m", "tools.sweep", "show", "--prefix", "sweep-")  # the outputs in its cache
    assert f"Incomplete, not ranked (Git ref pushed, outputs missing from the DVC remote): {name}" in own, own

    # Throttled (503 SlowDown) three times: retried, pushed, still without training.
    proxy.add(Fault("status", method="PUT", times=3, status=503, code="SlowDown", path=objects))
    status, output, _ = sweep_run(runner)
    assert status == 0 and "Running stage" not in output, output
    assert proxy.count("SlowDown") == 3 and last_line(output) == f"sweep: pushed experiment {name}"
    assert len(remote_refs(origin, name)) == 1
    table = sh(reviewer, sys.executable, "-m", "tools.sweep", "show", "--prefix", "sweep-")
    assert f"| {name} |" in table and "Incomplete" not in table, table

    # Another runner given the same point: refused before training, the pushed experiment untouched.
    before = remote_refs(origin, name), sh(origin, "git", "rev-parse", remote_refs(origin, name)[0])
    again = sweep_run(clone(origin, tmp_path / "second-runner"))
    assert failed(again, name, f"Git remote 'origin' already has an experiment named {name} .*nothing overwritten.*")
    assert (remote_refs(origin, name), sh(origin, "git", "rev-parse", remote_refs(origin, name)[0])) == before
