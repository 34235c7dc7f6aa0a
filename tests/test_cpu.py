"""fmnist.cpu: the flags a process may use, from CPUID and XGETBV as oneDNN reads them."""

import platform
from pathlib import Path

import pytest

from fmnist import cpu

LEAF_1 = (0, 0, 1 << 19 | 1 << 12 | 1 << 28 | 1 << 27, 0)  # SSE4.1, FMA, AVX, OSXSAVE
LEAF_7 = (0, 1 << 5 | 1 << 16 | 1 << 17 | 1 << 30 | 1 << 31, 1 << 11, 1 << 22 | 1 << 23 | 1 << 24 | 1 << 25)
LEAF_7_1 = (1 << 4 | 1 << 5, 0, 0, 1 << 4 | 1 << 5)  # AVX-VNNI, AVX512-BF16; AVX-VNNI-INT8, AVX-NE-CONVERT
EVERYTHING = {(1, 0): LEAF_1, (7, 0): LEAF_7, (7, 1): LEAF_7_1}


def test_each_flag_comes_from_its_cpuid_bit_when_the_os_saves_its_registers():
    assert cpu.flags_from_cpuid(EVERYTHING, 0x6 | 0xE0 | 0x60000) == {
        "sse4_1", "fma", "avx", "avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_fp16",
        "amx_bf16", "amx_tile", "amx_int8", "avx_vnni", "avx512_bf16", "avx_vnni_int8", "avx_ne_convert",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("xcr0", "gone"),
    [
        (0x6 | 0xE0, {"amx_bf16", "amx_tile", "amx_int8"}),  # no tile state: no AMX
        (0x6 | 0x60000, {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_fp16", "avx512_bf16"}),
        (0x0, None),  # no AVX state: SSE only
    ],
)
def test_what_the_os_does_not_save_the_process_may_not_use(xcr0, gone):
    everything = cpu.flags_from_cpuid(EVERYTHING, 0x6 | 0xE0 | 0x60000)
    expected = {"sse4_1"} if gone is None else everything - gone
    assert cpu.flags_from_cpuid(EVERYTHING, xcr0) == expected


def test_without_osxsave_xcr0_is_not_believed():
    no_osxsave = {**EVERYTHING, (1, 0): (0, 0, 1 << 19 | 1 << 28, 0)}
    assert cpu.flags_from_cpuid(no_osxsave, 0xFFFFFFFF) == {"sse4_1"}


@pytest.mark.skipif(
    not Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64", reason="needs Linux on x86-64"
)
def test_cpuid_agrees_with_proc_cpuinfo_on_every_flag_both_know():
    listed = set(cpu._cpuinfo().get("flags", "").split())
    known = set(cpu._BITS) - {"avx_vnni_int8", "avx_ne_convert"}  # the two Linux does not list
    assert set(cpu.flags()) & known == listed & known


def test_usable_cores_follow_the_affinity_and_fall_back_to_every_core_where_there_is_none(monkeypatch):
    import os

    import psutil

    if hasattr(os, "sched_getaffinity"):
        assert cpu.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(psutil.Process, "cpu_affinity", raising=False)  # as on macOS
    assert cpu.usable_cores() == os.cpu_count()
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # Python's answer where it cannot tell
    assert cpu.usable_cores() == 1


CPUINFO = """processor\t: 0
model name\t: QEMU Virtual CPU version 2.5+: AMD EPYC 9R14
flags\t\t: fpu sse4_1 avx2

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu
"""


def test_the_cpu_is_named_from_the_first_processor_and_where_linux_has_no_name(tmp_path, monkeypatch):
    """The CPU name the timing logs and the review print: /proc/cpuinfo's first processor, else ARM's `Model`, else
    what Python knows."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    monkeypatch.setattr(cpu, "Path", lambda _: cpuinfo)
    name = "QEMU Virtual CPU version 2.5+: AMD EPYC 9R14"  # a value may hold a colon
    assert cpu._cpuinfo() == {"processor": "0", "model name": name, "flags": "fpu sse4_1 avx2"}
    assert cpu.model() == name

    cpuinfo.write_text("processor\t: 0\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")  # aarch64 Linux
    assert cpu.model() == "Raspberry Pi 5 Model B Rev 1.0"

    monkeypatch.setattr(cpu, "Path", lambda _: tmp_path / "missing")  # macOS, Windows: no /proc
    assert cpu._cpuinfo() == {}
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpu.model() == "arm"
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    assert cpu.model() == "arm64"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="CPUID is an x86 instruction")
def test_cpuid_runs_here_rather_than_falling_back_to_proc_cpuinfo():
    """The flags come from the instruction itself: /proc/cpuinfo lacks two that oneDNN's AVX2_VNNI_2 needs."""
    registers, xcr0 = cpu.read_cpuid()
    assert {(1, 0), (7, 0)} <= set(registers)  # features and extended features: every CPU with AVX2 has both
    assert registers[(1, 0)][2] & 1 << 27 and xcr0 & 0b110 == 0b110  # OSXSAVE; the OS saves SSE and AVX state
    assert cpu.flags() == frozenset(cpu.flags_from_cpuid(registers, xcr0))


def test_a_cpu_without_the_extended_leaves_reads_them_as_zeros():
    """A CPU whose highest CPUID leaf is below 7 (older than AVX2) gives no answer for leaves 7.0 and 7.1: none of
    their flags, and no error."""
    assert cpu.flags_from_cpuid({(1, 0): LEAF_1}, 0x6) == {"sse4_1", "fma", "avx"}
    assert cpu.flags_from_cpuid({}, 0x6) == set()


def test_other_architectures_have_no_x86_flags_whatever_proc_cpuinfo_says(tmp_path, monkeypatch):
    """Under QEMU's user mode an aarch64 process reads the x86 host's /proc/cpuinfo; on a real ARM CPU it lists
    `Features`. Either way, no x86 flag: exact mode must not take an ARM CPU for one with AVX2."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\n")
    monkeypatch.setattr(cpu, "Path", lambda _: info)
    monkeypatch.setattr(cpu, "read_cpuid", lambda: (_ for _ in ()).throw(OSError("executable memory refused")))
    for machine, expected in (("aarch64", set()), ("arm64", set()), ("x86_64", {"fpu", "sse2", "avx", "avx2", "fma"})):
        monkeypatch.setattr(platform, "machine", lambda machine=machine: machine)
        cpu.flags.cache_clear()
        assert cpu.flags() == expected, machine
    cpu.flags.cache_clear()
