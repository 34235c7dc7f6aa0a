"""Stage `evaluate`: score the trained model on the test set.

Writes reports/metrics.json (test accuracy, loss, per-class accuracy; tracked by `dvc metrics`)
and the confusion matrix as a `dvc plots` CSV and a PNG. With evaluate.mirror_average, each
prediction is the average over the image and its mirror image; with evaluate.shift_average, also over
each of those moved one pixel up, down, left and right. TensorBoard gets logs/evaluate/:
the confusion matrix, misclassified test images, a precision-recall curve per class, the test
set's embeddings for the Projector, and the run's hparams with validation and test accuracy for
the HParams tab.
"""

import csv
import json
import time
from pathlib import Path

import numpy as np

from fmnist import dataset, exact_mode, package_lock, params, paths
from fmnist.atomic_outputs import staged_outputs
from fmnist.figures import confusion_matrix_plot, image_grid, png_bytes
from fmnist.params.evaluate import EvaluateParams
from fmnist.params.preprocess import PreprocessParams
from fmnist.params.runtime import RuntimeParams
from fmnist.params.train import TrainParams
from fmnist.stage_runner import StageError, run_stage


class Params(params.Section):  # what this stage reads: dvc.yaml lists the same
    evaluate: EvaluateParams
    runtime: RuntimeParams
    train: TrainParams  # with preprocess.val_fraction: logged as the run's hparams in TensorBoard
    preprocess: PreprocessParams


def read_val_accuracy(path: Path) -> float:
    """The model's validation accuracy, written beside it by train: logged with the test figures in HParams."""
    try:
        return float(json.loads(path.read_text())["eval"]["accuracy"])  # DVCLive's name for val_accuracy
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StageError(f"{path}: no validation accuracy to read ({error}); run the train stage again") from None


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy, clipped as Keras does."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def test_metrics(loss: float, matrix: np.ndarray, single_view_accuracy: float) -> dict:
    per_class = matrix.diagonal() / matrix.sum(axis=1).clip(min=1)
    return {
        "accuracy": round(float(matrix.diagonal().sum() / matrix.sum()), 4),
        "loss": round(float(loss), 4),
        "single_view_accuracy": round(single_view_accuracy, 4),  # the model's own predict(), no averaging
        "per_class_accuracy": {name: round(float(a), 4) for name, a in zip(dataset.CLASS_NAMES, per_class)},
    }


def write_confusion_csv(labels: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    """One row per test image, as DVC's confusion template expects."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["actual", "predicted"])
        writer.writerows((dataset.CLASS_NAMES[a], dataset.CLASS_NAMES[p]) for a, p in zip(labels, predicted))


def misclassified_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, count: int = 32) -> bytes:
    wrong = np.flatnonzero(labels != predicted)[:count]
    titles = [f"{dataset.CLASS_NAMES[labels[i]]}\n→ {dataset.CLASS_NAMES[predicted[i]]}" for i in wrong]
    return png_bytes(image_grid(images[wrong], titles))


def run_hparams(config: Params) -> dict[str, object]:
    """What TensorBoard's HParams tab ranks runs by: every train param, the validation split, test-time averaging."""
    return {
        **config.train.model_dump(),
        "val_fraction": config.preprocess.val_fraction,
        "mirror_average": config.evaluate.mirror_average,
        "shift_average": config.evaluate.shift_average,
    }


def main() -> None:
    config = params.load(Params)
    started = time.perf_counter()
    x_test, y_test = dataset.load_arrays(paths.TEST_ARRAYS)
    if not paths.MODEL.exists():
        raise StageError(f"{paths.MODEL}: not found (run the train stage first)")
    val_accuracy = read_val_accuracy(paths.TRAINING_METRICS)
    package_lock.warn_if_unlocked("evaluate")
    exact_mode.start_tensorflow(config.runtime)  # takes seconds: only once the inputs are there
    from fmnist import prediction, tensorboard_logs

    model = prediction.load_model(paths.MODEL)
    averaging = config.evaluate
    probabilities, single_view = prediction.class_probabilities(
        model, x_test, averaging.mirror_average, averaging.shift_average
    )
    single_view_accuracy = float(np.mean(single_view.argmax(axis=1) == y_test))
    predicted = probabilities.argmax(axis=1)
    loss = cross_entropy(y_test, probabilities)
    matrix = confusion_matrix(y_test, predicted, len(dataset.CLASS_NAMES))
    metrics = test_metrics(loss, matrix, single_view_accuracy)

    confusion_png = png_bytes(confusion_matrix_plot(matrix, list(dataset.CLASS_NAMES)))

    with staged_outputs() as out:  # published together, or (on any failure) not at all
        out.file(paths.METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
        write_confusion_csv(y_test, predicted, out.file(paths.CONFUSION_CSV))
        out.file(paths.CONFUSION_PNG).write_bytes(confusion_png)
        log_dir = out.folder(paths.EVAL_LOGS)
        pngs = {"confusion_matrix": confusion_png, "misclassified": misclassified_grid(x_test, y_test, predicted)}
        tensorboard_logs.write_images(log_dir, pngs)
        tensorboard_logs.write_pr_curves(log_dir, y_test, probabilities)
        tensorboard_logs.write_projector(log_dir, prediction.embeddings(model, x_test), x_test, y_test, predicted)
        final = {"test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"], "val_accuracy": val_accuracy}
        tensorboard_logs.write_hparams(log_dir, run_hparams(config), final)
        tensorboard_logs.make_reproducible(log_dir)
        params.check_unchanged("evaluate")
    print(f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")
    print(f"evaluate: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    run_stage(main, runs_tensorflow=True)
