"""Training recipes side by side: each recipe's validation and test accuracy over seeds, and its train time.

    python -m benchmarks.recipes "train.epochs=12" "train.epochs=12 train.label_smoothing=0.2" --seeds 42 1 2
    python -m benchmarks.recipes "train.epochs=12" --seeds 42 --validation-only   # a screen: the test set untouched

Each recipe is `dvc exp run -S` settings over params.yaml (validated as the stages validate them). Each run is a
fresh process training in the runtime mode params.yaml sets, as the train stage does it (the same weights: the
digest is printed), and scoring the test set as the evaluate stage does (10 views, and single view). Runs go in
rounds, one seed of every recipe per round (A B A B ...), so a slow spell of a noisy machine does not land on one
recipe. Prints one JSON line per run, then each recipe's mean ± sd and the range of its train times, in seconds.
Run from the repository root after `dvc repro preprocess` (uses data/prepared; writes nothing).
"""

import argparse
import json
import shlex
import statistics
import sys
import time

import yaml

from benchmarks.common import child_json
from fmnist import paths
from fmnist.params import parse, read_yaml
from fmnist.params.all_sections import AllParams


def with_settings(raw: dict, settings: str) -> dict:
    """params.yaml's document with `KEY=VALUE ...` set, the values read as YAML, as `dvc exp run -S` sets them."""
    for item in shlex.split(settings):
        key, _, value = item.partition("=")
        *sections, leaf = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(value)
    return raw


def recipe_params(settings: str) -> AllParams:
    return parse(with_settings(read_yaml(paths.PARAMS.read_text()), settings), AllParams)


def child(settings: str, seed: int, validation_only: bool) -> None:
    config = recipe_params(f"{settings} train.seed={seed}")
    from fmnist import dataset, exact_mode

    exact_mode.pin(config.runtime)
    exact_mode.configure_tensorflow(config.runtime)
    import numpy as np

    from fmnist import prediction, training

    train, val = dataset.load_arrays(paths.TRAIN_ARRAYS), dataset.load_arrays(paths.VAL_ARRAYS)
    started = time.perf_counter()
    model = training.compile_model(config.train, len(train[0]), train[0])
    history = training.fit(model, config.train, train, val, log_dir=None)
    result = {
        "settings": settings,
        "seed": seed,
        "val_accuracy": round(history["val_accuracy"][-1], 4),
        "train_seconds": round(time.perf_counter() - started, 1),
        "weights_sha256": training.weights_sha256(model),
    }
    if not validation_only:
        images, labels = dataset.load_arrays(paths.TEST_ARRAYS)
        averaged, single = prediction.class_probabilities(
            model, images, config.evaluate.mirror_average, config.evaluate.shift_average
        )
        result["test_accuracy"] = round(float(np.mean(averaged.argmax(axis=1) == labels)), 4)
        result["single_view_accuracy"] = round(float(np.mean(single.argmax(axis=1) == labels)), 4)
    print(json.dumps(result), flush=True)


def summary(runs: list[dict]) -> dict[str, object]:
    def spread(name: str) -> str:
        values = [run[name] for run in runs]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    times = [run["train_seconds"] for run in runs]
    figures = {"seeds": " ".join(str(run["seed"]) for run in runs), "val_accuracy": spread("val_accuracy")}
    for name in ("test_accuracy", "single_view_accuracy"):
        if name in runs[0]:
            figures[name] = spread(name)
    return figures | {"train_seconds": f"{min(times):.0f}-{max(times):.0f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", help='-S settings of each recipe, e.g. "train.epochs=12"')
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--validation-only", action="store_true", help="screen: leave the test set untouched")
    parser.add_argument("--child", nargs=2, metavar=("SETTINGS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), args.validation_only)
    for settings in args.recipes:  # a typo fails here, in one line, before any run
        recipe_params(settings)
    runs: dict[str, list[dict]] = {settings: [] for settings in args.recipes}
    for seed in args.seeds:
        for settings in args.recipes:
            command = [sys.executable, "-m", "benchmarks.recipes", "--child", settings, str(seed)]
            run = child_json(command + ["--validation-only"] * args.validation_only)
            runs[settings].append(run)
            print(json.dumps(run), flush=True)
    for settings, results in runs.items():
        print(json.dumps({"recipe": settings or "(the default params)", **summary(results)}), flush=True)


if __name__ == "__main__":
    from fmnist.stage_runner import StageError

    try:
        main()
    except StageError as error:
        sys.exit(f"error: {error}")
