"""A sweep fanned out over machines: each runs one experiment of the grid and shares it with `dvc exp push`.

    python -m tools.sweep plan "train.learning_rate=0.001,0.002 train.dropout=0.1,0.2"   # the grid, as JSON
    python -m tools.sweep run "<sweep>" INDEX [--prefix sweep] [--remote origin]      # one point, then push it
    python -m tools.sweep show [--remote origin] [--prefix sweep]   # pull them, a Markdown table by test accuracy

The sweep grammar is `dvc exp run -S`'s (DVC's own Hydra parser: `a=1,2`, `range(1,4)`, `choice(x,y)`), so
`plan` gives the same grid that `dvc exp run --queue -S ...` would queue on one machine. `run` runs
`dvc exp run --pull` (upstream stages come from the DVC remote, not re-run) and `dvc exp push` (the experiment's
commit to the Git remote, its outputs to the DVC remote). `.github/workflows/sweep.yml` runs `plan` once, `run` in
a job matrix, and `show` at the end; two machines sharing a Git and a DVC remote run the same commands by hand.
"""

import argparse
import json
import shlex
import subprocess

from fmnist.errors import StageError, run_stage
from tools.review import dvc

METRICS = "reports/metrics.json"  # evaluate's test metrics


def grid(sweep: str) -> list[list[str]]:
    """Each experiment of the sweep as its `-S` values, in DVC's order."""
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


def matrix(sweep: str) -> dict:
    """A GitHub Actions job matrix: one entry per experiment, named by its index (the job passes it back)."""
    return {"include": [{"index": index, "params": " ".join(point)} for index, point in enumerate(grid(sweep))]}


def run_point(sweep: str, index: int, prefix: str, remote: str) -> str:
    points = grid(sweep)
    if not 0 <= index < len(points):
        raise StageError(f"sweep {sweep!r} has {len(points)} experiments; no index {index}")
    name = f"{prefix}-{index}"
    settings = [arg for value in points[index] for arg in ("-S", value)]
    subprocess.run(["dvc", "exp", "run", "--pull", "-n", name, *settings], check=True)  # its output is the log
    dvc("exp", "push", remote, name)
    return name


def experiments() -> list[dict]:
    """Every experiment `dvc exp show` knows here: name, test metrics, train params."""
    found = []
    for baseline in json.loads(dvc("exp", "show", "--json")):
        for group in baseline.get("experiments") or []:
            for exp in group["revs"]:
                data = exp.get("data") or {}
                metrics = (data.get("metrics") or {}).get(METRICS, {}).get("data", {})
                train = (data.get("params") or {}).get("params.yaml", {}).get("data", {}).get("train", {})
                found.append({"name": exp.get("name") or exp["rev"][:7], "metrics": metrics, "train": train})
    return found


def show(remote: str, prefix: str = "") -> str:
    """The remote's experiments named PREFIX..., pulled, as a Markdown table sorted by test accuracy (best first),
    with the train params that differ between them."""
    for name in dvc("exp", "list", remote, "--name-only").split():
        if name.startswith(prefix) and not name.endswith(":"):  # `main:` and alike head each baseline's list
            dvc("exp", "pull", remote, name)
    found = [exp for exp in experiments() if exp["name"].startswith(prefix)]
    found.sort(key=lambda exp: exp["metrics"].get("accuracy", -1), reverse=True)
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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plan").add_argument("sweep")
    one = commands.add_parser("run")
    one.add_argument("sweep")
    one.add_argument("index", type=int)
    one.add_argument("--prefix", default="sweep", help="experiment names are PREFIX-INDEX")
    one.add_argument("--remote", default="origin", help="the Git remote to push the experiment to")
    everything = commands.add_parser("show")
    everything.add_argument("--remote", default="origin")
    everything.add_argument("--prefix", default="", help="only the experiments whose names start with this")
    args = parser.parse_args()
    if args.command == "plan":
        print(json.dumps(matrix(args.sweep)))
    elif args.command == "run":
        print(f"sweep: pushed experiment {run_point(args.sweep, args.index, args.prefix, args.remote)}")
    else:
        print(show(args.remote, args.prefix), end="")


if __name__ == "__main__":
    run_stage(main)
