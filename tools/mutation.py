"""Mutation testing with mutmut: plant generated bugs in fmnist/, stages/ and tools/, and score what the tests catch.

    python -m tools.mutation                    # every module: a few hours on 2 cores
    python -m tools.mutation fmnist/cpu.py      # one file's mutants: minutes
    python -m tools.mutation --changed main     # the files a branch changes, as the pull-request check runs it

mutmut copies the code into mutants/ and runs, for each mutant, only the tests that call the mutated function
(tests/conftest.py relays what the stage processes the tests start call, so those tests count too). Its settings are
pyproject.toml's [tool.mutmut]. Then this prints the score of each module: the share of its mutants that a test
caught, leaving out the mutants marked equivalent in EQUIVALENT below. It exits 1 when a promise module is under
PROMISE_TARGET. `mutmut results` and `mutmut show NAME` tell what survived.
"""

import argparse
import fnmatch
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from fmnist.commands import run
from fmnist.stage_runner import StageError, run_stage

SCOPE = ("fmnist", "stages", "tools")
MUTANTS = Path("mutants")
PROMISE_TARGET = 0.90

# The modules whose promises the docs make (docs/development.md): each must stay at PROMISE_TARGET or above.
PROMISE_MODULES = (
    "fmnist.atomic_outputs",
    "fmnist.params.*",
    "fmnist.previous_outputs",
    "fmnist.cpu",
    "fmnist.exact_mode",
    "fmnist.package_lock",
    "tools.review",
    "tools.sweep",
    "stages.download",
)

# Mutants no test can catch because they change nothing a user can observe, each with the reason.
_NO_FLAG_AT_BIT_0 = "a leaf the CPU does not have reads as zeros; a 1 at bit 0 changes no flag: none is at bit 0"
EQUIVALENT: dict[str, str] = {
    **{
        name: "without these argtypes ctypes passes the same two ints and pointer, in the same registers of the"
        " x86-64 calling convention, to the CPUID code"
        for name in (
            "fmnist.cpu.x__machine_code__mutmut_17",
            "fmnist.cpu.x_read_cpuid__mutmut_10",
            "fmnist.cpu.x_read_cpuid__mutmut_11",
        )
    },
    "fmnist.cpu.x_flags_from_cpuid__mutmut_6": _NO_FLAG_AT_BIT_0,
    "fmnist.cpu.x_flags_from_cpuid__mutmut_7": _NO_FLAG_AT_BIT_0,
    "fmnist.cpu.x_flags_from_cpuid__mutmut_8": _NO_FLAG_AT_BIT_0,
    "fmnist.cpu.x_flags_from_cpuid__mutmut_9": _NO_FLAG_AT_BIT_0,
    "fmnist.cpu.x_flags_from_cpuid__mutmut_20": "XCR0 bit 0 is the x87 state, which no flag needs: 1 and 0 remove the"
    " same flags",
    "fmnist.cpu.x_read_cpuid__mutmut_31": "CPUID leaf 0 ignores the subleaf",
    **{
        f"fmnist.cpu.x_read_cpuid__mutmut_{n}": "the default for a missing leaf 1 is never read: every x86-64 CPU"
        " answers leaf 1, and read_cpuid runs on x86-64 only"
        for n in (49, 51, 54, 55, 56, 57)
    },
}

# mutmut's exit codes, as its stats module reads them. A mutant that crashed the test process or made it run past
# mutmut's limit failed the tests too: caught, in a column of its own.
KILLED = {1, 3, 37}
NOT_RUN = {None, 2, 34}


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def changed_files(base: str) -> list[str]:
    """The Python files of SCOPE that differ between base and the working tree."""
    names = run(["git", "diff", "--name-only", base, "--", *SCOPE]).split()
    return sorted(name for name in names if name.endswith(".py") and Path(name).exists())


def results(mutants: Path = MUTANTS) -> dict[str, Counter]:
    """{module: Counter of killed, survived, no tests, timeout, equivalent} from mutmut's files in mutants/."""
    scores: dict[str, Counter] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        for name, code in exit_codes.items():
            module = name.split(".x_")[0].split(".xǁ")[0]
            counts = scores.setdefault(module, Counter())
            if name in EQUIVALENT:
                counts["equivalent"] += 1
            elif code in KILLED:
                counts["killed"] += 1
            elif code in NOT_RUN:
                counts["not run"] += 1
            elif code == 0:
                counts["survived"] += 1
            elif code in (5, 33):
                counts["no tests"] += 1
            else:
                counts["timeout or crash"] += 1
    return scores


def score(counts: Counter) -> float | None:
    """Caught (killed, or crashed or timed out the tests) among the mutants that ran or had no test; equivalent ones
    and those not run left out."""
    caught = counts["killed"] + counts["timeout or crash"]
    total = caught + counts["survived"] + counts["no tests"]
    return caught / total if total else None


def is_promise(module: str) -> bool:
    return any(fnmatch.fnmatch(module, pattern) for pattern in PROMISE_MODULES)


def table(scores: dict[str, Counter]) -> str:
    lines = [
        "| module | killed | survived | no tests | timeout or crash | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for module, counts in sorted(scores.items()):
        value = score(counts)
        shown = f"{value:.0%}" if value is not None else "-"
        name = f"`{module}`" + (" (promise)" if is_promise(module) else "")
        lines.append(
            f"| {name} | {counts['killed']} | {counts['survived']} | {counts['no tests']} "
            f"| {counts['timeout or crash']} | {counts['equivalent']} | {shown} |"
        )
    return "\n".join(lines)


def below_target(scores: dict[str, Counter]) -> list[str]:
    return [
        f"{module} {value:.0%}"
        for module, counts in sorted(scores.items())
        if is_promise(module) and (value := score(counts)) is not None and value < PROMISE_TARGET
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="only these files' mutants (default: every file of the scope)")
    parser.add_argument("--changed", metavar="BASE", help="only the files that differ from this git revision")
    parser.add_argument("--max-children", type=int, help="mutants run at once (mutmut's default: the cores)")
    args = parser.parse_args()
    files = changed_files(args.changed) if args.changed else args.files
    if args.changed and not files:
        print(f"no Python file of {', '.join(SCOPE)} differs from {args.changed}: nothing to mutate")
        return
    patterns = [f"{module_of(file)}.*" for file in files]
    command = ["mutmut", "run", *patterns]
    if args.max_children:
        command += ["--max-children", str(args.max_children)]
    if subprocess.run(command).returncode not in (0, 1):  # mutmut exits 1 when mutants survived
        raise StageError(f"{' '.join(command)} failed; see its output above")
    scores = results()
    if files:
        wanted = {module_of(file) for file in files}
        scores = {module: counts for module, counts in scores.items() if module in wanted}
    unrun = sum(counts["not run"] for counts in scores.values())
    if unrun:  # mutmut stopped early (its first, clean test run failed, say) and still exited as if done
        raise StageError(f"{unrun} mutants were not run: mutmut stopped early; see its output above")
    print(table(scores))
    missed = below_target(scores)
    if missed:
        print(
            f"error: under {PROMISE_TARGET:.0%}: {', '.join(missed)}; `mutmut results` lists what survived",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
