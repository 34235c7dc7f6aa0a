"""Atomic writes: an interrupted or failing stage never leaves a half-written output behind.

A stage writes all its outputs inside one `staged_outputs()` block: each is written under a
temporary name, and only when the whole block succeeds are they renamed into place together
(SIGINT/SIGTERM held meanwhile). On any error, interrupt or full disk, the temporaries are removed
and the previous outputs stay exactly as they were.

The temporaries go to this process's folder in the project's staging folder (paths.STAGING), where
no TensorBoard (`--logdir logs`) or DVC output sees them, or beside the output where that folder is
on another filesystem (an output folder that is a mount of its own: a rename cannot cross it). A
process killed with SIGKILL leaves its folder behind; the next stage to stage an output, or the
supervising process (fmnist.supervisor), clears it and puts back any live folder it had set aside.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

from fmnist import paths
from fmnist.stage_runner import StageError, out_of_space, raise_if_stopped, signals_deferred

PREVIOUS_TARGET = ".target"  # beside a live folder set aside in a staging folder: the path it comes back to


def staging_root(folder: Path) -> Path | None:
    """The staging folder of the DVC project `folder` is in, if any."""
    for candidate in (folder.absolute(), *folder.absolute().parents):
        if (candidate / ".dvc").is_dir():
            return candidate / paths.STAGING
    return None


def clear_staging(root: Path, pid: int | None = None) -> list[Path]:
    """Remove the staging folders of processes no longer running (or of `pid`), first putting back each live folder
    one had set aside (a SIGKILL came between setting it aside and the end). Returns the folders put back."""
    put_back = []
    for folder in sorted(root.glob("[0-9]*")) if root.is_dir() else []:
        owner = int(folder.name) if folder.name.isdigit() else None
        if owner is None or (owner != pid and (pid is not None or psutil.pid_exists(owner))):
            continue
        for target_file in folder.glob(f"*{PREVIOUS_TARGET}"):
            previous = target_file.with_suffix("")
            target = Path(target_file.read_text())
            if previous.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                os.replace(previous, target)
                put_back.append(target)
        shutil.rmtree(folder, ignore_errors=True)
    return put_back


_cleared: set[Path] = set()  # staging roots whose dead processes' folders this process has cleared


def _staging_for(path: Path) -> Path:
    """Where the temporary for `path` goes: this process's staging folder on the same filesystem, else beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = staging_root(path.parent)
    if root is None:
        return path.parent
    if root not in _cleared:
        clear_staging(root)
        _cleared.add(root)
    own = root / str(os.getpid())
    own.mkdir(parents=True, exist_ok=True)
    return own if own.stat().st_dev == path.parent.stat().st_dev else path.parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, path: Path, mode: int) -> None:
    # mkstemp/mkdtemp create owner-only entries; give the result the usual permissions.
    os.chmod(tmp, mode & ~_umask())
    os.replace(tmp, path)


def _remove_leftovers(folder: Path, pattern: str) -> None:
    """Temporaries of a killed earlier run (SIGKILL skips clean-up); DVC's lock rules out a live writer."""
    for leftover in folder.glob(pattern):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path for `path` (same suffix); rename it into place on success."""
    _remove_leftovers(path.parent, f".{path.stem}.*.tmp{path.suffix}")
    tmp = staging = None
    try:
        with signals_deferred():  # no stop between creating the temporary and knowing its name to remove it
            staging = _staging_for(path)
            fd, tmp_name = tempfile.mkstemp(dir=staging, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
            os.close(fd)
            tmp = Path(tmp_name)
        yield tmp
        _publish(tmp, path, 0o666)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if staging is not None:
            _release(staging, path)


@contextmanager
def atomic_dir(path: Path, leftovers: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder; swap it in for `path` on success. A killed earlier run's temporaries beside
    `path` are removed first: `path`'s own, or those `leftovers` matches (for a name that differs run to run)."""
    _remove_leftovers(path.parent, leftovers or f".{path.name}.*.tmp")
    tmp = staging = None
    try:
        with signals_deferred():
            staging = _staging_for(path)
            tmp = Path(tempfile.mkdtemp(dir=staging, prefix=f".{path.name}.", suffix=".tmp"))
        yield tmp
        if path.exists():
            old = tmp.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            _publish(tmp, path, 0o777)
            shutil.rmtree(old)
        else:
            _publish(tmp, path, 0o777)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if staging is not None:
            _release(staging, path)


def _release(staging: Path, path: Path) -> None:
    """This process's staging folder goes once its last temporary has (other outputs may still be staged in it)."""
    if staging != path.parent:
        try:
            staging.rmdir()
        except OSError:  # not empty yet
            pass


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextmanager
def live_dir(path: Path) -> Iterator[Path]:
    """A folder written in place while the stage runs, for readers that watch it (DVCLive's metrics, read by
    `dvc exp show` mid-run). The previous one waits in the staging folder (or beside it) and comes back if the stage
    fails, or, after a SIGKILL, when the staging folder is cleared."""
    staging = previous = None
    try:
        with signals_deferred():
            staging = _staging_for(path)
            aside = staging / f".{path.name}.previous.tmp"
            shutil.rmtree(aside, ignore_errors=True)  # beside: a run killed by SIGKILL left it; DVC re-runs anyway
            target = aside.with_name(aside.name + PREVIOUS_TARGET)
            if path.exists():
                if staging != path.parent:  # first, so that a SIGKILL never leaves one set aside with no way back
                    target.write_text(str(path.absolute()))
                os.replace(path, aside)
            previous = aside  # set aside, or there was none: from here a failure removes this run's folder
        yield path
    except BaseException:
        if previous is not None:  # past setting the previous one aside: this run's folder goes, that one comes back
            with signals_deferred():
                shutil.rmtree(path, ignore_errors=True)
                if previous.exists():
                    os.replace(previous, path)
                target.unlink(missing_ok=True)
                _release(staging, path)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    target.unlink(missing_ok=True)
    _release(staging, path)


class StagedOutputs:
    """Temporary paths for a stage's outputs; `staged_outputs()` publishes or discards them all."""

    def __init__(self, stack: ExitStack):
        self._stack = stack
        self.staged: dict[Path, Path] = {}  # temporary -> final path

    def file(self, path: Path) -> Path:
        return self._stage(atomic_path(path), path)

    def folder(self, path: Path, leftovers: str | None = None) -> Path:
        return self._stage(atomic_dir(path, leftovers), path)

    def live_folder(self, path: Path) -> Path:
        return self._stage(live_dir(path), path)

    def _stage(self, context, path: Path) -> Path:
        with signals_deferred():  # a stop once the temporary exists, but before the stack holds it, would leak it
            tmp = self._stack.enter_context(context)
            self.staged[tmp] = path
        raise_if_stopped()  # stages that poll for stop signals check here too
        return tmp

    def being_written(self, error: BaseException) -> Path:
        """The output an error arose in: the one whose temporary the error names, else the last one written."""
        named = f"{getattr(error, 'filename', None) or ''} {error}"
        for tmp, final in self.staged.items():
            if str(tmp) in named:
                return final
        return self.staged[max(self.staged, key=_last_modified)]


def _last_modified(path: Path) -> float:
    files = [path, *path.rglob("*")] if path.is_dir() else [path]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


@contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    stack = ExitStack()
    outputs = StagedOutputs(stack)
    try:
        yield outputs
        raise_if_stopped()  # a stop signal whose exception TensorFlow swallowed still means: publish nothing
    except BaseException as error:
        full = isinstance(error, Exception) and out_of_space(error) and outputs.staged
        where = outputs.being_written(error) if full else None
        stack.__exit__(type(error), error, error.__traceback__)  # each temporary removed, nothing published
        if where:
            raise StageError(f"{where}: no space left on device; previous outputs left as they were") from None
        raise
    with signals_deferred():  # all renamed into place, or (SIGKILL aside) none
        stack.close()
