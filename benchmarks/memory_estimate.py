"""Train's memory estimate against the peak it measures, at several batch sizes; and what the supervisor costs.

    python -m benchmarks.memory_estimate [--batches 64,1024,4096,16384] [--pairs 3]

Run from the repository root after `dvc repro` (it uses data/prepared). Each batch size trains one epoch of the
default model in a temporary copy of the project, as `python -m stages.train` in one process
(FMNIST_UNSUPERVISED=1), whose peak resident memory the kernel reports (wait4's ru_maxrss); the estimate is the one
the stage printed before training. The estimate is meant as an upper bound: a ratio under 1 everywhere.

Then the supervisor's cost: `python -m stages.evaluate` supervised and not, alternating, `--pairs` times each: the
median and range of the extra wall seconds and the supervising process's own peak memory.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from fmnist import paths

REPO = Path(__file__).resolve().parents[1]
ESTIMATE = re.compile(r"train: memory: peak at most about ([\d.]+) GiB")


def project_copy(folder: Path, **train) -> Path:
    for part in ("stages", "fmnist"):
        shutil.copytree(REPO / part, folder / part)
    for part in ("requirements.txt", "dvc.yaml"):
        shutil.copy(REPO / part, folder)
    shutil.copytree(REPO / paths.PREPARED_DIR, folder / paths.PREPARED_DIR)
    (folder / ".dvc").mkdir()
    values = yaml.safe_load((REPO / paths.PARAMS).read_text())
    values["train"].update(train)
    (folder / paths.PARAMS).write_text(yaml.safe_dump(values))
    return folder


def run(project: Path, stage: str, supervised: bool) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GiB of the process started, its stdout) of `python -m stages.<stage>`."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    if not supervised:
        env["FMNIST_UNSUPERVISED"] = "1"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{stage} failed:\n{output[-2000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 2**20, output  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="64,1024,4096,16384", help="comma-separated; empty: the supervisor only")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'batch':>7}{'estimate GiB':>14}{'peak GiB':>10}{'peak/estimate':>15}")
    for batch in (int(value) for value in args.batches.split(",") if value):
        with tempfile.TemporaryDirectory() as scratch:
            project = project_copy(Path(scratch), batch_size=batch, epochs=1)
            _, peak, output = run(project, "train", supervised=False)
        estimate = float(ESTIMATE.search(output)[1])
        print(f"{batch:>7}{estimate:>14.2f}{peak:>10.2f}{peak / estimate:>15.2f}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        project = project_copy(Path(scratch), epochs=1, batch_size=1024)
        run(project, "train", supervised=False)  # a model to evaluate
        extra = []
        for _ in range(args.pairs):
            alone, _, _ = run(project, "evaluate", supervised=False)
            watched, _, _ = run(project, "evaluate", supervised=True)
            extra.append(watched - alone)
        # The supervising process alone: its own peak, without the child it waits for (ru_maxrss of the process
        # DVC starts covers both), read while the child runs.
        parent = supervisor_rss(project)
    print(
        f"supervisor: {statistics.median(extra):+.2f} s a stage run (median of {args.pairs} pairs,"
        f" {min(extra):+.2f} to {max(extra):+.2f}); the supervising process holds {parent / 2**20:.0f} MiB"
    )


def supervisor_rss(project: Path) -> int:
    process = psutil.Popen([sys.executable, "-m", "stages.evaluate"], cwd=project, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.1)
    return peak


if __name__ == "__main__":
    main()
