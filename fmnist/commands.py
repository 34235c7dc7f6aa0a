"""Running git and dvc from the tools: their output back, a failure as one error line."""

import subprocess
from pathlib import Path

from fmnist.stage_runner import StageError


def run(command: list[str], cwd: Path | None = None) -> str:
    """Run git or dvc, return stdout; a failure is one clear error line."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise StageError(f"{' '.join(command)} failed: {last_line}")
    return result.stdout


def dvc(*args: str, cwd: Path | None = None) -> str:
    return run(["dvc", *args], cwd)
