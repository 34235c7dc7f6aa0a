"""Shared set-up for the benchmarks: run from the repository root after `dvc repro` (uses data/prepared)."""

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
