"""How a stage fails: one clear line on stderr and a non-zero exit, never a traceback for bad input.

`run_stage` also turns SIGINT (Ctrl-C) and SIGTERM into a clean stop: the signal raises `Interrupted`
in the main thread, the stage's staged outputs are discarded (stages.files), and the stage exits
with 128 + the signal number, as a shell reports a process killed by that signal.
"""

import errno
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StageError(Exception):
    """Bad input or an unusable source; the message names the file, source or param key."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so `except Exception` lets it through."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_deferring = False
_pending: list[int] = []


def _on_stop_signal(signum: int, _frame: object) -> None:
    if _deferring:
        _pending.append(signum)
    else:
        raise Interrupted(signum)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (it renames outputs into place: all of them or none).

    Python runs signal handlers in the main thread only, so a flag is enough; blocking the signal
    with pthread_sigmask would not be, because TensorFlow's own threads would still receive it.
    """
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if _pending:
        raise Interrupted(_pending.pop(0))


def out_of_space(error: BaseException) -> bool:
    """A full disk or quota, as Python reports it (OSError) or as TensorFlow does (an OpError's message)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(error)


def run_stage(main: Callable[[], None]) -> None:
    stage = Path(sys.modules[main.__module__].__file__ or "stage").stem
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` and background jobs ignore SIGINT: keep that
            signal.signal(signum, _on_stop_signal)
    try:
        main()
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as stop:
        print(f"error: {stage}: interrupted by {stop}; its outputs were left as they were", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except Exception as error:
        if out_of_space(error):  # outside staged outputs, which name the file themselves
            where = getattr(error, "filename", None) or "."
            print(f"error: {where}: no space left on device; outputs were left as they were", file=sys.stderr)
            sys.exit(1)
        traceback.print_exc()
        print(
            f"error: stage {stage} failed on an unexpected error (above: a bug, not bad input);"
            " its outputs were left as they were",
            file=sys.stderr,
        )
        sys.exit(1)
