"""`python -m tools.predict`: image files of any size and kind in, Fashion-MNIST classes out."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fmnist import dataset
from tests.conftest import project_env, synthetic_split
from tools.predict import to_fashion_mnist


def test_a_fashion_mnist_image_passes_unchanged():
    images, _ = synthetic_split(3, seed=7)
    for image in images:
        assert np.array_equal(to_fashion_mnist(Image.fromarray(image))[..., 0], image)


def test_a_product_photo_is_negated_trimmed_fitted_and_centred():
    photo = np.full((300, 480, 3), 235, dtype=np.uint8)  # light grey studio background, RGB
    photo[40:200, 300:380] = (20, 40, 90)  # a dark garment, 160 tall and 80 wide, off-centre
    converted = to_fashion_mnist(Image.fromarray(photo))[..., 0]
    assert converted.shape == (28, 28)
    rows, columns = np.nonzero(converted > 128)
    assert (rows.min(), rows.max()) == (0, 27)  # the longest edge fills the 28 pixels
    assert (columns.min(), columns.max()) == (7, 20)  # 14 wide, centred
    assert converted[:, :6].max() == 0 and converted[:, 22:].max() == 0  # the background is black
    assert converted[rows, columns].min() == 255  # the object is as bright as Fashion-MNIST's


def test_transparency_counts_as_white_background():
    image = np.zeros((64, 64, 4), dtype=np.uint8)  # fully transparent...
    image[16:48, 24:40] = (0, 0, 0, 255)  # ...around an opaque black object
    converted = to_fashion_mnist(Image.fromarray(image, mode="RGBA"))[..., 0]
    assert converted[14, 14] == 255 and converted[0, 0] == 0


@pytest.fixture(scope="module")
def trained(tiny_run):
    """A model trained and evaluated on tiny data; its test images and evaluate's predictions for them."""
    images, _ = dataset.load_arrays(tiny_run / "data/prepared/test.npz")
    with (tiny_run / "reports/confusion.csv").open() as rows:
        evaluated = [row["predicted"] for row in csv.DictReader(rows)]  # one row per test image, in order
    return tiny_run, images[..., 0], evaluated


def other_lines(stderr: str) -> list[str]:
    """stderr without exact mode's own warning, which a CPU other than x86-64 with AVX2 rightly gets (ARM, say)."""
    return [line for line in stderr.splitlines() if not line.startswith("warning: runtime.mode = 'exact' gives")]


def predict(project, *paths):
    command = [sys.executable, "-m", "tools.predict", "--json", *map(str, paths)]
    return subprocess.run(command, cwd=project, env=project_env(), capture_output=True, text=True, timeout=300)


def test_test_images_written_as_png_get_evaluates_classes(trained, tmp_path):
    project, images, evaluated = trained
    paths = [tmp_path / f"test-{index}.png" for index in range(12)]
    for path, image in zip(paths, images):
        Image.fromarray(image).save(path)
    result = predict(project, *paths)
    assert result.returncode == 0, result.stderr
    assert other_lines(result.stderr) == []  # TensorFlow loaded and ran: none of its start-up lines (FMNIST_VERBOSE=1)
    answers = json.loads(result.stdout)
    assert [answer["top"][0]["class"] for answer in answers] == evaluated[:12]
    for answer in answers:
        assert len(answer["top"]) == 3
        assert [entry["probability"] for entry in answer["top"]] == sorted(
            (entry["probability"] for entry in answer["top"]), reverse=True
        )


def test_larger_light_background_and_colour_versions_get_the_same_classes(trained, tmp_path):
    project, images, evaluated = trained
    paths = []
    for index, image in enumerate(images[:6]):
        paths.append(tmp_path / f"large-{index}.png")  # 4x larger
        Image.fromarray(np.kron(image, np.ones((4, 4), dtype=np.uint8))).save(paths[-1])
        paths.append(tmp_path / f"light-{index}.jpg")  # dark on light, as a product photo, JPEG
        Image.fromarray(255 - image).save(paths[-1], quality=95)
        paths.append(tmp_path / f"rgb-{index}.png")  # tinted colour
        Image.fromarray(np.stack([image * 0.8, image, image * 0.9], axis=-1).astype(np.uint8)).save(paths[-1])
    result = predict(project, *paths)
    assert result.returncode == 0, result.stderr
    classes = [answer["top"][0]["class"] for answer in json.loads(result.stdout)]
    assert classes == [label for label in evaluated[:6] for _ in range(3)]


def test_bad_files_get_one_line_each_and_the_others_still_run(trained, tmp_path):
    project, images, evaluated = trained
    Image.fromarray(images[0]).save(tmp_path / "good.png")
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:60])
    paths = [tmp_path / "notes.png", tmp_path / "good.png", tmp_path / "missing.jpg", tmp_path / "cut.png"]
    result = predict(project, *paths)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {paths[0]}: not an image file Pillow can read (PNG, JPEG, ...)",
        f"error: {paths[2]}: not found",
        f"error: {paths[3]}: cannot decode the image (image file is truncated)",
    ]
    assert other_lines(result.stderr) == errors  # and nothing else: no TensorFlow start-up lines
    answers = json.loads(result.stdout)
    assert [sorted(answer) for answer in answers] == [["error", "image"], ["image", "top"]] + [["error", "image"]] * 2
    assert answers[1]["top"][0]["class"] == evaluated[0]


def test_a_missing_file_alone_is_exactly_one_line(trained, tmp_path):
    project, _, _ = trained
    result = predict(project, tmp_path / "missing.png")
    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path / 'missing.png'}: not found\n"


def test_fmnist_verbose_brings_tensorflows_start_up_lines_back(trained, tmp_path):
    project, images, _ = trained
    Image.fromarray(images[0]).save(tmp_path / "good.png")
    command = [sys.executable, "-m", "tools.predict", str(tmp_path / "good.png")]
    env = project_env() | {"FMNIST_VERBOSE": "1"}
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "absl::InitializeLog" in result.stderr  # Abseil's own first line, before TensorFlow's
