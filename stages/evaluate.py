"""Stage `evaluate`: score the trained model on the test set.

Writes reports/metrics.json (test accuracy, loss, per-class accuracy; tracked by
`dvc metrics`) and the confusion matrix as a `dvc plots` CSV and a PNG.
"""

import csv
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from stages import dataset, paths
from stages.errors import StageError, run_stage
from stages.figures import confusion_matrix_plot
from stages.files import atomic_path, write_text


def load_model(path: Path):
    if not path.exists():
        raise StageError(f"{path}: not found (run the train stage first)")
    import keras  # TensorFlow takes seconds to load: only once the inputs are there

    try:
        # safe_mode refuses models that would run arbitrary code (lambda layers) when loaded.
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise StageError(f"{path}: not a loadable Keras model ({str(error).splitlines()[0]})") from None


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy, clipped as Keras does."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def test_metrics(loss: float, matrix: np.ndarray) -> dict:
    per_class = matrix.diagonal() / matrix.sum(axis=1).clip(min=1)
    return {
        "accuracy": round(float(matrix.diagonal().sum() / matrix.sum()), 4),
        "loss": round(float(loss), 4),
        "per_class_accuracy": {name: round(float(a), 4) for name, a in zip(dataset.CLASS_NAMES, per_class)},
    }


def write_confusion_csv(labels: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    """One row per test image, as DVC's confusion template expects."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["actual", "predicted"])
        writer.writerows((dataset.CLASS_NAMES[a], dataset.CLASS_NAMES[p]) for a, p in zip(labels, predicted))


def main() -> None:
    started = time.perf_counter()
    x_test, y_test = dataset.load_arrays(paths.TEST_ARRAYS)
    model = load_model(paths.MODEL)
    probabilities = model.predict(x_test, batch_size=1024, verbose=0)
    predicted = probabilities.argmax(axis=1)
    loss = cross_entropy(y_test, probabilities)
    matrix = confusion_matrix(y_test, predicted, len(dataset.CLASS_NAMES))
    metrics = test_metrics(loss, matrix)

    write_text(paths.METRICS, json.dumps(metrics, indent=2) + "\n")
    write_confusion_csv(y_test, predicted, paths.CONFUSION_CSV)
    confusion_matrix_plot(matrix, list(dataset.CLASS_NAMES), paths.CONFUSION_PNG)
    print(f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")
    print(f"evaluate: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    run_stage(main)
