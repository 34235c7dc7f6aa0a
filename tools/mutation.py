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

# What the docs promise (docs/development.md), as the mutants of the code that keeps each promise: a whole module,
# or the functions of one. Each must stay at PROMISE_TARGET or above.
PROMISES: dict[str, tuple[str, ...]] = {
    "fmnist.atomic_outputs": ("fmnist.atomic_outputs.*",),
    "fmnist.params": ("fmnist.params.*",),
    "fmnist.previous_outputs": ("fmnist.previous_outputs.*",),
    "fmnist.cpu": ("fmnist.cpu.*",),
    "fmnist.package_lock": ("fmnist.package_lock.*",),
    "fmnist.exact_mode: oneDNN ISA and pinning": ("fmnist.exact_mode.x_onednn_isa__*", "fmnist.exact_mode.x_pin__*"),
    "fmnist.training: save_model": ("fmnist.training.x_save_model__*", "fmnist.training.x__numbered_in_order__*"),
    "stages.download: sources, limits, checksums": tuple(
        f"stages.download.x_{name}__*"
        for name in ("copy_local", "decompressed_sha256", "http_get", "http_get_with_retries", "fetch_file")
    ),
    "tools.review: gate and staleness": tuple(
        f"tools.review.x_{name}__*"
        for name in (
            "gate_problem",
            "_in_4th_decimals",
            "bits_promised",
            "max_accuracy_drop",
            "reproduction_problem",
            "stale_stages",
            "pipeline_outputs",
            "missing_stages",
        )
    ),
    "tools.sweep: naming and push order": tuple(
        f"tools.sweep.x_{name}__*" for name in ("sweep_id", "experiment_ref", "run_point")
    ),
}

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
    "fmnist.atomic_outputs.x_clear_staging__mutmut_3": "listing a folder that does not exist finds nothing either way",
    "fmnist.atomic_outputs.x__staging_for__mutmut_12": "clearing a root again finds no dead process's folder the first"
    " clearing left, or clears one that is dead anyway: it costs a listing",
    "fmnist.atomic_outputs.x__umask__mutmut_3": "the umask is read by setting another and putting it back: which"
    " one is set for that instant does not change what is read",
    **{
        f"fmnist.atomic_outputs.x__remove_leftovers__mutmut_{n}": "a leftover can fail to go only if another process"
        " removes it meanwhile, and DVC's lock keeps a second writer of the stage out"
        for n in (3, 5, 6, 7, 8)
    },
    "fmnist.atomic_outputs.x__last_modified__mutmut_3": "rglob of a file finds nothing: the file alone either way",
    "fmnist.atomic_outputs.x__last_modified__mutmut_10": "modification times are seconds since 1970: a default of 0"
    " or 1 sorts a missing output before every written one alike",
    **{
        f"fmnist.atomic_outputs.xǁStagedOutputsǁbeing_written__mutmut_{n}": "an OSError's message already holds its"
        " filename: the error names the temporary with or without the attribute"
        for n in (2, 3, 8, 9, 10)
    },
    **{f"fmnist.params.x__printable__mutmut_{n}": "Python's codec names are case-insensitive" for n in (6, 8)},
    "fmnist.params.x__read_or_none__mutmut_7": "Python's codec names are case-insensitive",
    "fmnist.params.x_load__mutmut_5": "Python's codec names are case-insensitive",
    **{
        f"fmnist.params.x_parse__mutmut_{n}": "only the closest match is shown, however many are asked for"
        for n in (11, 13)
    },
    **{
        f"fmnist.params.x__read_or_none__mutmut_{n}": "the name given is only for an error message, which this"
        " function turns into None"
        for n in (2, 4)
    },
    "fmnist.params.x__read_or_none__mutmut_3": "ruamel.yaml, given the Path itself, reads the file as UTF-8: the"
    " same document",
    "fmnist.params.x_read_yaml__mutmut_6": "parse_yaml puts the name only into its own error's message, which"
    " _yaml_problem does not use",
    **{
        f"fmnist.params.x_check_unchanged__mutmut_{n}": "the text the stage read was parsed once already, when it"
        " read it: the name, which only an error would show, is never shown"
        for n in (8, 10)
    },
    **{
        f"fmnist.params.x_check_unchanged__mutmut_{n}": "Python's stderr has no buffer into a file or a pipe, and"
        " is line-buffered on a terminal: the one-line warning is written out with its newline, flush or not"
        for n in (72, 75, 76)
    },
    **{
        f"fmnist.params.xǁEditWatcherǁ__init____mutmut_{n}": "a thread's name shows only in a debugger's list of"
        " threads"
        for n in (1, 3)
    },
    **{
        f"fmnist.params.x__describe__mutmut_{n}": "only the closest match is shown, however many are asked for"
        for n in (21, 24)
    },
    **{
        f"fmnist.params.x__key__mutmut_{n}": "pydantic gives an empty location only for a rule over a whole model,"
        " and no section's schema has one (tests/test_sweep.py checks that)"
        for n in (8, 9)
    },
    **{
        f"fmnist.previous_outputs.x_put_back__mutmut_{n}": "a folder's listing is looked up in DVC's cache only: the"
        " path given for the git fallback is never used, and git has no file by the mutated name either"
        for n in (79, 81, 87)
    },
    "fmnist.previous_outputs.x_put_back__mutmut_48": "an output with no MD5 recorded is found nowhere, whichever"
    " placeholder stands for the missing MD5",
    "fmnist.previous_outputs.x__manifest_from_git__mutmut_18": "`--` only guards a folder name that starts with `-`;"
    " the mutated word is one more pathspec that matches no file",
    **{
        f"fmnist.previous_outputs.x__manifest_from_git__mutmut_{n}": "git ls-tree quotes a path with a tab in it, so"
        " the line has one tab however it is split"
        for n in (27, 28, 30)
    },
    **{
        f"fmnist.previous_outputs.x__manifest_from_git__mutmut_{n}": "each entry is built with its keys in sorted"
        " order already"
        for n in (56, 58, 66)
    },
    **{
        f"stages.download.x_http_get__mutmut_{n}": "HTTP header names are case-insensitive, and so is http.client's"
        " lookup of them"
        for n in (14, 15)
    },
    "stages.download.x_decompressed_sha256__mutmut_7": "gzip.open's default mode is 'rb'",
    **{
        f"stages.download.x_fetch_file__mutmut_{n}": "urljoin drops the empty path segment a doubled slash leaves: a"
        " source with its own slash and one more gives the same URL"
        for n in (10, 13)
    },
    "fmnist.exact_mode.x_pin__mutmut_23": "a CPU with AVX2 and FMA has other flags too (SSE, AVX): its flags are"
    " never exactly those two, so a strict subset is a subset there",
    "fmnist.training.x_save_model__mutmut_37": "zipfile.ZipInfo's default date_time is the same 1980-01-01 00:00",
    "fmnist.training.x_save_model__mutmut_43": "the zip format stores seconds in steps of two: 1 s is written as"
    " 0, the same bytes",
    "fmnist.training.x_save_model__mutmut_18": "Keras 3 writes date_saved into every metadata.json (a test checks"
    " what model.save writes): pop's default is never used",
    "stages.download.x_http_get_with_retries__mutmut_4": "the last attempt raises before the loop could go on: one"
    " more turn of it is never reached",
    **{
        f"tools.sweep.x_run_point__mutmut_{n}": "a ref's last component is its name however many times the ref is"
        " split from the right"
        for n in (50, 53, 54)
    },
    "tools.sweep.x_run_point__mutmut_62": "the default stands for a ref the remote lacks, and equals no local"
    " commit (None or 40 hex digits) either way",
    "tools.review.x__in_4th_decimals__mutmut_3": "both sides of each comparison scale alike: k * 1.0001, rounded,"
    " keeps the order and equality of metrics with 4 decimals",
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
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def changed_files(base: str) -> list[str]:
    """The Python files of SCOPE that differ between base and the working tree."""
    names = run(["git", "diff", "--name-only", base, "--", *SCOPE]).split()
    return sorted(name for name in names if name.endswith(".py") and Path(name).exists())


def statuses(mutants: Path = MUTANTS) -> dict[str, str]:
    """{mutant name: killed, survived, no tests, not run, timeout or crash, or equivalent}, from mutmut's files in
    mutants/."""
    found = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            if name in EQUIVALENT:
                found[name] = "equivalent"
            elif code in KILLED:
                found[name] = "killed"
            elif code in NOT_RUN:
                found[name] = "not run"
            elif code == 0:
                found[name] = "survived"
            elif code in (5, 33):
                found[name] = "no tests"
            else:
                found[name] = "timeout or crash"
    return found


def by_module(found: dict[str, str]) -> dict[str, Counter]:
    """{module: Counter of each status}, from statuses()."""
    scores: dict[str, Counter] = {}
    for name, status in found.items():
        scores.setdefault(name.split(".x_")[0].split(".xǁ")[0], Counter())[status] += 1
    return scores


def by_promise(found: dict[str, str]) -> dict[str, Counter]:
    """{promise: Counter of each status of its mutants}, for the promises with any mutant in `found`."""
    scores = {}
    for promise, patterns in PROMISES.items():
        counts = Counter(status for name, status in found.items() if _matches(name, patterns))
        if counts:
            scores[promise] = counts
    return scores


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def score(counts: Counter) -> float | None:
    """Caught (killed, or crashed or timed out the tests) among the mutants that ran or had no test; equivalent ones
    and those not run left out."""
    caught = counts["killed"] + counts["timeout or crash"]
    total = caught + counts["survived"] + counts["no tests"]
    return caught / total if total else None


def table(scores: dict[str, Counter], first: str = "module") -> str:
    lines = [
        f"| {first} | killed | survived | no tests | timeout or crash | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, counts in sorted(scores.items()):
        value = score(counts)
        shown = f"{value:.0%}" if value is not None else "-"
        lines.append(
            f"| `{name}` | {counts['killed']} | {counts['survived']} | {counts['no tests']} "
            f"| {counts['timeout or crash']} | {counts['equivalent']} | {shown} |"
        )
    return "\n".join(lines)


def below_target(scores: dict[str, Counter]) -> list[str]:
    return [
        f"{name} {value:.0%}"
        for name, counts in sorted(scores.items())
        if (value := score(counts)) is not None and value < PROMISE_TARGET
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="only these files' mutants (default: every file of the scope)")
    parser.add_argument("--changed", metavar="BASE", help="only the files that differ from this git revision")
    parser.add_argument("--promises", action="store_true", help="only the mutants of the code PROMISES names")
    parser.add_argument("--max-children", type=int, help="mutants run at once (mutmut's default: the cores)")
    args = parser.parse_args()
    files = changed_files(args.changed) if args.changed else args.files
    if args.changed and not files:
        print(f"no Python file of {', '.join(SCOPE)} differs from {args.changed}: nothing to mutate")
        return
    if args.promises:
        patterns = [pattern for promise in PROMISES.values() for pattern in promise]
    else:
        patterns = [f"{module_of(file)}.*" for file in files] or [f"{folder}.*" for folder in SCOPE]
    command = ["mutmut", "run", *patterns]
    if args.max_children:
        command += ["--max-children", str(args.max_children)]
    if subprocess.run(command).returncode not in (0, 1):  # mutmut exits 1 when mutants survived
        raise StageError(f"{' '.join(command)} failed; see its output above")
    # mutants/ keeps earlier runs' results too: score this run's selection only
    found = {name: status for name, status in statuses().items() if _matches(name, tuple(patterns))}
    unrun = sum(status == "not run" for status in found.values())
    if unrun:  # mutmut stopped early (its first, clean test run failed, say) and still exited as if done
        raise StageError(f"{unrun} mutants were not run: mutmut stopped early; see its output above")
    promises = by_promise(found)
    print(table(by_module(found)))
    print()
    print(table(promises, first="promise"))
    missed = below_target(promises)
    if missed:
        print(
            f"error: under {PROMISE_TARGET:.0%}: {', '.join(missed)}; `mutmut results` lists what survived",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
