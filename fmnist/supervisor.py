"""Stages that run TensorFlow do their work in a forked child process, watched by the process DVC started.

A process the kernel kills (the out-of-memory killer, `kill -9`, a container's memory limit) gets no chance to say
why or to put anything back, and DVC only reports `exited with -9`. Its parent does get that chance: it names the
signal, reads the cgroup's OOM-kill count to tell an out-of-memory kill from another, clears what the child
had staged (fmnist.atomic_outputs) and, under `dvc repro`, `dvc exp run` and `dvc queue` workers, puts back the
outputs DVC had deleted (fmnist.previous_outputs). The parent never imports TensorFlow; SIGINT and SIGTERM are
passed on to the child, whose own handling (fmnist.stage_runner) stops it cleanly. FMNIST_UNSUPERVISED=1 runs the
stage in one process, for a debugger or profiler; so does a system without fork().
"""

import os
import signal
import sys
from pathlib import Path

import psutil

from fmnist import memory
from fmnist.atomic_outputs import clear_staging, staging_root
from fmnist.stage_runner import STOP_SIGNALS, put_back_under_dvc

CHILD = "FMNIST_STAGE_CHILD"  # set in the child's environment: the supervising process's pid
UNSUPERVISED = "FMNIST_UNSUPERVISED"
POLL_SECONDS = 0.5  # how often the child's memory is sampled while it runs
CRASHES = {
    signal.SIGSEGV: "a crash in native code (TensorFlow or a library it loads)",
    signal.SIGBUS: "a crash in native code (TensorFlow or a library it loads)",
    signal.SIGABRT: "an abort in native code (TensorFlow's own check, or a failed allocation)",
}


def start(stage: str, memory_advice: str) -> None:
    """Fork: the child returns, to run the stage; this process supervises it and exits as it does. Forked rather
    than started anew, the child has the stage's imports already and costs no second interpreter start."""
    if CHILD in os.environ or os.environ.get(UNSUPERVISED) == "1" or not hasattr(os, "fork"):
        return
    supervise(stage, memory_advice)
    die_with_parent()


def die_with_parent() -> None:
    """In the child: end when the supervising process ends, even by SIGKILL, rather than train on unwatched
    (Linux: PR_SET_PDEATHSIG; elsewhere the child outlives a killed parent)."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get(CHILD):  # the parent was gone before the call
        os._exit(128 + signal.SIGKILL)


def supervise(stage: str, memory_advice: str) -> None:
    """Returns in the child. In the parent: wait for the child, pass it SIGINT and SIGTERM, and exit as it did,
    explaining a death by signal."""
    oom_kills_before = memory.oom_kills()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # none lost between the fork and the handlers
    sys.stdout.flush(), sys.stderr.flush()  # else both processes would write what is buffered
    parent, pid = os.getpid(), os.fork()
    if pid == 0:
        os.environ[CHILD] = str(parent)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # the stage installs its own handlers next
        return

    def forward(signum: int, _frame: object) -> None:  # the child stops itself cleanly (fmnist.stage_runner)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # already gone
            pass

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` and background jobs ignore SIGINT: keep that
            signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    child, peak, least_room = psutil.Process(pid), 0, None
    while True:
        try:
            code = child.wait(timeout=POLL_SECONDS)  # a negative code: killed by that signal
            break
        except psutil.TimeoutExpired:
            try:
                peak = max(peak, child.memory_info().rss)
            except psutil.Error:  # exiting
                pass
            free = memory.room()[0]
            least_room = free if least_room is None else min(least_room, free)
    if code >= 0:
        sys.exit(code)
    signum = signal.Signals(-code)
    cause = explain(signum, oom_kills_before, memory.oom_kills(), peak, least_room, memory_advice)
    staging = staging_root(Path.cwd())
    if staging is not None:
        clear_staging(staging, pid)
    put_back_under_dvc(stage)
    print(f"error: {stage}: {cause}; its previous outputs were left as they were", file=sys.stderr)
    sys.exit(128 + signum)


def explain(signum: signal.Signals, oom_kills_before: int | None, oom_kills_after: int | None, peak: int,
            least_room: int | None, memory_advice: str) -> str:  # fmt: skip
    """One clause: what ended the child, as far as the cgroup's OOM-kill count tells, else its memory samples (its
    peak resident memory, and the least memory the machine or cgroup had left meanwhile)."""
    name = signum.name
    at = f" at {peak / memory.GIB:.1f} GiB resident" if peak else ""
    if signum in CRASHES:
        return f"the stage's process died of {name}{at}: {CRASHES[signum]}; its messages are above"
    if signum != signal.SIGKILL:
        return f"the stage's process was killed by {name}{at}"
    if oom_kills_before is not None and oom_kills_after is not None:
        if oom_kills_after > oom_kills_before:
            return (
                f"out of memory: the kernel's OOM killer ended the stage's process ({name}{at}; its cgroup's OOM"
                f" kills went from {oom_kills_before} to {oom_kills_after}); {memory_advice}"
            )
        return (
            f"the stage's process was killed by {name}{at}, not for memory (its cgroup's OOM-kill count stayed"
            f" {oom_kills_after}): by `kill -9` or a container's stop; run it again"
        )
    if peak and least_room is not None and least_room < 0.1 * (peak + least_room):
        left = f"{least_room / memory.GIB:.1f} GiB left"
        return f"out of memory, most likely: killed by {name}{at}, with {left}; {memory_advice}"
    return f"the stage's process was killed by {name}{at}: by the kernel's OOM killer or `kill -9` (`dmesg` says which)"
