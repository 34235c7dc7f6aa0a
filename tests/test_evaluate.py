import numpy as np
import pytest

from fmnist import prediction
from fmnist.model import build_model
from fmnist.stage_runner import StageError
from stages import evaluate


def test_confusion_matrix_counts_actual_by_predicted():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 2, 0])
    matrix = evaluate.confusion_matrix(labels, predicted, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_metrics_from_the_confusion_matrix():
    matrix = np.zeros((10, 10), dtype=int)
    np.fill_diagonal(matrix, 9)
    matrix[6, 0] = 9  # every other Shirt taken for a T-shirt
    metrics = evaluate.test_metrics(0.25, matrix, single_view_accuracy=0.8)
    assert metrics["accuracy"] == round(90 / 99, 4)
    assert metrics["single_view_accuracy"] == 0.8
    assert metrics["loss"] == 0.25
    assert metrics["per_class_accuracy"]["Shirt"] == 0.5
    assert metrics["per_class_accuracy"]["Trouser"] == 1.0


def test_confusion_csv_for_dvc_plots(tmp_path):
    evaluate.write_confusion_csv(np.array([0, 9]), np.array([6, 9]), tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines() == [
        "actual,predicted",
        "T-shirt/top,Shirt",
        "Ankle boot,Ankle boot",
    ]


def test_saved_model_loads_back_in_safe_mode(tmp_path):
    model = build_model("seed", dropout=0.25)
    model.save(tmp_path / "m.keras")
    assert prediction.load_model(tmp_path / "m.keras").count_params() == 16010


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "m.keras").write_text("not a model")
    with pytest.raises(StageError, match=r"m\.keras: not a loadable Keras model"):
        prediction.load_model(tmp_path / "m.keras")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match=r"m\.keras: not found"):
        prediction.load_model(tmp_path / "m.keras")


def test_cross_entropy_matches_keras():
    import keras

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=50).astype("float32")
    labels = rng.integers(0, 10, size=50)
    expected = keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy().mean()
    assert evaluate.cross_entropy(labels, probabilities) == pytest.approx(float(expected), rel=1e-5)


def test_misclassified_grid_with_and_without_mistakes():
    images = np.zeros((4, 28, 28, 1), np.uint8)
    labels = np.array([0, 1, 2, 3])
    assert evaluate.misclassified_grid(images, labels, labels)[:4] == b"\x89PNG"  # a perfect model
    assert evaluate.misclassified_grid(images, labels, np.array([0, 1, 3, 3]))[:4] == b"\x89PNG"


def test_mirror_reverses_the_width_only():
    images = np.arange(2 * 2 * 3).reshape(2, 2, 3, 1)
    np.testing.assert_array_equal(prediction.mirror(images)[1, 0, :, 0], [8, 7, 6])
    np.testing.assert_array_equal(prediction.mirror(prediction.mirror(images)), images)


def test_shift_moves_whole_pixels_and_fills_black():
    images = np.arange(1, 10).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(prediction.shift(images, 1, 0)[0, :, :, 0], [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(prediction.shift(images, 0, -1)[0, :, :, 0], [[2, 3, 0], [5, 6, 0], [8, 9, 0]])
    np.testing.assert_array_equal(prediction.shift(images, 0, 0), images)


@pytest.mark.parametrize(
    ("mirror_average", "shift_average", "count"), [(False, False, 1), (True, False, 2), (True, True, 10)]
)
def test_views_are_the_image_first_then_its_mirror_and_moves(mirror_average, shift_average, count):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 5, 5, 1), dtype=np.uint8)
    seen = prediction.views(images, mirror_average, shift_average)
    assert len(seen) == count
    assert seen[0] is images
    assert len({view.tobytes() for view in seen}) == count  # no view twice


def test_evaluated_answer_is_the_mean_over_views_and_single_view_is_the_first():
    model = build_model("conv3_bn", dropout=0.0)
    images = np.random.default_rng(1).integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)
    averaged, single = prediction.class_probabilities(model, images, True, True)
    each = [model.predict(view, verbose=0) for view in prediction.views(images, True, True)]
    np.testing.assert_allclose(single, each[0], rtol=1e-6)
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), rtol=1e-5)
    np.testing.assert_allclose(averaged.sum(axis=1), 1, rtol=1e-5)
