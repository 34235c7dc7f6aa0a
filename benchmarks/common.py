"""Shared set-up for the benchmarks: run from the repository root after `dvc repro` (uses data/prepared)."""

import json
import os
import subprocess
import sys
import time

from fmnist import dataset, params, paths
from fmnist.params.all_sections import AllParams
from fmnist.params.train import TrainParams


def prepared(limit: int | None = None):
    x, y = dataset.load_arrays(paths.TRAIN_ARRAYS)
    val = dataset.load_arrays(paths.VAL_ARRAYS)
    return (x[:limit], y[:limit]), val


def train_params(**overrides) -> TrainParams:
    return params.load(AllParams).train.model_copy(update=overrides)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def child_json(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run a benchmark's child process (with `env` added to this one's); its last stdout line, parsed as JSON.

    Each measured run gets its own process: TensorFlow's pins are read once, at import.
    """
    result = subprocess.run(command, env=os.environ | (env or {}), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed_steps(model, batches, steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds of `steps` training steps on repeating `batches`, after 10 to trace and warm up."""
    model.fit(batches, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - wall, time.process_time() - cpu
