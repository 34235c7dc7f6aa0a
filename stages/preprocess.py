"""Stage `preprocess`: decode the IDX files, hold out a validation split, write compact arrays.

Arrays stay uint8 pixels with integer labels (0..9): scaling to [0, 1] happens inside the model
(its first layer), so the saved model accepts raw images and serving needs no preprocessing.
"""

import time

import numpy as np

from fmnist import dataset, params, paths
from fmnist.atomic_outputs import staged_outputs
from fmnist.figures import image_grid, save_png
from fmnist.params.preprocess import PreprocessParams
from fmnist.stage_runner import run_stage


class Params(params.Section):  # what this stage reads: dvc.yaml lists the same
    preprocess: PreprocessParams


def split_validation(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Seeded random split: same seed and data, same split, on any machine."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = round(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def main() -> None:
    loaded = params.load(Params)
    config = loaded.preprocess
    started = time.perf_counter()
    raw = {role: paths.RAW_DIR / name for role, name in paths.RAW_FILES.items()}
    x, y = dataset.read_split(raw["train_images"], raw["train_labels"])
    x_test, y_test = dataset.read_split(raw["test_images"], raw["test_labels"])
    (x_train, y_train), (x_val, y_val) = split_validation(x, y, config.val_fraction, config.seed)

    with staged_outputs() as out:
        dataset.save_arrays(out.file(paths.TRAIN_ARRAYS), x_train, y_train)
        dataset.save_arrays(out.file(paths.VAL_ARRAYS), x_val, y_val)
        dataset.save_arrays(out.file(paths.TEST_ARRAYS), x_test, y_test)
        save_png(image_grid(x_train[:32], dataset.class_names(y_train[:32])), out.file(paths.SAMPLES_PNG))
        params.check_unchanged("preprocess")
    print(f"train {len(x_train)}, validation {len(x_val)}, test {len(x_test)} images")
    print(f"preprocess: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    run_stage(main)
