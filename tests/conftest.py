"""Tiny synthetic Fashion-MNIST look-alikes, written as real IDX files, and a local HTTP server."""

import contextlib
import fcntl
import functools
import gzip
import hashlib
import http.server
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import settings

from fmnist import paths

pytest_plugins = ["tests.s3"]  # the s3_endpoint fixture (moto's S3 server)

# Property tests: a few hundred examples each in the suite; HYPOTHESIS_PROFILE=deep searches far longer.
settings.register_profile("suite", max_examples=300, deadline=None)
settings.register_profile("deep", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

REPO = Path(__file__).resolve().parents[1]
PROJECT_OUTPUTS = ("data", "models", "logs", "reports")  # DVC outputs: tests work in copies, never here
# .ci/run installs every tool the tests use (Chromium, shellcheck, the npm packages, Debian's copy of the data) and
# sets this: there a missing tool fails its tests instead of skipping them. Elsewhere (a laptop, the fast tier on
# macOS and ARM in ci.yml) they skip.
TOOLS_REQUIRED = os.environ.get("FMNIST_TOOLS_REQUIRED") == "1"


def _outputs_snapshot() -> dict[str, int]:
    paths = (path for folder in PROJECT_OUTPUTS for path in (REPO / folder).rglob("*"))
    return {str(path.relative_to(REPO)): path.stat().st_mtime_ns for path in paths}


@pytest.fixture(scope="session", autouse=True)
def project_outputs_untouched():
    """Fails the run if any test wrote into the project's own data/, models/, logs/ or reports/."""
    before = _outputs_snapshot()
    yield
    after = _outputs_snapshot()
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert not changed, f"tests wrote into the project's own outputs: {changed[:5]}"


MUTATION_RELAY = Path(__file__).parent / "mutation_relay"


def _recording_for_mutmut() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def pytest_configure(config):
    """Under `mutmut run`'s first pass, processes the tests start report the functions they call (mutation_relay)."""
    if _recording_for_mutmut() and "FMNIST_MUTMUT_HITS" not in os.environ:
        import tempfile

        os.environ["FMNIST_MUTMUT_HITS"] = tempfile.mkdtemp(prefix="mutmut-hits-")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MUTATION_RELAY), os.environ.get("PYTHONPATH")]))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown():
    """Hand mutmut what this test's child processes called, before mutmut files its own record of the test."""
    hits = os.environ.get("FMNIST_MUTMUT_HITS")
    if hits and _recording_for_mutmut():
        from mutmut.state import state

        for file in Path(hits).glob("*.hits"):
            state()._stats.update(file.read_text().split())
            file.unlink()


MUTANT_TEST_LIMIT_S = 300  # the slowest everyday test took 27 s in mutmut's first pass


def _running_a_mutant() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") not in (None, "", "stats")


class RanPastLimit(Exception):
    pass


def _ran_past_limit(signum, _frame):
    raise RanPastLimit(f"ran past {MUTANT_TEST_LIMIT_S} s under a mutant: it hangs")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    """Under a mutant's run, a test (fixtures included) that runs past MUTANT_TEST_LIMIT_S fails. A mutant that makes a
    stage wait forever (on a thread that never ends, say) uses no CPU, and mutmut's only limit is CPU time."""
    if not _running_a_mutant():
        yield
        return
    signal.signal(signal.SIGALRM, _ran_past_limit)
    signal.alarm(MUTANT_TEST_LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)


def pytest_collection_modifyitems(items):
    """Under a mutant's run, the fastest tests first. mutmut runs them with -x, so a caught mutant then costs the
    first fast test that fails, not a stage's process that happened to be listed first."""
    stats = REPO / "mutmut-stats.json"  # the first pass's timings; tests run in mutants/, the copy that holds it
    if not _running_a_mutant() or not stats.exists():
        return
    import json

    durations = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: durations.get(item.nodeid, math.inf))


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))


def synthetic_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images a small CNN can learn: class k lights up band k of the image, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels.astype(np.uint8)


def write_dataset(folder: Path, train: int = 200, test: int = 50) -> dict[str, str]:
    """Write the four files; return params-style {file name: decompressed SHA-256}."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_split(train, seed=1)
    test_x, test_y = synthetic_split(test, seed=2)
    arrays = {
        "train_images": train_x,
        "train_labels": train_y,
        "test_images": test_x,
        "test_labels": test_y,
    }
    checksums = {}
    for role, array in arrays.items():
        name = paths.RAW_FILES[role]
        write_idx(folder / name, array)
        checksums[name] = hashlib.sha256(idx_bytes(array)).hexdigest()
    return checksums


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "source"
    return folder, write_dataset(folder)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder without logging each request (the base of every test server's handler)."""

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder, handler=None) -> base URL of an HTTP server on 127.0.0.1 for the test."""
    servers = []

    def start(folder: Path, handler=QuietHandler) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def copy_project(dest: Path, **sections: dict) -> Path:
    """Copy the pipeline (code, dvc.yaml, params.yaml) to `dest`, updating params keys per section."""
    dest.mkdir(parents=True, exist_ok=True)
    for package in ("stages", "fmnist", "tools"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "requirements.txt"):
        shutil.copy(REPO / name, dest / name)
    values = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, updates in sections.items():
        values[section].update(updates)
    (dest / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return dest


# write_dataset's 200 training images leave 160 after the validation split: 2 steps per epoch at batch 128. No
# shifts: synthetic_split's classes are bands 2 pixels apart, so a 2-pixel shift would turn one class into another.
TINY_TRAIN = {"batch_size": 128, "learning_rate": 0.003, "max_shift": 0}
TINY_RUN_EPOCHS = 2  # tiny_run's


def project_on_tiny_data(root: Path, epochs: int = 2) -> Path:
    """A copy of the pipeline in root/project whose download source is tiny IDX files in root/source."""
    checksums = write_dataset(root / "source")
    return copy_project(
        root / "project",
        download={"sources": [str(root / "source")], "sha256": checksums},
        train=TINY_TRAIN | {"epochs": epochs},
    )


def run_every_stage(project: Path) -> Path:
    """Run each stage's module in `project`, as `dvc repro` would but without DVC; fail on the first error."""
    for stage in ("download", "preprocess", "train", "evaluate"):
        result = subprocess.run(
            [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=project_env(), capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    return project


def checked(cwd: Path, *args: str, env: dict | None = None) -> str:
    """Run a command (git, dvc) in `cwd`; its output, or a failed assertion with both streams."""
    result = subprocess.run(args, cwd=cwd, env=env or project_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A git repository (nothing committed) in which `dvc repro` ran once on tiny data (TINY_RUN_EPOCHS epochs), for
    tests that read its outputs and never write them, and a start for those that need a reproduced pipeline
    (copy_tiny_run). Built once per pytest run: under pytest-xdist the first worker to ask builds it in the run's
    shared folder and the others wait for it, rather than each training its own (a module fixture was built up to
    three times a run, once per worker and again after work stealing)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, above each worker's own
    root = shared / "tiny-run"
    with (shared / "tiny-run.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            project = project_on_tiny_data(root, TINY_RUN_EPOCHS)
            for command in (["git", "init", "-q", "-b", "main"], ["dvc", "init", "-q"], ["dvc", "repro"]):
                checked(project, *command)
            (root / "done").touch()
    return root / "project"


def copy_tiny_run(tiny_run: Path, dest: Path) -> Path:
    """A copy of tiny_run to change: its git repository, DVC cache, dvc.lock and outputs. DVC's state database (which
    remembers files' hashes by inode) stays behind: DVC hashes the copies afresh."""
    shutil.copytree(tiny_run, dest, symlinks=True, ignore=lambda folder, _: ["tmp"] if folder.endswith(".dvc") else [])
    return dest


def pushed_baseline(
    root: Path, tiny_run: Path, remote: str, *remote_options: tuple[str, str], env: dict | None = None
) -> str:
    """tiny_run's reproduced pipeline in root/project, committed; its outputs `dvc push`ed to `remote` (with these
    `dvc remote modify` options) and main pushed to a bare Git remote, root/origin.git. Returns the commit."""
    project = copy_tiny_run(tiny_run, root / "project")
    checked(project, "dvc", "remote", "add", "-d", "team", remote, env=env)
    for key, value in remote_options:
        checked(project, "dvc", "remote", "modify", "team", key, value, env=env)
    checked(project, "git", "add", "-A", env=env)
    checked(project, "git", "commit", "-qm", "baseline", env=env)
    checked(project, "dvc", "push", env=env)
    checked(root, "git", "init", "-q", "--bare", "-b", "main", "origin.git", env=env)
    checked(project, "git", "push", "-q", str(root / "origin.git"), "main", env=env)
    return checked(project, "git", "rev-parse", "HEAD", env=env).strip()


def queue_workers(project: Path) -> list[int]:
    """The `dvc queue` workers of `project` still running (their pid files, checked against /proc)."""
    alive = []
    for pid_file in (project / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.pid"):
        with contextlib.suppress(ValueError, OSError):  # gone already: no process, or a pid reused by another
            pid = int(pid_file.read_text())
            if b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
    return alive


def finished_queue(project: Path, timeout: float) -> str:
    """`dvc queue status` once nothing is queued or running. Each `dvc queue status` costs a second of CPU, taken
    from the experiments: while a worker runs it is asked only every 15 s (in case the worker hangs as it shuts
    down, see kill_queue_workers), otherwise every second."""
    deadline, asked, status = time.monotonic() + timeout, -math.inf, ""
    while True:
        if not queue_workers(project) or time.monotonic() - asked > 15:
            status, asked = checked(project, "dvc", "queue", "status"), time.monotonic()
            if not re.search(r"\b(Queued|Running)\b", status):
                return status
        assert time.monotonic() < deadline, status
        time.sleep(1)


def kill_queue_workers(project: Path) -> None:
    """Leave no worker behind: with -j 2, DVC 3.67's worker that finds the queue empty first sometimes hangs while
    shutting down ("monitor: shutting down due to empty queue", never "done"), after every task has succeeded."""
    for pid in queue_workers(project):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def project_env() -> dict[str, str]:
    """Environment in which `dvc` and the stages' `python` are this virtual environment's."""
    bin_dir = str(Path(sys.executable).parent)
    identity = {
        f"GIT_{role}_{field}": value
        for role in ("AUTHOR", "COMMITTER")
        for field, value in (("NAME", "test"), ("EMAIL", "test@example.org"))
    }
    return {**os.environ, **identity, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
