"""How a stage fails: one clear line on stderr and a non-zero exit, never a traceback for bad input.

`run_stage` also turns SIGINT (Ctrl-C) and SIGTERM into a clean stop: `Interrupted` is raised in the
main thread, the stage's staged outputs are discarded (fmnist.atomic_outputs), and the stage exits with
128 + the signal number, as a shell reports a process killed by that signal.

Stages that run TensorFlow only record the signal and stop at their next check (each Keras step,
each output staged, before publishing): an exception raised from a signal handler while TensorFlow's
C++ code is calling back into Python comes out as another error (a TypeError from tf.function
tracing, say), as an "Exception ignored" traceback, or not at all.
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


_raise_at_once = True  # False: record the signal only, raise at the next raise_if_stopped()
_deferring = False
_received: list[int] = []  # every stop signal this process got, in order


def _on_stop_signal(signum: int, _frame: object) -> None:
    _received.append(signum)
    if _raise_at_once and not _deferring:
        raise Interrupted(signum)


def raise_if_stopped() -> None:
    """Raise Interrupted for a stop signal that arrived but whose exception did not get through."""
    if _received:
        raise Interrupted(_received[0])


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (it renames outputs into place: all of them or none).

    Python runs signal handlers in the main thread only, so a flag is enough; blocking the signal
    with pthread_sigmask would not be, because TensorFlow's own threads would still receive it.
    """
    global _deferring
    outer, before = _deferring, len(_received)
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
    if len(_received) > before and not outer:
        raise Interrupted(_received[before])


def out_of_space(error: BaseException) -> bool:
    """A full disk or quota, as Python reports it (OSError) or as TensorFlow does (an OpError's message)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(error)


def run_stage(main: Callable[[], None], *, runs_tensorflow: bool = False, memory_advice: str = "") -> None:
    """Run a stage's main(). One that runs TensorFlow runs it in a child process that this one supervises
    (fmnist.supervisor): a kill the child cannot handle, the OOM killer's among them, is explained here.
    `memory_advice` says what to do when memory ran out."""
    global _raise_at_once
    _raise_at_once = not runs_tensorflow
    stage = Path(sys.modules[main.__module__].__file__ or "stage").stem
    if runs_tensorflow:
        from fmnist import supervisor

        supervisor.start(stage, memory_advice or "free some memory, or run it on a machine with more")
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` and background jobs ignore SIGINT: keep that
            signal.signal(signum, _on_stop_signal)
    try:
        main()
    except StageError as error:
        put_back_under_dvc(stage)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as stop:
        put_back_under_dvc(stage)
        _exit_interrupted(stage, stop.signum, "its outputs were left as they were")
    except Exception:
        if _received:  # the signal's exception, turned into another one on its way out of TensorFlow
            put_back_under_dvc(stage)
            _exit_interrupted(stage, _received[0], "its outputs were left as they were")
        traceback.print_exc()
        put_back_under_dvc(stage)
        print(
            f"error: stage {stage} failed on an unexpected error (above: a bug, not bad input);"
            " its outputs were left as they were",
            file=sys.stderr,
        )
        sys.exit(1)
    if _received:  # arrived as the stage finished, its exception lost on the way: the outputs are the new ones
        _exit_interrupted(stage, _received[0], "it had written its outputs")


def put_back_under_dvc(stage: str) -> None:
    """Under `dvc repro` or `dvc exp run`, DVC deleted the outputs before the stage ran: put the previous ones back
    (fmnist.previous_outputs), so a failure there also leaves them as they were."""
    from fmnist import previous_outputs

    dvc_stage = previous_outputs.under_dvc()
    if dvc_stage is None:
        return
    try:
        put, lost = previous_outputs.put_back(dvc_stage)
    except Exception as error:  # never hide the stage's own error behind this one
        print(f"warning: {stage}: could not put back the outputs dvc deleted: {error}", file=sys.stderr)
        return
    if put:
        print(f"note: {stage}: put back the {put} previous output files dvc had deleted", file=sys.stderr)
    if lost:
        print(
            f"warning: {stage}: no copy of {', '.join(lost)} as dvc.lock records it, in DVC's cache or git HEAD",
            file=sys.stderr,
        )


def _exit_interrupted(stage: str, signum: int, outputs: str) -> None:
    print(f"error: {stage}: interrupted by {signal.Signals(signum).name}; {outputs}", file=sys.stderr)
    sys.exit(128 + signum)
