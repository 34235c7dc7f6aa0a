"""Atomic writes: an interrupted stage never leaves a half-written output behind."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    """Yield a temporary path beside `path` (same suffix); rename it into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path.parent, f".{path.stem}.*.tmp{path.suffix}")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _publish(tmp, path, 0o666)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; swap it in for `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path.parent, f".{path.name}.*.tmp")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            _publish(tmp, path, 0o777)
            shutil.rmtree(old)
        else:
            _publish(tmp, path, 0o777)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
