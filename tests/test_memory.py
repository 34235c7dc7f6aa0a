"""Memory: train's estimate and its refusal, the cgroup's limit and OOM-kill count, and how a killed stage is named."""

import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from fmnist import memory, supervisor
from fmnist.stage_runner import StageError

GIB = memory.GIB


def fake_model(*shapes: tuple[int, ...]) -> SimpleNamespace:
    """What the estimate reads of a Keras model: each layer's output shape."""
    return SimpleNamespace(layers=[SimpleNamespace(output=SimpleNamespace(shape=(None, *shape))) for shape in shapes])


MODEL = fake_model((28, 28, 32), (14, 14, 32), (14, 14, 64), (10,))  # 4 x 43,914 = 175,656 bytes an image
CONFIG = SimpleNamespace(batch_size=60_000, batch_norm_images=4096)


def test_the_estimate_grows_with_the_batch_up_to_the_training_set():
    peak = [memory.training_peak(MODEL, batch, 48_000, 12_000, 4096, 784, GIB) for batch in (64, 256, 48_000, 60_000)]
    assert peak[0] < peak[1] < peak[2] == peak[3]  # a batch larger than the data is the whole data
    per_image = memory.TRAINING_BYTES_PER_ACTIVATION_BYTE * 175_656
    assert peak[1] - peak[0] == pytest.approx(192 * per_image, abs=2)
    more_statistics = memory.training_peak(MODEL, 64, 48_000, 12_000, 8192, 784, GIB)
    assert more_statistics - peak[0] == pytest.approx(2 * 4096 * 4 * 28 * 28 * 32, abs=2)  # the largest layer's


def test_a_batch_that_cannot_fit_is_one_line_naming_the_key_and_the_largest_batch_that_fits(monkeypatch):
    monkeypatch.setattr(memory, "room", lambda: (4 * GIB, "available memory"))
    with pytest.raises(StageError) as refused:
        memory.check_training(MODEL, CONFIG, 48_000, 12_000, 784)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("train.batch_size = 60000: training would need about ")
    assert "GiB of memory, and this process may use " in message and "(available memory)" in message
    fits = int(message.rsplit("about ", 1)[1].replace(",", ""))
    resident = memory.psutil.Process().memory_info().rss  # what check_training measured, give or take
    usable = resident + 4 * GIB
    for batch, allowed in ((fits - 64, True), (fits + 64, False)):
        need = memory.training_peak(MODEL, batch, 48_000, 12_000, 4096, 784, resident)
        assert (need <= usable) is allowed, (batch, need, usable)
    config = SimpleNamespace(batch_size=fits - 256, batch_norm_images=4096)
    need, may_use = memory.check_training(MODEL, config, 48_000, 12_000, 784)
    assert need <= may_use


def test_no_batch_fits_when_even_the_fixed_part_does_not(monkeypatch):
    monkeypatch.setattr(memory, "room", lambda: (0, "its cgroup's limit (/sys/fs/cgroup/x)"))
    with pytest.raises(StageError, match=r"\(its cgroup's limit \(/sys/fs/cgroup/x\)\); no batch fits"):
        memory.check_training(MODEL, SimpleNamespace(batch_size=64, batch_norm_images=0), 48_000, 12_000, 784)


@pytest.mark.parametrize(
    ("files", "room", "kills"),
    [
        ({"memory.max": "max\n", "memory.current": "100\n", "memory.events": "oom 0\noom_kill 0\n"}, None, 0),
        ({"memory.max": "1000\n", "memory.current": "700\n", "memory.stat": "anon 600\ninactive_file 50\n",
          "memory.events": "low 0\noom_kill 3\n"}, 350, 3),  # v2
        ({"memory.limit_in_bytes": "1000\n", "memory.usage_in_bytes": "900\n",
          "memory.stat": "cache 0\ntotal_inactive_file 20\n", "memory.oom_control": "under_oom 0\noom_kill 2\n"},
         120, 2),  # v1
        ({"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "900\n"}, None, None),
    ],
)  # fmt: skip
def test_the_cgroups_room_and_oom_kill_count_in_both_versions(tmp_path, monkeypatch, files, room, kills):
    own, parent = tmp_path / "own", tmp_path
    own.mkdir()
    for name, text in files.items():
        (own / name).write_text(text)
    monkeypatch.setattr(memory, "_cgroup_dirs", lambda: [own, parent])
    assert memory.cgroup_room() == (None if room is None else (room, own))
    assert memory.oom_kills() == kills


def test_an_ancestors_tighter_limit_is_the_one_that_counts(tmp_path, monkeypatch):
    own, parent = tmp_path / "own", tmp_path
    own.mkdir()
    for folder, limit in ((own, 5000), (parent, 2000)):
        (folder / "memory.max").write_text(f"{limit}\n")
        (folder / "memory.current").write_text("1000\n")
    monkeypatch.setattr(memory, "_cgroup_dirs", lambda: [own, parent])
    assert memory.cgroup_room() == (1000, parent)
    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: SimpleNamespace(available=10**6))
    assert memory.room() == (1000, f"its cgroup's limit ({parent})")


def test_this_machines_cgroup_is_read_without_error():
    folders = memory._cgroup_dirs()
    assert all(folder.is_absolute() for folder in folders)
    free, limit = memory.room()
    assert free > 0 and limit


ADVICE = "try a smaller train.batch_size"


@pytest.mark.parametrize(
    ("signum", "before", "after", "least_room", "expected"),
    [
        (signal.SIGKILL, 0, 1, None, "out of memory: the kernel's OOM killer ended the stage's process (SIGKILL at 3.0"
         " GiB resident; its cgroup's OOM kills went from 0 to 1); try a smaller train.batch_size"),
        (signal.SIGKILL, 2, 2, None, "the stage's process was killed by SIGKILL at 3.0 GiB resident, not for memory"
         " (its cgroup's OOM-kill count stayed 2): by `kill -9` or a container's stop; run it again"),
        (signal.SIGKILL, None, None, GIB // 10, "out of memory, most likely: killed by SIGKILL at 3.0 GiB resident,"
         " with 0.1 GiB left; try a smaller train.batch_size"),
        (signal.SIGKILL, None, None, 8 * GIB, "the stage's process was killed by SIGKILL at 3.0 GiB resident: by the"
         " kernel's OOM killer or `kill -9` (`dmesg` says which)"),
        (signal.SIGSEGV, 0, 0, None, "the stage's process died of SIGSEGV at 3.0 GiB resident: a crash in native code"
         " (TensorFlow or a library it loads); its messages are above"),
        (signal.SIGHUP, 0, 0, None, "the stage's process was killed by SIGHUP at 3.0 GiB resident"),
    ],
)  # fmt: skip
def test_a_killed_stage_is_named_by_what_the_cgroup_and_its_memory_tell(signum, before, after, least_room, expected):
    assert supervisor.explain(signum, before, after, 3 * GIB, least_room, ADVICE) == expected


def test_the_child_ends_with_its_supervisor():
    """A SIGKILL to the supervising process takes the training with it (Linux), rather than leave it unwatched."""
    if sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'from fmnist import supervisor; supervisor.die_with_parent();"
        " import time; time.sleep(60)'], env={**os.environ, 'FMNIST_STAGE_CHILD': str(os.getpid())})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    child = memory.psutil.Process(child_pid)
    parent.kill()
    parent.wait()
    child.wait(timeout=10)  # a grandchild: psutil gives no exit code, only that it ended
    assert not child.is_running()
