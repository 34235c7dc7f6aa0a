"""Hide what only Linux has from every Python process started with this folder on PYTHONPATH, as macOS lacks it:
`os.sched_getaffinity`, psutil's `cpu_affinity`, /proc (from all but psutil, which reads it where macOS gives it
sysctl), and the CPUID instruction (executable memory refused, which fmnist.cpu needs to run it)."""

import builtins
import io
import mmap
import os
import sys

import psutil

del os.sched_getaffinity
del psutil.Process.cpu_affinity


def _hidden(path) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False  # a file descriptor
    name = os.path.abspath(os.fsdecode(path))
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return (name == "/proc" or name.startswith("/proc/")) and not caller.startswith("psutil")


def _refusing(function):
    def hiding(path=".", *args, **kwargs):
        if _hidden(path):
            raise FileNotFoundError(2, "No such file or directory (hidden: not Linux)", os.fsdecode(path))
        return function(path, *args, **kwargs)

    return hiding


builtins.open = io.open = _refusing(io.open)
os.listdir, os.scandir = _refusing(os.listdir), _refusing(os.scandir)


class _NoExecutableMemory(mmap.mmap):
    def __new__(cls, *args, **kwargs):
        if kwargs.get("prot", 0) & mmap.PROT_EXEC:
            raise PermissionError(1, "Operation not permitted (executable memory hidden: not Linux)")
        return super().__new__(cls, *args, **kwargs)


mmap.mmap = _NoExecutableMemory
