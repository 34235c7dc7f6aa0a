import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fmnist import atomic_outputs, paths, stage_runner
from fmnist.atomic_outputs import (
    PREVIOUS_TARGET,
    atomic_dir,
    atomic_path,
    clear_staging,
    live_dir,
    staged_outputs,
    write_text,
)
from fmnist.stage_runner import Interrupted, StageError


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_dir_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "logs"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert [p.name for p in target.iterdir()] == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_published_outputs_get_the_permissions_the_umask_gives_a_new_file(tmp_path, umask):
    """Temporaries are created owner-only; a published output is readable as any file the user writes would be
    (a teammate's `dvc pull`, a web server serving the logs)."""
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "metrics.json", "{}")
        with atomic_dir(tmp_path / "logs") as tmp:
            (tmp / "events").write_text("x")
        with atomic_dir(tmp_path / "logs") as tmp:  # the swap over an existing folder too
            (tmp / "events").write_text("y")
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_stale_set_aside_folder_does_not_block_later_swaps(tmp_path):
    """A run killed mid-swap leaves the folder it set aside (`.NAME.old`); every later run must still publish."""
    target = tmp_path / "logs"
    with atomic_dir(target) as tmp:
        (tmp / "first").write_text("1")
    stale = tmp_path / ".logs.old"
    stale.mkdir()
    (stale / "events").write_text("from a killed run")
    for run in ("second", "third"):
        with atomic_dir(target) as tmp:
            (tmp / run).write_text("1")
        assert [p.name for p in target.iterdir()] == [run]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_leftovers_of_a_killed_run_are_cleared(tmp_path):
    (tmp_path / ".model.abc123.tmp.keras").write_text("partial")
    (tmp_path / ".fit.xyz.tmp").mkdir()
    with atomic_path(tmp_path / "model.keras") as tmp:
        tmp.write_text("whole")
    with atomic_dir(tmp_path / "fit"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit", "model.keras"]


def test_staged_outputs_publish_all_or_none(tmp_path):
    (tmp_path / "model.keras").write_text("old model")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "old").write_text("old logs")
    with pytest.raises(RuntimeError), staged_outputs() as out:
        out.file(tmp_path / "model.keras").write_text("new model")
        (out.folder(tmp_path / "logs") / "new").write_text("new logs")
        out.file(tmp_path / "metrics.json").write_text("{}")
        raise RuntimeError("failed after writing every output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "model.keras"]
    assert (tmp_path / "model.keras").read_text() == "old model"
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["old"]

    with staged_outputs() as out:
        out.file(tmp_path / "model.keras").write_text("new model")
        (out.folder(tmp_path / "logs") / "new").write_text("new logs")
    assert (tmp_path / "model.keras").read_text() == "new model"
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["new"]


def test_a_full_disk_names_the_output_being_written(tmp_path):
    with pytest.raises(StageError) as error, staged_outputs() as out:
        out.file(tmp_path / "train.npz").write_text("written")
        tmp = out.file(tmp_path / "val.npz")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(error.value) == f"{tmp_path / 'val.npz'}: no space left on device; previous outputs left as they were"
    assert not list(tmp_path.iterdir())


def test_a_full_disk_reported_by_tensorflow_names_the_log_folder(tmp_path):
    with pytest.raises(StageError, match=r"/logs/fit: no space left on device"), staged_outputs() as out:
        out.file(tmp_path / "model.keras")
        log_dir = out.folder(tmp_path / "logs" / "fit")
        raise RuntimeError(f"{log_dir}/train/events.out.tfevents.1; No space left on device\n\tFailed to flush")


def test_a_stop_signal_during_publishing_waits_until_every_output_is_in_place(tmp_path, monkeypatch):
    rename = os.replace

    def rename_then_get_sigterm(src, dst):
        rename(src, dst)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives between the first and the second output's rename

    monkeypatch.setattr(stage_runner, "_received", [])
    previous = signal.signal(signal.SIGTERM, stage_runner._on_stop_signal)  # as run_stage installs it
    monkeypatch.setattr(os, "replace", rename_then_get_sigterm)
    try:
        with pytest.raises(Interrupted) as stop, staged_outputs() as out:
            out.file(tmp_path / "a").write_text("a")
            out.file(tmp_path / "b").write_text("b")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stop.value.signum == signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_stop_signal_while_writing_publishes_nothing(tmp_path, monkeypatch):
    (tmp_path / "a").write_text("old")
    monkeypatch.setattr(stage_runner, "_received", [])
    previous = signal.signal(signal.SIGTERM, stage_runner._on_stop_signal)
    try:
        with pytest.raises(Interrupted), staged_outputs() as out:
            out.file(tmp_path / "a").write_text("new")
            os.kill(os.getpid(), signal.SIGTERM)
            out.file(tmp_path / "b").write_text("b")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and (tmp_path / "a").read_text() == "old"


def test_a_stop_signal_whose_exception_was_lost_still_publishes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(stage_runner, "_received", [])
    previous = signal.signal(signal.SIGTERM, stage_runner._on_stop_signal)
    try:
        with pytest.raises(Interrupted), staged_outputs() as out:
            out.file(tmp_path / "a").write_text("new")
            try:  # as TensorFlow's C++ code can: swallow the exception a signal raised while it called Python
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(1000))  # gives the handler a bytecode boundary to run at
            except Interrupted:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not list(tmp_path.iterdir())


def test_a_live_folder_is_written_in_place_and_the_previous_comes_back_on_failure(tmp_path):
    live = tmp_path / "training"
    live.mkdir()
    (live / "metrics.json").write_text("previous run")
    with pytest.raises(StageError), live_dir(live) as folder:
        assert folder == live and not live.exists()  # written in place: live readers see the new run
        live.mkdir()
        (live / "metrics.json").write_text("half of a new run")
        raise StageError("the run failed")
    assert (live / "metrics.json").read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training"]  # nothing left beside it
    with live_dir(live):
        live.mkdir()
        (live / "metrics.json").write_text("new run")
    assert (live / "metrics.json").read_text() == "new run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training"]


def test_in_a_dvc_project_temporaries_are_staged_where_no_viewer_looks(tmp_path, monkeypatch):
    """TensorBoard lists every folder under --logdir with event files: a staged logs/fit must not be beside it."""
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    own = tmp_path / paths.STAGING / str(os.getpid())
    with staged_outputs() as out:
        fit = out.folder(Path("logs/fit"))
        (fit / "events").write_text("new")
        model = out.file(Path("models/model.keras"))
        model.write_text("weights")
        assert fit.parent == model.parent == own
        assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == []
        assert sorted(p.name for p in (tmp_path / "models").iterdir()) == []
    assert (tmp_path / "logs/fit/events").read_text() == "new"
    assert (tmp_path / "models/model.keras").read_text() == "weights"
    assert not own.exists()
    with pytest.raises(RuntimeError), staged_outputs() as out:
        (out.folder(Path("logs/fit")) / "events").write_text("half")
        raise RuntimeError("failed")
    assert (tmp_path / "logs/fit/events").read_text() == "new" and not own.exists()


def test_a_killed_processs_staging_is_cleared_and_its_set_aside_live_folder_put_back(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid is no running process's now
    dead = tmp_path / paths.STAGING / str(finished.pid)
    (dead / ".fit.x.tmp").mkdir(parents=True)  # a half-staged output
    previous = dead / ".training.previous.tmp"
    previous.mkdir()
    (previous / "metrics.json").write_text("previous run")
    (dead / f".training.previous.tmp{PREVIOUS_TARGET}").write_text(str(tmp_path / "reports/training"))
    (tmp_path / "reports/training").mkdir(parents=True)
    (tmp_path / "reports/training/metrics.json").write_text("half of the killed run")
    alive = tmp_path / paths.STAGING / str(os.getppid())  # a running process's: left alone
    alive.mkdir()
    write_text(Path("reports/metrics.json"), "{}")  # the next stage to stage anything clears it
    assert not dead.exists() and alive.exists()
    assert (tmp_path / "reports/training/metrics.json").read_text() == "previous run"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["metrics.json", "training"]


def test_the_supervisor_clears_its_killed_childs_staging_at_once(tmp_path):
    (tmp_path / ".dvc").mkdir()
    child = tmp_path / paths.STAGING / str(os.getpid())  # running, yet named: the supervisor knows it is dead
    (child / ".fit.x.tmp").mkdir(parents=True)
    assert clear_staging(tmp_path / paths.STAGING, os.getpid()) == []
    assert not child.exists()


def test_a_full_disk_while_a_live_folder_is_written_names_that_folder(tmp_path):
    with pytest.raises(StageError) as error, staged_outputs() as out:
        out.file(tmp_path / "model.keras").write_text("x")
        live = out.live_folder(tmp_path / "training")
        raise OSError(errno.ENOSPC, "No space left on device", str(live / "metrics.json"))
    assert str(error.value).startswith(f"{tmp_path / 'training'}: no space left on device")


def test_a_folder_whose_name_changes_run_to_run_clears_the_killed_runs_temporaries(tmp_path):
    """Each timing run has its own folder name, so a killed run's temporary is found by a pattern, not the name."""
    (tmp_path / ".20261204-0100.abc.tmp").mkdir()  # killed mid-run yesterday
    with staged_outputs() as out:
        (out.folder(tmp_path / "20261205-0200", leftovers=".*.tmp") / "events").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261205-0200"]


def test_staging_folders_not_named_by_a_process_id_are_left_alone(tmp_path):
    root = tmp_path / paths.STAGING
    (root / "1.lock").mkdir(parents=True)  # matches [0-9]*, names no process
    assert clear_staging(root, pid=1) == []
    assert (root / "1.lock").exists()


def test_a_set_aside_folder_comes_back_where_the_output_was_deleted_meanwhile(tmp_path):
    """DVC deletes a stage's outputs before running it: after a SIGKILL the live folder may be gone entirely."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = tmp_path / paths.STAGING / str(finished.pid)
    previous = dead / ".training.previous.tmp"
    previous.mkdir(parents=True)
    (previous / "metrics.json").write_text("previous run")
    target = tmp_path / "reports/training"
    target.parent.mkdir()
    (dead / f".training.previous.tmp{PREVIOUS_TARGET}").write_text(str(target))
    assert clear_staging(tmp_path / paths.STAGING) == [target]
    assert (target / "metrics.json").read_text() == "previous run"
    assert not dead.exists()


def test_a_dead_processs_staging_that_another_process_clears_first_is_no_error(tmp_path, monkeypatch):
    """Two stages may start at once after a SIGKILL (the supervisor and the next stage): both clear the same folder."""
    root = tmp_path / paths.STAGING
    dead = root / "999999999"
    (dead / ".fit.x.tmp").mkdir(parents=True)

    def cleared_by_another(pid):
        shutil.rmtree(dead)  # between this process's listing and its removal
        return False

    monkeypatch.setattr(atomic_outputs.psutil, "pid_exists", cleared_by_another)
    assert clear_staging(root) == []
    assert not dead.exists()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second filesystem: /dev/shm")
def test_an_output_folder_on_another_filesystem_is_staged_beside_it(tmp_path, monkeypatch):
    """A rename cannot cross filesystems: an output folder that is a mount of its own stages its temporaries there."""
    other = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if other.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the temporary folder")
        (tmp_path / ".dvc").mkdir()
        monkeypatch.chdir(tmp_path)
        (tmp_path / "logs").symlink_to(other)
        with staged_outputs() as out:
            (out.folder(Path("logs/fit")) / "events").write_text("x")
            out.file(Path("logs/summary.txt")).write_text("y")
        assert (other / "fit/events").read_text() == "x" and (other / "summary.txt").read_text() == "y"
        assert sorted(p.name for p in other.iterdir()) == ["fit", "summary.txt"]
    finally:
        shutil.rmtree(other)


def test_a_full_disk_that_names_no_file_names_the_output_written_last(tmp_path):
    """A folder counts as written when its newest file was: its own time changes only when entries are added."""
    with pytest.raises(StageError) as error, staged_outputs() as out:
        model = out.file(tmp_path / "model.keras")
        model.write_text("x")
        gone = out.file(tmp_path / "summary.txt")
        gone.unlink()  # a writer that removes its file on failure: it has no time at all
        logs = out.folder(tmp_path / "logs")
        (logs / "events").write_text("y")
        os.utime(model, (5, 5))
        os.utime(logs, (1, 1))
        os.utime(logs / "events", (10, 10))
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(error.value).startswith(f"{tmp_path / 'logs'}: no space left on device")
