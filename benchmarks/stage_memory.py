"""Peak resident memory and wall time of each stage on the full data, each in its own process.

    python -m benchmarks.stage_memory [--epochs 1]

Runs download (from Debian's copy) through evaluate in a temporary copy of the project, so the
workspace is untouched; train runs `--epochs` epochs of the default model (memory does not grow
with epochs). Target: train under 2 GiB.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_stage(project: Path, stage: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `python -m stages.<stage>`."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=project, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{stage} failed")
    return time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        for package in ("stages", "fmnist"):
            shutil.copytree(REPO / package, project / package)
        shutil.copy(REPO / "requirements.txt", project)  # the lock train checks the environment against
        values = yaml.safe_load((REPO / "params.yaml").read_text())
        values["download"]["sources"] = [args.source]
        values["train"]["epochs"] = args.epochs
        (project / "params.yaml").write_text(yaml.safe_dump(values))
        print(f"{'stage':<12}{'seconds':>9}{'peak RSS':>12}")
        for stage in ("download", "preprocess", "train", "evaluate"):
            seconds, peak = run_stage(project, stage)
            print(f"{stage:<12}{seconds:>9.1f}{peak:>8.0f} MiB")


if __name__ == "__main__":
    main()
