"""Running out of memory, for real: train refused before it starts, and a training process the kernel kills.

Each test confines its processes to a memory cgroup of its own (a child of this process's), so the only OOM killer it
can set off is that cgroup's, never the machine's: CI shares the machine. Where no such cgroup can be made (not root,
no memory controller), the tests that need one skip and say so.
"""

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import yaml

from fmnist import memory
from tests.conftest import project_env, write_dataset
from tests.test_faults import git_status, new_repo, outputs, repro, set_params, temporaries

pytestmark = pytest.mark.slow

TRAIN_IMAGES = 6000  # 4,800 after the validation split: a batch of them needs gigabytes, a tiny model run seconds


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A committed project after a complete `dvc repro` on 6,000 synthetic images."""
    root = tmp_path_factory.mktemp("memory")
    checksums = write_dataset(root / "mirror", train=TRAIN_IMAGES)
    project = new_repo(root, "project", str(root / "mirror"), checksums)
    set_params(project, "train", epochs=1)
    result = repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    for git in (["add", "-A"], ["commit", "-qm", "a finished run"]):
        subprocess.run(["git", *git], cwd=project, env=project_env(), check=True)
    return project


def copy_of(project: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", f"{project}/.", str(dest)], check=True)
    return dest


def tensorboard_runs(project: Path) -> list[str]:
    """The runs `tensorboard --logdir logs` lists: every folder under logs/ with an event file."""
    return sorted({str(path.parent.relative_to(project / "logs")) for path in (project / "logs").rglob("*tfevents*")})


def _limit_file(folder: Path) -> Path:
    return folder / ("memory.max" if (folder / "memory.max").exists() else "memory.limit_in_bytes")


@contextmanager
def memory_cgroup() -> Iterator[Path]:
    """A memory cgroup of this test's own, below this process's; every process left in it is killed at the end."""
    folders = memory._cgroup_dirs()
    if not folders:
        pytest.skip("no memory cgroup to read (not Linux, or no memory controller)")
    folder = folders[0] / f"pytest-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir()
        _limit_file(folder).write_text("max" if _limit_file(folder).name == "memory.max" else "-1")
    except OSError as error:
        pytest.skip(f"cannot make a memory cgroup under {folders[0]}: {error.strerror}")
    try:
        yield folder
    finally:
        for pid in (folder / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def in_cgroup(folder: Path, command: list[str]) -> list[str]:
    return ["sh", "-c", f'echo $$ > {folder}/cgroup.procs && exec "$@"', "sh", *command]


def usage(folder: Path) -> int:
    return int(((folder / "memory.current") if (folder / "memory.current").exists() else
                (folder / "memory.usage_in_bytes")).read_text())  # fmt: skip


def assert_only_set(project: Path, **train) -> None:
    """params.yaml differs from the commit by the `-S` values only, as DVC leaves it after a failed `dvc exp run`."""
    show = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=project, capture_output=True, text=True, check=True)
    committed = yaml.safe_load(show.stdout)
    committed["train"].update(train)
    assert yaml.safe_load((project / "params.yaml").read_text()) == committed


def test_a_batch_too_big_for_the_memory_there_is_refused_before_training_and_loses_nothing(finished, tmp_path):
    """`dvc exp run -S train.batch_size=4800` with 2 GiB to use: one line naming the key, before any epoch; every
    output byte for byte as it was (DVC deleted them; the stage put them back). params.yaml keeps the -S value, as
    after any failed `dvc exp run`."""
    project = copy_of(finished, tmp_path / "project")
    before, status, runs = outputs(project), git_status(project), tensorboard_runs(project)
    with memory_cgroup() as cgroup:
        _limit_file(cgroup).write_text(str(2 * memory.GIB))
        command = ["dvc", "exp", "run", "-S", f"train.batch_size={TRAIN_IMAGES * 4 // 5}"]
        result = subprocess.run(in_cgroup(cgroup, command), cwd=project, env=project_env(), capture_output=True,
                                text=True, timeout=300)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    refusal = [line for line in output.splitlines() if line.startswith("error: train.batch_size = 4800: ")]
    assert len(refusal) == 1, output
    assert "GiB of memory, and this process may use " in refusal[0] and "(its cgroup's limit (" in refusal[0]
    assert "; the largest batch that fits is about " in refusal[0]
    assert "Epoch 1/" not in output  # refused before training
    assert "note: train: put back the " in output
    assert outputs(project) == before
    assert status == "" and git_status(project) == "M\tparams.yaml\n"
    assert_only_set(project, batch_size=4800)
    assert tensorboard_runs(project) == runs
    assert not temporaries(project)


def test_a_training_process_killed_for_memory_says_so_and_loses_nothing(finished, tmp_path):
    """The memory limit drops below what training grows to once the estimate has passed: the cgroup's OOM killer
    ends the training process with SIGKILL. The stage says "out of memory" in one line, every previous output is
    back byte for byte, and TensorBoard's run list is the one from before."""
    project = copy_of(finished, tmp_path / "project")
    before, status, runs = outputs(project), git_status(project), tensorboard_runs(project)
    with memory_cgroup() as cgroup:
        command = ["dvc", "exp", "run", "-S", "train.batch_size=1024", "-S", "train.epochs=2"]
        env = project_env() | {"PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(in_cgroup(cgroup, command), cwd=project, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("train: memory:"):  # passed the check; the first step still has to allocate
                _limit_file(cgroup).write_text(str(usage(cgroup) + 64 * 2**20))
                break
        output = "".join(seen) + process.communicate(timeout=300)[0]
    assert process.returncode != 0, output
    errors = [line for line in output.splitlines() if line.startswith("error: train: ")]
    assert len(errors) == 1, output
    assert errors[0].startswith("error: train: out of memory: the kernel's OOM killer ended the stage's process")
    assert "try a smaller train.batch_size or train.batch_norm_images" in errors[0]
    assert errors[0].endswith("its previous outputs were left as they were")
    assert outputs(project) == before
    assert status == "" and git_status(project) == "M\tparams.yaml\n"
    assert_only_set(project, batch_size=1024, epochs=2)
    assert tensorboard_runs(project) == runs
    assert not temporaries(project)


def test_a_training_process_killed_by_sigkill_is_named_and_loses_nothing(finished, tmp_path):
    """`kill -9` of the process that trains, mid-epoch, under `dvc repro`: its supervisor names the signal, puts
    back what DVC deleted and clears what the training had staged."""
    project = copy_of(finished, tmp_path / "project")
    before, runs = outputs(project), tensorboard_runs(project)
    set_params(project, "train", epochs=3)
    process = subprocess.Popen(["dvc", "repro"], cwd=project, env=project_env() | {"PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "Epoch 2/" in line:
            break
    stage = [child for child in psutil.Process(process.pid).children(recursive=True)
             if "stages.train" in child.cmdline()]  # fmt: skip
    training = [child for child in stage if child.parent() in stage]  # forked by the stage's own process
    assert len(training) == 1, "".join(seen)
    training[0].kill()
    output = "".join(seen) + process.communicate(timeout=300)[0]
    assert process.returncode != 0, output
    errors = [line for line in output.splitlines() if line.startswith("error: train: ")]
    assert len(errors) == 1 and "killed by SIGKILL" in errors[0], output
    assert "note: train: put back the " in output
    assert {path: digest for path, digest in outputs(project).items()} == before
    assert tensorboard_runs(project) == runs
    assert not temporaries(project)
