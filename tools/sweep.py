"""A sweep fanned out over machines: each runs one experiment of the grid and shares it through a Git remote (the
experiment's commit) and a DVC remote (its outputs).

    python -m tools.sweep plan "train.learning_rate=0.001,0.002 train.dropout=0.1,0.2"   # the grid, as JSON
    python -m tools.sweep run "<sweep>" INDEX [--prefix sweep] [--remote origin]      # one point, then push it
    python -m tools.sweep show [--remote origin] [--prefix sweep]   # a Markdown table by test accuracy

The sweep grammar is `dvc exp run -S`'s (DVC's own Hydra parser: `a=1,2`, `range(1,4)`, `choice(x,y)`), so
`plan` gives the same grid that `dvc exp run --queue -S ...` would queue on one machine, each point once, and
refuses, in one line before any runner starts, a grid over GitHub Actions' 256 jobs or a point the stages would.

`run` names its experiment PREFIX-SWEEP-INDEX, SWEEP being 6 hex digits of the grid and the baseline commit, so
every runner of one sweep agrees on the names and no other sweep shares them. In order, each step failing with one
line that names it and the remote:
1. checks both remotes before any training: the Git remote is reachable and holds no experiment of that name (no
   overwrite), and the DVC remote takes a write with the credentials given;
2. `dvc pull`s the baseline's outputs (download and preprocess are not re-run) and `dvc exp run`s the point;
3. pushes the experiment's outputs to the DVC remote, and only then its ref to the Git remote, so what others
   see there is always whole. Run again after a failed or killed push, it pushes the experiment it already has
   instead of training again.
`show` fetches the refs, ranks the experiments whose outputs are all on the DVC remote, lists the others as
incomplete, and gives each sweep (grid and baseline) its own table.
"""

import argparse
import difflib
import hashlib
import json
import logging
import re
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from fmnist import params, paths
from fmnist.stage_runner import StageError, run_stage

EXPERIMENT_REFS = "refs/exps"  # DVC's namespace: refs/exps/<baseline[:2]>/<baseline[2:]>/<name>
# What `dvc fetch` logs, as a warning only, for objects the remote lacks (dvc/repo/fetch.py; a test checks it).
MISSING = "do not exist neither locally nor on remote"
# How S3 and its kin say "too many requests" (503 SlowDown, 429): the remote is there, only busy.
THROTTLED = re.compile(r"SlowDown|Throttl|TooManyRequests|RequestLimitExceeded|reduce your request rate", re.I)
SWEEP_NAME = re.compile(r"(?P<prefix>.+)-(?P<sweep>[0-9a-f]{6})-(?P<index>\d+)")


MATRIX_LIMIT = 256  # GitHub Actions refuses a job matrix of more jobs than this


def grid(sweep: str) -> list[list[str]]:
    """Each experiment of the sweep as its `-S` values, in DVC's order, each point once."""
    return _unique(_hydra_points(sweep))


def _unique(points: list[list[str]]) -> list[list[str]]:
    return [list(point) for point in dict.fromkeys(map(tuple, points))]


def _hydra_points(sweep: str) -> list[list[str]]:
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    overrides = shlex.split(sweep)
    if not overrides or any("=" not in item for item in overrides):
        raise StageError(f"sweep {sweep!r}: expected KEY=VALUES items, e.g. train.learning_rate=0.001,0.002")
    try:
        points = get_hydra_sweeps(to_path_overrides(overrides))
    except (InvalidArgumentError, ValueError) as error:
        raise StageError(f"sweep {sweep!r}: {error}") from None
    return [[value for values in point.values() for value in values] for point in points]


def split_advice(points: list[list[str]]) -> str:
    """How to cut a grid (a product of value lists) into the fewest sweeps of at most MATRIX_LIMIT points: split the
    longest value list into parts."""
    values: dict[str, list[str]] = {}
    for point in points:
        for setting in point:
            key, _, value = setting.partition("=")
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    longest = max(values, key=lambda key: len(values[key]))
    others = len(points) // len(values[longest])  # points per value of the longest list
    if others > MATRIX_LIMIT:
        return f"split it by key: one value of {longest} alone gives {others} points"
    per_sweep = MATRIX_LIMIT // others
    sweeps = -(-len(values[longest]) // per_sweep)
    return (
        f"split {longest}'s {len(values[longest])} values into {sweeps} sweeps of at most {per_sweep}"
        f" ({per_sweep * others} points each)"
    )


def check_points(points: list[list[str]], params_file: Path = paths.PARAMS) -> None:
    """Every point's values as the stages would take them: applied to params.yaml as `dvc exp run -S` applies them
    (DVC's own Hydra code), then validated by the params schema. Each distinct setting is checked once, on its own:
    the schema's constraints are per key (no model validator), so a point is valid when each of its settings is."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    from fmnist.params.all_sections import AllParams

    base = params_file.read_text(encoding="utf-8")
    checked: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / params_file.name
        for index, point in enumerate(points):
            for setting in point:
                if setting in checked:
                    continue
                trial.write_text(base, encoding="utf-8")
                try:
                    apply_overrides(trial, [setting])
                    params.parse_text(trial.read_text(encoding="utf-8"), AllParams, params_file)
                except InvalidArgumentError as error:  # Hydra: a key params.yaml lacks, or a value it cannot parse
                    problem = _override_problem(setting, error, params.read_yaml(base, params_file))
                    raise StageError(f"sweep point {index} ({' '.join(point)}): {params_file}: {problem}") from None
                except StageError as error:
                    raise StageError(f"sweep point {index} ({' '.join(point)}): {error}") from None
                checked.add(setting)


def _override_problem(setting: str, error: Exception, base: object) -> str:
    key = setting.partition("=")[0]
    cause = str(error.__cause__ or error).splitlines()[0]
    if not cause.startswith("Could not override"):
        return f"{setting}: {cause}"
    hint = difflib.get_close_matches(key, params.flat_keys(base), n=1, cutoff=0.8)
    return f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")


def matrix(sweep: str, params_file: Path = paths.PARAMS) -> dict:
    """A GitHub Actions job matrix: one entry per experiment, named by its index (the job passes it back). Checked
    before any runner starts: no duplicates, within GitHub's job limit, every value one the stages take."""
    every = _hydra_points(sweep)
    points = _unique(every)
    if len(points) < len(every):
        print(f"note: sweep: dropped {len(every) - len(points)} duplicate points", file=sys.stderr)
    if len(points) > MATRIX_LIMIT:
        raise StageError(
            f"sweep {sweep!r}: {len(points)} points, over GitHub Actions' limit of {MATRIX_LIMIT} jobs a matrix;"
            f" {split_advice(points)}"
        )
    check_points(points, params_file)
    return {"include": [{"index": index, "params": " ".join(point)} for index, point in enumerate(points)]}


def sweep_id(sweep: str, baseline: str) -> str:
    """6 hex digits naming a grid run from a commit: the same on every runner of it, another for any other."""
    return hashlib.sha256(f"{baseline} {shlex.split(sweep)}".encode()).hexdigest()[:6]


def experiment_ref(baseline: str, name: str) -> str:
    return f"{EXPERIMENT_REFS}/{baseline[:2]}/{baseline[2:]}/{name}"


def without_secrets(text: str) -> str:
    """A Git remote may be a URL carrying a token (the workflow's is): never print it."""
    return re.sub(r"://[^/@\s]+@", "://***@", text)


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise StageError((result.stderr.strip().splitlines() or [f"git {args[0]} exited {result.returncode}"])[-1])
    return result.stdout


def remote_experiments(git_remote: str, what: str) -> dict[str, str]:
    """Every experiment ref on the Git remote: ref -> commit."""
    try:
        listing = git("ls-remote", git_remote, f"{EXPERIMENT_REFS}/*")
    except StageError as error:
        raise StageError(f"cannot reach Git remote {git_remote!r}: {error}; {what}") from None
    return {ref: commit for commit, ref in (line.split("\t") for line in listing.splitlines())}


@contextmanager
def dvc_step(step: str, then: str, warnings: list[str] | None = None) -> Iterator[object]:
    """DVC's Python API for one step. Its exceptions summarize ("2 files failed to upload") while the cause goes
    to its log: a failure becomes one line with the step, the first cause logged, and what to do (`then`).
    Warnings logged meanwhile go to `warnings`."""
    from dvc.repo import Repo

    causes = []

    def keep(record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        text = record.getMessage() + (f" - {error}" if error else "")
        (causes if record.levelno >= logging.ERROR else warnings if warnings is not None else []).append(text)

    keeper = logging.Handler(logging.WARNING)
    keeper.emit = keep
    loggers = [logging.getLogger(name) for name in ("", "dvc")]  # DVC's own does not propagate to the root's
    for logger in loggers:
        logger.addHandler(keeper)
    try:
        with Repo() as repo:
            yield repo
    except StageError:
        raise
    except Exception as error:  # any failure of a remote's stack (s3fs, botocore, aiohttp) is the step's
        cause = causes[0] if causes else f"{type(error).__name__}: {error}"
        cause = " ".join(str(cause).split())  # one line
        if THROTTLED.search(cause):
            cause = f"the remote is throttling requests, wait a few minutes ({cause})"
        raise StageError(f"{step} failed: {without_secrets(cause)}; {then}") from None
    finally:
        for logger in loggers:
            logger.removeHandler(keeper)


def dvc_remote_name(repo, name: str | None) -> str:
    name = name or repo.config["core"].get("remote")
    if not name:
        raise StageError("no DVC remote: add one with `dvc remote add -d NAME URL`, or pass --dvc-remote")
    return name


def describe(repo, name: str) -> str:
    url = repo.config["remote"].get(name, {}).get("url", "?")
    return f"DVC remote {name!r} ({without_secrets(url)})"


def check_dvc_remote(repo, name: str, write: bool, then: str) -> None:
    """Read (and with `write`, write and delete a small probe) where the remote keeps its objects; a failure is one
    line saying which: no credentials, credentials refused, or the remote out of reach."""
    remote = repo.cloud.get_remote(name)
    where = describe(repo, name)
    try:
        if write:
            remote.fs.makedirs(remote.path, exist_ok=True)
            probe = remote.fs.join(remote.path, f".access-check-{uuid.uuid4().hex}")
            remote.fs.pipe_file(probe, b"")
            remote.fs.rm(probe)
        else:
            remote.fs.exists(remote.fs.join(remote.path, "files"))
    except Exception as error:  # as in dvc_step
        message = " ".join(str(error).split())
        if type(error).__name__ == "NoCredentialsError":
            raise StageError(
                f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; {then}"
            ) from None
        if isinstance(error, PermissionError):
            raise StageError(f"{where} refused access ({'write' if write else 'read'}): {message}; {then}") from None
        if THROTTLED.search(message):
            raise StageError(f"{where} is throttling requests, wait a few minutes: {message}; {then}") from None
        raise StageError(f"cannot reach {where}: {type(error).__name__}: {message}; {then}") from None


def run_point(sweep: str, index: int, prefix: str, git_remote: str, dvc_remote: str | None = None) -> str:
    points = grid(sweep)
    if not 0 <= index < len(points):
        raise StageError(f"sweep {sweep!r} has {len(points)} experiments; no index {index}")
    baseline = git("rev-parse", "HEAD").strip()
    name = f"{prefix}-{sweep_id(sweep, baseline)}-{index}"
    ref = experiment_ref(baseline, name)
    here = git("for-each-ref", "--format=%(objectname)", ref).strip() or None  # from an earlier, unfinished run

    try:
        theirs = remote_experiments(git_remote, "nothing was run")
        taken = [their_ref for their_ref in theirs if their_ref.rsplit("/", 1)[-1] == name]
        if taken and theirs.get(ref, "") != here:
            raise StageError(
                f"Git remote {git_remote!r} already has an experiment named {name} (another runner of this point,"
                " or an earlier run of this sweep): not run again, nothing overwritten; `sweep show` lists it"
            )
        with dvc_step("checking the DVC remote", "nothing was run") as repo:
            dvc_remote = dvc_remote_name(repo, dvc_remote)
            check_dvc_remote(repo, dvc_remote, write=True, then="nothing was run")
            where = describe(repo, dvc_remote)

        if here is None:
            with dvc_step(f"pulling the baseline's outputs from {where}", "nothing was trained") as repo:
                repo.pull(remote=dvc_remote)
            settings = [arg for value in points[index] for arg in ("-S", value)]
            trained = subprocess.run(["dvc", "exp", "run", "-n", name, *settings])  # its output is the log
            if trained.returncode != 0:
                raise StageError(f"`dvc exp run` failed (exit {trained.returncode}, output above); nothing was pushed")
            here = git("rev-parse", ref).strip()
        else:
            print(f"sweep: {name} already ran here ({here[:7]}); pushing it")

        unlisted = "its Git ref was not pushed, so no one sees it half-pushed; run again to push it without training"
        with dvc_step(f"pushing its outputs to {where}", unlisted) as repo:
            repo.push(revs=[here], workspace=False, remote=dvc_remote)
        with dvc_step(
            f"pushing it to Git remote {git_remote!r}",
            f"its outputs are on {where}; run again to push it without training",
        ) as repo:
            pushed = repo.experiments.push(git_remote, [name], push_cache=False)
        if pushed.get("diverged"):
            raise StageError(
                f"Git remote {git_remote!r} got an experiment named {name} from another runner meanwhile: not"
                " overwritten; this one's outputs are on the DVC remote but it is not listed"
            )
    except StageError as error:
        raise StageError(f"sweep run {name}: {without_secrets(str(error))}") from None
    return name


def read_at(commit: str, path: str) -> dict:
    try:
        return yaml.safe_load(git("show", f"{commit}:{path}")) or {}
    except StageError:
        return {}


def experiments(git_remote: str, prefix: str, dvc_remote: str | None) -> list[dict]:
    """The remote's experiments named PREFIX...: fetched, with test metrics, train params, and whether all their
    cached outputs came from the DVC remote (`complete`)."""
    theirs = {
        ref: commit
        for ref, commit in remote_experiments(git_remote, "nothing shown").items()
        if ref.rsplit("/", 1)[-1].startswith(prefix)
    }
    if not theirs:
        return []
    try:
        git("fetch", "--quiet", git_remote, *(f"+{ref}:{ref}" for ref in theirs))
    except StageError as error:
        raise StageError(f"fetching experiments from Git remote {git_remote!r} failed: {error}") from None
    with dvc_step("checking the DVC remote", "nothing shown") as repo:
        dvc_remote = dvc_remote_name(repo, dvc_remote)
        check_dvc_remote(repo, dvc_remote, write=False, then="nothing shown")
    found = []
    for ref, commit in sorted(theirs.items()):
        _, _, high, low, name = ref.split("/", 4)
        warnings = []
        try:
            with dvc_step("fetching outputs", "", warnings) as repo:
                repo.fetch(revs=[commit], workspace=False, remote=dvc_remote)
                # What this clone's cache holds was not fetched, so not checked: ask the remote for each object.
                complete = not any(MISSING in warning for warning in warnings) and not missing_on_remote(
                    repo, commit, dvc_remote
                )
        except StageError:
            complete = False
        found.append(
            {
                "name": name,
                "baseline": high + low,
                "complete": complete,
                "metrics": read_at(commit, str(paths.METRICS)),
                "train": read_at(commit, str(paths.PARAMS)).get("train", {}),
            }
        )
    return found


def missing_on_remote(repo, commit: str, remote: str) -> int:
    """How many of the commit's cached output objects (each folder's files included) the DVC remote lacks."""
    missing = 0
    for _ in repo.brancher(revs=[commit], workspace=False):
        for odb, objects in repo.index.used_objs(remote=remote, force=True, push=True).items():
            if odb is None:  # the project's own outputs (not imports)
                status = repo.cloud.status(objects, remote=remote)
                missing += len(status.new) + len(status.missing)
    return missing


def table(found: list[dict]) -> list[str]:
    """Markdown, best test accuracy first, with the train params that differ between the experiments."""
    found = sorted(found, key=lambda exp: exp["metrics"].get("accuracy", -1), reverse=True)
    varied = sorted(
        {key for exp in found for key in exp["train"] if len({str(e["train"].get(key)) for e in found}) > 1}
    )
    header = ["experiment", "test accuracy", "single view", "test loss", *(f"train.{key}" for key in varied)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for exp in found:
        cells = [
            exp["name"],
            *(str(exp["metrics"].get(key, "")) for key in ("accuracy", "single_view_accuracy", "loss")),
        ]
        lines.append("| " + " | ".join(cells + [str(exp["train"].get(key, "")) for key in varied]) + " |")
    return lines


def show(git_remote: str, prefix: str = "", dvc_remote: str | None = None) -> str:
    found = experiments(git_remote, prefix, dvc_remote)
    if not found:
        return f"No experiments named {prefix}... on Git remote {without_secrets(git_remote)!r}.\n"
    return render(found, prefix)


def render(found: list[dict], prefix: str) -> str:
    """One table per sweep (grid and baseline), the best first; incomplete experiments listed, not ranked."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for exp in found:
        match = SWEEP_NAME.fullmatch(exp["name"])
        groups.setdefault((exp["baseline"], match["sweep"] if match else ""), []).append(exp)
    lines = []
    if len(groups) > 1:
        lines += [
            f"Note: the experiments named {prefix}... come from {len(groups)} sweeps (another grid or baseline"
            " commit each): each has its own table, since their figures are not comparable.",
            "",
        ]
    for (baseline, sweep), group in groups.items():
        complete = [exp for exp in group if exp["complete"]]
        if len(groups) > 1:
            title = f"sweep {sweep}" if sweep else "experiments not named by a sweep"
            lines += [f"### {title}, baseline {baseline[:7]}", ""]
        if complete:
            lines += table(complete)
        incomplete = sorted(exp["name"] for exp in group if not exp["complete"])
        if incomplete:
            lines += [
                "",
                "Incomplete, not ranked (Git ref pushed, outputs missing from the DVC remote): "
                + ", ".join(incomplete),
            ]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plan").add_argument("sweep")
    one = commands.add_parser("run")
    one.add_argument("sweep")
    one.add_argument("index", type=int)
    one.add_argument("--prefix", default="sweep", help="experiment names are PREFIX-SWEEP-INDEX")
    everything = commands.add_parser("show")
    everything.add_argument("--prefix", default="", help="only the experiments whose names start with this")
    for command in (one, everything):
        command.add_argument("--remote", default="origin", help="the Git remote that shares the experiments")
        command.add_argument("--dvc-remote", help="the DVC remote that shares their outputs (default: the default)")
    args = parser.parse_args()
    if args.command == "plan":
        print(json.dumps(matrix(args.sweep)))
    elif args.command == "run":
        name = run_point(args.sweep, args.index, args.prefix, args.remote, args.dvc_remote)
        print(f"sweep: pushed experiment {name}")
    else:
        print(show(args.remote, args.prefix, args.dvc_remote), end="")


if __name__ == "__main__":
    run_stage(main)
