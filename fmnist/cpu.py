"""What the CPU is and which instruction-set extensions the process may use: its model name, and its flags read
with the CPUID instruction, as oneDNN reads them (not from /proc/cpuinfo, which leaves some out).

oneDNN decides its instruction-set level from CPUID and the XGETBV register (what the OS has enabled), through
Xbyak. /proc/cpuinfo lists most of the same flags, but not AVX-VNNI-INT8 and AVX-NE-CONVERT (which oneDNN's
AVX2_VNNI_2 level needs), and under QEMU's user-mode emulation it is the host's file while CPUID answers for the
emulated CPU. So `flags()` runs CPUID and XGETBV itself (a few instructions in an executable page, called through
ctypes), and names each flag as /proc/cpuinfo does; where that cannot run (not x86-64, or executable memory refused)
it falls back to /proc/cpuinfo.
"""

import ctypes
import mmap
import os
import platform
from functools import cache
from pathlib import Path

# System V x86-64 calls. cpuid(leaf, subleaf, registers): registers[0..3] = EAX, EBX, ECX, EDX.
_CPUID = bytes.fromhex(
    "53"  # push rbx (callee-saved; CPUID writes it)
    "89f8"  # mov eax, edi
    "89f1"  # mov ecx, esi
    "4989d0"  # mov r8, rdx
    "0fa2"  # cpuid
    "418900"  # mov [r8], eax
    "41895804"  # mov [r8+4], ebx
    "41894808"  # mov [r8+8], ecx
    "4189500c"  # mov [r8+12], edx
    "5b"  # pop rbx
    "c3"  # ret
)
# xgetbv() -> XCR0: which register states the OS saves (so the process may use them).
_XGETBV = bytes.fromhex(
    "31c9"  # xor ecx, ecx
    "0f01d0"  # xgetbv
    "48c1e220"  # shl rdx, 32
    "4809d0"  # or rax, rdx
    "c3"  # ret
)

# (leaf, subleaf, register, bit) of each flag oneDNN's levels need, named as Linux names them in /proc/cpuinfo.
_BITS = {
    "sse4_1": (1, 0, "ecx", 19),
    "fma": (1, 0, "ecx", 12),
    "avx": (1, 0, "ecx", 28),
    "avx2": (7, 0, "ebx", 5),
    "avx512f": (7, 0, "ebx", 16),
    "avx512dq": (7, 0, "ebx", 17),
    "avx512bw": (7, 0, "ebx", 30),
    "avx512vl": (7, 0, "ebx", 31),
    "avx512_vnni": (7, 0, "ecx", 11),
    "avx512_fp16": (7, 0, "edx", 23),
    "amx_bf16": (7, 0, "edx", 22),
    "amx_tile": (7, 0, "edx", 24),
    "amx_int8": (7, 0, "edx", 25),
    "avx_vnni": (7, 1, "eax", 4),
    "avx512_bf16": (7, 1, "eax", 5),
    "amx_fp16": (7, 1, "eax", 21),
    "avx_vnni_int8": (7, 1, "edx", 4),  # not in /proc/cpuinfo
    "avx_ne_convert": (7, 1, "edx", 5),  # not in /proc/cpuinfo
}
_OSXSAVE = (1, 0, "ecx", 27)
# XCR0 bits the OS must set for each register family: SSE and AVX state; AVX-512's opmask and upper halves; AMX tiles.
_AVX_STATE, _AVX512_STATE, _AMX_STATE = 0x6, 0xE0, 0x60000
_REGISTERS = ("eax", "ebx", "ecx", "edx")


def flags_from_cpuid(registers: dict[tuple[int, int], tuple[int, int, int, int]], xcr0: int) -> set[str]:
    """The flags a process may use, from CPUID's answers {(leaf, subleaf): (eax, ebx, ecx, edx)} and XCR0."""

    def has(leaf: int, subleaf: int, register: str, bit: int) -> bool:
        values = registers.get((leaf, subleaf), (0, 0, 0, 0))
        return bool(values[_REGISTERS.index(register)] >> bit & 1)

    found = {name for name, where in _BITS.items() if has(*where)}
    os_saves = xcr0 if has(*_OSXSAVE) else 0
    if os_saves & _AVX_STATE != _AVX_STATE:  # the OS does not save YMM registers: no AVX of any kind
        found -= {"avx", "avx2", "fma", "avx_vnni", "avx_vnni_int8", "avx_ne_convert"}
    if os_saves & (_AVX_STATE | _AVX512_STATE) != _AVX_STATE | _AVX512_STATE:
        found = {name for name in found if not name.startswith("avx512")}
    if os_saves & _AMX_STATE != _AMX_STATE:
        found = {name for name in found if not name.startswith("amx")}
    return found


def _machine_code(code: bytes, restype, *argtypes):
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    function = ctypes.CFUNCTYPE(restype, *argtypes)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return function, page  # the page must live as long as the function


def read_cpuid() -> tuple[dict[tuple[int, int], tuple[int, int, int, int]], int]:
    cpuid, _code = _machine_code(_CPUID, None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))

    def ask(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        cpuid(leaf, subleaf, ctypes.byref(out))
        return tuple(out)

    highest = ask(0, 0)[0]
    registers = {(leaf, subleaf): ask(leaf, subleaf) for leaf, subleaf in ((1, 0), (7, 0), (7, 1)) if leaf <= highest}
    osxsave = registers.get((1, 0), (0, 0, 0, 0))[2] >> 27 & 1
    if not osxsave:  # XGETBV faults where the OS has not turned XSAVE on: no AVX state saved, then
        return registers, 0
    xgetbv, _page = _machine_code(_XGETBV, ctypes.c_uint64)
    return registers, xgetbv()


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


@cache
def flags() -> frozenset[str]:
    """The x86 instruction-set flags this process may use (CPUID and XGETBV; /proc/cpuinfo where they cannot run);
    none on another architecture."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return frozenset()  # ARM's /proc/cpuinfo says "Features"; under QEMU's user mode it is the x86 host's
    try:
        return frozenset(flags_from_cpuid(*read_cpuid()))
    except (OSError, ValueError, AttributeError):  # executable memory refused (a hardened kernel, say)
        return frozenset(_cpuinfo().get("flags", "").split())


def usable_cores() -> int:
    """The cores this process may run on: its affinity where the system keeps one (Linux, Windows), else all of them
    (macOS has neither `os.sched_getaffinity` nor psutil's `cpu_affinity`)."""
    import psutil

    try:
        return len(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error):
        return os.cpu_count() or 1


def model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()
