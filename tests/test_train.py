import csv
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from fmnist import training
from fmnist.model import build_model
from fmnist.params.train import TrainParams
from fmnist.stage_runner import StageError
from tests.conftest import REPO, synthetic_split


def tiny_config(**overrides) -> TrainParams:
    values = {
        "model": "seed",
        "epochs": 2,
        "batch_size": 32,
        "optimizer": "adam",
        "learning_rate": 0.003,
        "lr_schedule": "constant",
        "warmup_fraction": 0.0,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "augment": "none",
        "max_shift": 0,
        "random_erasing": 0.0,
        "lookahead_steps": 0,
        "whiten_init": False,
        "dirac_init": False,
        "batch_norm_images": 0,
        "dropout": 0.25,
        "seed": 42,
        "histogram_freq": 1,
        "distribute": "auto",
    }
    return TrainParams(**(values | overrides))


@pytest.fixture(scope="module")
def data():
    x, y = synthetic_split(240, seed=5)
    return (x[:200, ..., None], y[:200]), (x[200:, ..., None], y[200:])


def train_once(data, log_dir=None, **overrides):
    config = tiny_config(**overrides)
    model = training.compile_model(config, len(data[0][0]))
    history = training.fit(model, config, *data, log_dir)
    return model, history


def test_seed_model_is_the_articles_cnn():
    model = build_model("seed", dropout=0.25)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "MaxPooling2D", "ReLU", "MaxPooling2D", "Dropout", "Flatten", "Dense"]
    assert model.count_params() == 16010


def test_conv3_slim_keeps_conv3_bn_head_for_half_its_arithmetic():
    from benchmarks.train_speed import training_flops_per_image

    slim, full = build_model("conv3_slim", dropout=0.0), build_model("conv3_bn", dropout=0.0)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in slim.layers}
    assert shapes["conv_3"] == (5, 5, 128)  # unpadded on the 7x7 maps
    assert shapes["pool_3"] == (3, 3, 128)  # padded pooling keeps the odd last row and column
    assert shapes["flatten"] == tuple(full.get_layer("flatten").output.shape[1:])
    assert slim.count_params() == 381_658
    assert training_flops_per_image(slim) / training_flops_per_image(full) < 0.55


def test_same_params_give_bitwise_identical_weights(data):
    first, history = train_once(data)
    second, _ = train_once(data)
    assert training.weights_sha256(first) == training.weights_sha256(second)
    assert history["val_accuracy"][-1] > 0.5  # it learned the synthetic bands


def test_default_model_with_flips_and_label_smoothing_is_deterministic_too(data):
    options = {"model": "conv2_bn", "augment": "flip", "label_smoothing": 0.1, "optimizer": "adamw", "batch_size": 64}
    first, history = train_once(data, **options)
    second, _ = train_once(data, **options)
    assert training.weights_sha256(first) == training.weights_sha256(second)
    assert set(history) >= {"accuracy", "val_accuracy", "loss", "val_loss"}


def test_weight_decay_shrinks_the_weights_and_zero_changes_no_bit(data):
    plain, _ = train_once(data)
    decayed, _ = train_once(data, weight_decay=0.9)  # 14 steps at lr 0.003: each weight x 0.9973 per step
    config = tiny_config()  # the same run with no weight decay in the optimizer at all
    untouched = training.compile_model(config, len(data[0][0]))
    untouched.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=untouched.loss, metrics=["accuracy"])
    training.fit(untouched, config, *data, None)

    def norm(model):
        return sum(float(np.sum(np.square(keras.ops.convert_to_numpy(w)))) for w in model.trainable_weights)

    assert norm(decayed) < 0.97 * norm(plain)  # measured 0.94; the decay alone: 0.9973**28 = 0.93
    assert training.weights_sha256(plain) == training.weights_sha256(untouched)


@pytest.mark.parametrize("augment", ["none", "flip"])
def test_batches_cover_every_image_once_flipping_about_half_with_flip(data, augment):
    (x, y), _ = data
    as_is = {image.tobytes(): label for image, label in zip(x, y)}
    mirrored = {image[:, ::-1].tobytes(): label for image, label in zip(x, y)}
    seen = [(image, label) for images, labels in training.batches(tiny_config(augment=augment), x, y)
            for image, label in zip(images.numpy(), labels.numpy())]  # fmt: skip
    assert len(seen) == len(x)
    flipped = [image.tobytes() in mirrored for image, _ in seen]
    for (image, label), was_flipped in zip(seen, flipped):
        assert (mirrored if was_flipped else as_is)[image.tobytes()] == label
    assert 0.3 < np.mean(flipped) < 0.7 if augment == "flip" else not any(flipped)


def moved(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """image moved down and right by whole pixels (negative: up, left), the uncovered border black."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    out[max(down, 0) : height + min(down, 0), max(right, 0) : width + min(right, 0)] = image[
        max(-down, 0) : height - max(down, 0), max(-right, 0) : width - max(right, 0)
    ]
    return out


def test_max_shift_moves_each_image_by_whole_pixels_within_the_limit_the_same_way_each_run(data):
    (x, y), _ = data
    shifts = [(down, right) for down in range(-2, 3) for right in range(-2, 3)]
    sources = {moved(image, *shift).tobytes(): (index, shift) for index, image in enumerate(x) for shift in shifts}
    config = tiny_config(max_shift=2)
    seen = np.concatenate([images.numpy() for images, _ in training.batches(config, x, y)])
    found = [sources.get(image.tobytes()) for image in seen]
    assert None not in found  # every image is one of its source's 25 shifts by up to 2 pixels
    assert sorted(index for index, _ in found) == list(range(len(x)))  # each source once
    assert len({shift for _, shift in found}) > 15  # each image its own shift, not one per batch
    again = np.concatenate([images.numpy() for images, _ in training.batches(config, x, y)])
    assert np.array_equal(seen, again)


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_random_erasing_blacks_out_one_rectangle_of_about_that_share_of_images(probability):
    white = np.full((200, 28, 28, 1), 255, np.uint8)
    config = tiny_config(random_erasing=probability)
    seen = np.concatenate([images.numpy() for images, _ in training.batches(config, white, np.zeros(200, int))])
    erased = []
    for image in seen[..., 0]:
        rows, columns = np.nonzero(image == 0)
        if rows.size:  # the black pixels fill exactly their bounding box
            box = image[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
            assert (box == 0).all() and rows.size < image.size
            erased.append((rows.min(), rows.max(), columns.min(), columns.max()))
        else:
            assert (image == 255).all()
    assert {0.0: len(erased) == 0, 0.5: 60 < len(erased) < 140, 1.0: len(erased) > 190}[probability]
    assert probability == 0 or len(set(erased)) > len(erased) / 2  # each image its own rectangle
    again = np.concatenate([images.numpy() for images, _ in training.batches(config, white, np.zeros(200, int))])
    assert np.array_equal(seen, again)


def batch_norm_inputs(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """What each batch norm layer receives in inference mode, per channel: (positions, channels)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    taps = keras.Model(model.inputs, [layer.input for layer in norms])
    return {layer.name: np.asarray(tap).reshape(-1, tap.shape[-1]) for layer, tap in zip(norms, taps(images))}


def test_batch_norm_statistics_are_those_of_the_sample_under_the_current_weights(data):
    (x, _), _ = data
    model, _ = train_once(data, model="conv3_bn", epochs=1, batch_size=64)  # moving averages far from the truth
    segments = training.batch_norm_segments(model)
    training.set_batch_norm_statistics(segments, x[:150], batch_size=64)  # chunks of 64, 64, 22
    inputs = batch_norm_inputs(model, x[:150])  # with the statistics just set: what the next layers see
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            seen = inputs[layer.name].astype(np.float64)
            np.testing.assert_allclose(layer.moving_mean.numpy(), seen.mean(axis=0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(layer.moving_variance.numpy(), seen.var(axis=0), rtol=1e-4, atol=1e-7)


def test_each_validation_uses_the_batch_norm_statistics_of_the_weights_it_validates(data):
    (x, _), _ = data
    lagging, history = train_once(data, model="conv3_bn", epochs=2, batch_size=64)
    exact, exact_history = train_once(data, model="conv3_bn", epochs=2, batch_size=64, batch_norm_images=100)
    # The same steps: only the statistics differ (the callback runs after each epoch's training part).
    assert history["accuracy"][0] == exact_history["accuracy"][0]
    norms = [layer for layer in exact.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in norms]
    training.set_batch_norm_statistics(training.batch_norm_segments(exact), x[:100], batch_size=64)
    for layer, (mean, variance) in zip(norms, saved):
        assert np.array_equal(layer.moving_mean.numpy(), mean) and np.array_equal(
            layer.moving_variance.numpy(), variance
        )
    assert training.weights_sha256(lagging) != training.weights_sha256(exact)
    again, _ = train_once(data, model="conv3_bn", epochs=2, batch_size=64, batch_norm_images=100)
    assert training.weights_sha256(again) == training.weights_sha256(exact)


def test_training_and_prediction_data_run_without_tf_data_autotuning(data):
    # Its thread made deleting each epoch's iterator stall the process for 10-20 s (batches.without_autotune).
    (x, y), _ = data
    train_batches = training.batches(tiny_config(augment="flip", max_shift=2), x, y)
    ordered = training.in_batches(x, 64)
    assert train_batches.options().autotune.enabled is False
    assert ordered.options().autotune.enabled is False
    assert np.array_equal(np.concatenate([batch.numpy() for batch in ordered]), x)  # all of it, in order


def test_different_seed_gives_different_weights(data):
    first, _ = train_once(data)
    other, _ = train_once(data, seed=43)
    assert training.weights_sha256(first) != training.weights_sha256(other)


def test_cosine_schedule_decays_the_learning_rate(data):
    _, constant = train_once(data, epochs=3)
    _, cosine = train_once(data, epochs=3, lr_schedule="cosine")
    assert constant["learning_rate"] == pytest.approx([0.003] * 3)
    assert cosine["learning_rate"][0] < 0.003 and cosine["learning_rate"][-1] < 0.0001
    assert cosine["learning_rate"] == sorted(cosine["learning_rate"], reverse=True)


def test_every_epoch_goes_to_dvclive_and_its_times_only_to_the_timing_run(data, tmp_path):
    config = tiny_config()
    model = training.compile_model(config, len(data[0][0]))
    live = training.live_logger(tmp_path / "training", model)
    history = training.fit(model, config, *data, None, live=live, timing_dir=tmp_path / "timing")
    # Throughput counts the training part of the epoch only: faster than images / (training + validation).
    for speed, seconds in zip(history["images_per_second"], history["seconds"], strict=True):
        assert speed > len(data[0][0]) / seconds
    plots = tmp_path / "training/plots/metrics"
    logged_per_epoch = {"train": ["accuracy", "loss", "learning_rate"], "eval": ["accuracy", "loss"]}
    assert {f"{split}/{name}.tsv" for split, names in logged_per_epoch.items() for name in names} == {
        path.relative_to(plots).as_posix() for path in plots.rglob("*.tsv")
    }  # no times: a reproduction gives the same files
    for split, names in logged_per_epoch.items():
        for name in names:
            rows = list(csv.DictReader((plots / split / f"{name}.tsv").open(), delimiter="\t"))
            assert [row["step"] for row in rows] == ["0", "1"], (split, name)
    logged = json.loads((tmp_path / "training/metrics.json").read_text())
    assert logged["eval"]["accuracy"] == history["val_accuracy"][-1]
    assert logged["parameters"] == 16_010 and logged["step"] == 1
    assert set(logged["train"]) == {"accuracy", "loss", "learning_rate"}
    assert not (tmp_path / "dvc.yaml").exists() and not list(tmp_path.glob("training/*.yaml"))
    timing = EventAccumulator(str(tmp_path / "timing"), size_guidance={"tensors": 0}).Reload()
    for name in ("seconds", "images_per_second"):
        logged = [float(tensor_util.make_ndarray(event.tensor_proto)) for event in timing.Tensors(f"epoch_{name}")]
        assert logged == pytest.approx(history[name])


def test_summary_text_lists_layers():
    text = training.model_summary(build_model("seed", dropout=0.25))
    assert "conv (Conv2D)" in text and "16,010" in text


def test_a_loss_that_becomes_nan_fails_the_run_at_that_step(data):
    with pytest.raises(StageError) as error:
        train_once(data, model="conv2_bn", learning_rate=1e12)
    assert str(error.value) == (
        "training diverged at epoch 1, step 2 of 7: the training loss is nan;"
        " try a lower train.learning_rate (now 1e+12)"
    )


def test_non_finite_weights_are_caught_before_saving(data):
    model = training.compile_model(tiny_config(), len(data[0][0]))
    training.check_finite(model, tiny_config())
    kernel = model.get_layer("conv").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 3, np.inf, keras.ops.convert_to_numpy(kernel)))
    with pytest.raises(StageError, match=r"^training diverged at the last step: weight seed/conv/kernel is not finite"):
        training.check_finite(model, tiny_config())


def test_an_exploding_loss_warns_in_the_log_and_in_tensorboard(data, tmp_path, capsys):
    _, history = train_once(data, log_dir=tmp_path, learning_rate=2.0)  # explodes, stays finite, comes back down
    assert history["loss"][0] > 100 * 2.3 > history["loss"][-1]
    warning = "warning: the training loss exploded: "
    assert capsys.readouterr().err.count(warning) == 1
    run = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0}).Reload()
    [event] = run.Tensors("warnings")
    assert event.step == 1 and b"the training loss exploded" in event.tensor_proto.string_val[0]


def test_a_loss_that_exploded_and_stayed_high_fails_the_run_at_the_end(data):
    with pytest.raises(StageError, match=r"^training diverged at the end of epoch 2: the training loss is still 5"):
        train_once(data, learning_rate=10.0)  # epoch losses about 20,000 then 576, against 2.26 at the first step


def test_a_steady_run_gives_no_warning(data, capsys):
    train_once(data)
    assert "warning" not in capsys.readouterr().err


def test_the_digest_is_of_every_weight_in_order_and_each_one_counts():
    """weights_sha256 is the SHA-256 of every weight array's bytes in get_weights() order (batch-norm moving
    statistics and the classifier's bias included): a change to any single value of any array changes it."""
    model = build_model("conv3_bn", 0.0)
    weights = model.get_weights()
    whole = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in weights)).hexdigest()
    assert training.weights_sha256(model) == whole
    for index, weight in enumerate(weights):
        changed = weight.copy()
        changed.flat[-1] = np.nextafter(changed.flat[-1], np.float32(np.inf))  # one bit of its last value
        model.set_weights([*weights[:index], changed, *weights[index + 1 :]])
        assert training.weights_sha256(model) != whole, model.weights[index].path
    model.set_weights(weights)
    assert training.weights_sha256(model) == whole


def test_the_same_weights_saved_twice_are_the_same_file(tmp_path):
    """model.keras is a DVC output: a reproduction with the same weights must not add a new object to the cache."""
    model = build_model("seed", 0.25)
    training.save_model(model, tmp_path / "a.keras")
    time.sleep(1.1)  # Keras records the save time to the second, the zip format to two seconds
    training.save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = keras.models.load_model(tmp_path / "b.keras", safe_mode=True)
    assert training.weights_sha256(loaded) == training.weights_sha256(model)
    metadata = json.loads(zipfile.ZipFile(tmp_path / "b.keras").read("metadata.json"))
    assert metadata["keras_version"] == keras.__version__ and "date_saved" not in metadata  # still says who wrote it
    with zipfile.ZipFile(tmp_path / "b.keras") as saved:  # one date for all: the model's MD5 in dvc.lock depends on it
        assert {entry.date_time for entry in saved.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    model.save(tmp_path / "c.keras")  # what Keras alone writes: the save time in metadata.json
    assert b"date_saved" in zipfile.ZipFile(tmp_path / "c.keras").read("metadata.json")


SAVE_IN_A_NEW_PROCESS = """
import sys
import keras
from fmnist import training
from fmnist.model import build_model
keras.utils.set_random_seed(7)
training.save_model(build_model("seed", 0.25), sys.argv[1])
"""


def test_the_same_weights_saved_by_two_processes_are_the_same_file(tmp_path):
    """Keras writes memory addresses into config.json (`shared_object_id`): they differ from process to process."""
    for name in ("a.keras", "b.keras"):
        command = [sys.executable, "-c", SAVE_IN_A_NEW_PROCESS, str(tmp_path / name)]
        subprocess.run(command, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, check=True, capture_output=True)
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    config = json.loads(zipfile.ZipFile(tmp_path / "a.keras").read("config.json"))
    assert config["config"]["dtype"]["shared_object_id"] == 1  # numbered, and still shared by the layers
    assert keras.models.load_model(tmp_path / "a.keras", safe_mode=True).count_params() == 16010


def test_shared_objects_are_numbered_in_order_of_first_appearance_and_keep_their_sharing():
    shared, other = {"shared_object_id": 140_001}, {"shared_object_id": 99}
    config = {"dtype": shared, "layers": [other, dict(shared)]}
    assert training._numbered_in_order(config, {}) == {
        "dtype": {"shared_object_id": 1},
        "layers": [{"shared_object_id": 2}, {"shared_object_id": 1}],
    }
