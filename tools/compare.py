"""Compare runs in TensorBoard: gather the logs of several runs into one log root and serve it.

    python -m tools.compare workspace main my-experiment [--out compare] [--port 6006] [--no-serve]

Each run is the workspace, a git revision, or a DVC experiment name; its logs/ come out of the
DVC cache for that revision (no re-training) into compare/<run>/, so TensorBoard's Scalars and
HParams tabs put them side by side.
"""

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

from fmnist import paths
from fmnist.commands import dvc
from fmnist.stage_runner import StageError, run_stage

WORKSPACE = "workspace"


def experiment_revisions() -> dict[str, str]:
    """{experiment name: commit} for every DVC experiment in this repository."""
    return {
        exp["name"]: exp["rev"]
        for baseline in json.loads(dvc("exp", "show", "--json", "--all-commits"))
        for group in baseline.get("experiments") or []
        for exp in group["revs"]
        if exp.get("name")
    }


def folder_name(run: str) -> str:
    return re.sub(r"[^\w.-]+", "_", run)


def fetch_logs(run: str, revision: str | None, dest: Path) -> None:
    """Copy the logs/ of `revision` (None: the workspace) to dest, from the DVC cache or remote."""
    if revision is None:
        if not paths.LOGS.is_dir():
            raise StageError(f"{paths.LOGS}: no logs in the workspace (run dvc repro first)")
        shutil.copytree(paths.LOGS, dest)
        return
    from dvc.api import DVCFileSystem

    try:
        DVCFileSystem(".", rev=revision).get(paths.LOGS.as_posix(), str(dest), recursive=True)
    except Exception as error:  # DVC raises many kinds; all mean this run's logs can't be had
        raise StageError(f"{run}: cannot fetch {paths.LOGS}/ at {revision}: {error}") from None


def gather(runs: list[str], out: Path) -> list[Path]:
    experiments = experiment_revisions() if any(run != WORKSPACE for run in runs) else {}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    folders = []
    for run in runs:
        revision = None if run == WORKSPACE else experiments.get(run, run)
        folder = out / folder_name(run)
        fetch_logs(run, revision, folder)
        folders.append(folder)
        print(f"{run}: {folder}")
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="'workspace', git revisions or DVC experiment names")
    parser.add_argument("--out", type=Path, default=Path("compare"), help="log root to fill (emptied first)")
    parser.add_argument("--port", type=int, default=6006)
    parser.add_argument("--no-serve", action="store_true", help="only gather the logs")
    args = parser.parse_args()
    gather(args.runs, args.out)
    if not args.no_serve:
        print(f"TensorBoard on http://localhost:{args.port} (Ctrl-C to stop)")
        subprocess.run(["tensorboard", "--logdir", str(args.out), "--port", str(args.port)], check=False)


if __name__ == "__main__":
    run_stage(main)
