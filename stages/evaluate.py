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
import zipfile
from pathlib import Path

import numpy as np

from stages import dataset, params, paths, runtime
from stages.errors import StageError, run_stage
from stages.figures import confusion_matrix_plot, image_grid, png_bytes
from stages.files import staged_outputs


def load_model(path: Path, runtime_params: params.RuntimeParams):
    if not path.exists():
        raise StageError(f"{path}: not found (run the train stage first)")
    runtime.pin(runtime_params)  # predictions depend on the instruction set and threads too
    import keras  # TensorFlow takes seconds to load: only once the inputs are there

    runtime.configure_tensorflow(runtime_params)

    try:
        # safe_mode refuses models that would run arbitrary code (lambda layers) when loaded.
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise StageError(f"{path}: not a loadable Keras model ({str(error).splitlines()[0]})") from None


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


def predict(model, images: np.ndarray) -> np.ndarray:
    from stages.training import StopOnSignal, in_batches  # (TensorFlow is loaded by now, with the model)

    return model.predict(in_batches(images, 1024), verbose=0, callbacks=[StopOnSignal()])


def embeddings(model, images: np.ndarray) -> np.ndarray:
    """What the classifier layer sees for each image (the Projector's points): the model up to its last layer."""
    import keras  # (loaded by now, with the model)

    return predict(keras.Model(model.inputs, model.get_layer("classifier").input), images)


def mirror(images: np.ndarray) -> np.ndarray:
    return images[:, :, ::-1]  # (N, height, width, channels): reverse the width


ONE_PIXEL_SHIFTS = [(-1, 0), (1, 0), (0, -1), (0, 1)]  # up, down, left, right (rows, columns)


def shift(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Each image moved by whole pixels, the border filled with black: as train.max_shift moves training images."""
    height, width = images.shape[1:3]
    moved = np.zeros_like(images)
    moved[:, max(rows, 0) : height + min(rows, 0), max(columns, 0) : width + min(columns, 0)] = images[
        :, max(-rows, 0) : height + min(-rows, 0), max(-columns, 0) : width + min(-columns, 0)
    ]
    return moved


def views(images: np.ndarray, config: params.EvaluateParams) -> list[np.ndarray]:
    """Every view the evaluated answer averages over; the first is the images as they are."""
    bases = [images, mirror(images)] if config.mirror_average else [images]
    moves = ONE_PIXEL_SHIFTS if config.shift_average else []
    return [*bases, *(shift(base, rows, columns) for base in bases for rows, columns in moves)]


def class_probabilities(model, images: np.ndarray, config: params.EvaluateParams) -> tuple[np.ndarray, np.ndarray]:
    """What the model answers as evaluated (the mean over `views`: with mirror_average and shift_average, the image,
    its mirror, and each moved one pixel up, down, left and right), and its own single-view answer."""
    answers = [predict(model, view) for view in views(images, config)]
    return sum(answers) / len(answers), answers[0]


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


def run_hparams(config: params.Params) -> dict[str, object]:
    """What TensorBoard's HParams tab ranks runs by: every train param, the validation split, test-time averaging."""
    return {
        **config.train.model_dump(),
        "val_fraction": config.preprocess.val_fraction,
        "mirror_average": config.evaluate.mirror_average,
        "shift_average": config.evaluate.shift_average,
    }


def main() -> None:
    config = params.load()
    started = time.perf_counter()
    x_test, y_test = dataset.load_arrays(paths.TEST_ARRAYS)
    model = load_model(paths.MODEL, config.runtime)
    val_accuracy = read_val_accuracy(paths.TRAINING_METRICS)
    probabilities, single_view = class_probabilities(model, x_test, config.evaluate)
    single_view_accuracy = float(np.mean(single_view.argmax(axis=1) == y_test))
    predicted = probabilities.argmax(axis=1)
    loss = cross_entropy(y_test, probabilities)
    matrix = confusion_matrix(y_test, predicted, len(dataset.CLASS_NAMES))
    metrics = test_metrics(loss, matrix, single_view_accuracy)

    confusion_png = png_bytes(confusion_matrix_plot(matrix, list(dataset.CLASS_NAMES)))

    from stages import tblog  # TensorFlow is loaded by now, with the model

    with staged_outputs() as out:  # published together, or (on any failure) not at all
        out.file(paths.METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
        write_confusion_csv(y_test, predicted, out.file(paths.CONFUSION_CSV))
        out.file(paths.CONFUSION_PNG).write_bytes(confusion_png)
        log_dir = out.folder(paths.EVAL_LOGS)
        pngs = {"confusion_matrix": confusion_png, "misclassified": misclassified_grid(x_test, y_test, predicted)}
        tblog.write_images(log_dir, pngs)
        tblog.write_pr_curves(log_dir, y_test, probabilities)
        tblog.write_projector(log_dir, embeddings(model, x_test), x_test, y_test, predicted)
        final = {"test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"], "val_accuracy": val_accuracy}
        tblog.write_hparams(log_dir, run_hparams(config), final)
        params.check_unchanged(config, "evaluate")
    print(f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")
    print(f"evaluate: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    run_stage(main, runs_tensorflow=True)
