"""The fast-training levers (params train.warmup_fraction, optimizer nesterov, augment alternate, lookahead_steps,
whiten_init, dirac_init): each does what params.yaml says, and off changes nothing."""

import itertools

import keras
import numpy as np
import pytest

from fmnist import training
from tests.conftest import synthetic_split
from tests.test_train import tiny_config, train_once


@pytest.fixture(scope="module")
def data():
    x, y = synthetic_split(240, seed=5)
    return (x[:200, ..., None], y[:200]), (x[200:, ..., None], y[200:])


def rates(config, steps_per_epoch: int) -> list[float]:
    schedule = training.learning_rate(config, steps_per_epoch)
    return [float(schedule(step)) for step in range(config.epochs * steps_per_epoch + 1)]


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_warmup_rises_linearly_to_the_learning_rate_then_follows_the_schedule(schedule):
    config = tiny_config(epochs=4, warmup_fraction=0.25, lr_schedule=schedule, learning_rate=0.1)
    values = rates(config, steps_per_epoch=10)
    assert values[:11] == pytest.approx([0.01 * step for step in range(11)])  # 0 to the peak over 10 of 40 steps
    if schedule == "cosine":
        assert values[25] == pytest.approx(0.05)  # halfway through the 30 steps after the warm-up
        assert values[-1] == pytest.approx(0.0, abs=1e-9)
    else:
        assert values[10:] == pytest.approx([0.1] * 31)


def test_a_warmup_shorter_than_a_step_is_none():
    config = tiny_config(epochs=1, warmup_fraction=0.04, lr_schedule="constant", learning_rate=0.1)
    assert training.learning_rate(config, steps_per_epoch=10) == 0.1  # 0.4 steps round to none


def test_nesterov_is_sgd_with_nesterov_momentum_and_the_weight_decay():
    optimizer = training.optimizer(tiny_config(optimizer="nesterov", weight_decay=5e-4, learning_rate=0.1), 200)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert (optimizer.momentum, optimizer.nesterov, optimizer.weight_decay) == (0.9, True, 5e-4)
    assert float(optimizer.learning_rate) == pytest.approx(0.1)


def epochs_seen(config, x, y) -> list[list[tuple[bytes, int, bool]]]:
    """Each epoch's (image as stored, label, mirrored?) in the order the batches give them."""
    as_is = {image.tobytes(): image.tobytes() for image in x}
    mirrored = {image[:, ::-1].tobytes(): image.tobytes() for image in x}
    labels = {image.tobytes(): label for image, label in zip(x, y)}
    seen = [(image.tobytes(), label) for images, batch_labels in training.batches(config, x, y)
            for image, label in zip(images.numpy(), batch_labels.numpy())]  # fmt: skip
    per_epoch, epochs = len(x), []
    for start in range(0, len(seen), per_epoch):
        epoch = []
        for image, label in seen[start : start + per_epoch]:
            is_mirrored = image not in as_is
            original = (mirrored if is_mirrored else as_is)[image]
            assert labels[original] == label
            epoch.append((original, label, is_mirrored))
        epochs.append(epoch)
    return epochs


def test_alternating_flips_mirror_each_image_in_every_other_epoch_in_a_new_order(data):
    (x, y), _ = data
    config = tiny_config(augment="alternate", epochs=4)
    epochs = epochs_seen(config, x, y)
    assert len(epochs) == 4
    for epoch in epochs:  # every image once an epoch
        assert sorted(image for image, _, _ in epoch) == sorted(image.tobytes() for image in x)
    mirrored = [{image: flag for image, _, flag in epoch} for epoch in epochs]
    assert 0.3 < np.mean(list(mirrored[0].values())) < 0.7
    for before, after in itertools.pairwise(mirrored):
        assert all(after[image] != flag for image, flag in before.items())
    orders = [[image for image, _, _ in epoch] for epoch in epochs]
    assert len({tuple(order) for order in orders}) == 4
    assert epochs_seen(config, x, y) == epochs  # seeded: the same every run


def test_alternating_flips_train_every_epoch_deterministically(data):
    first, history = train_once(data, augment="alternate", epochs=3)
    second, _ = train_once(data, augment="alternate", epochs=3)
    assert len(history["val_accuracy"]) == 3 and history["val_accuracy"][-1] > 0.5
    assert training.weights_sha256(first) == training.weights_sha256(second)


def test_lookahead_ends_each_epoch_halfway_between_its_start_and_the_trained_weights(data):
    config = tiny_config(epochs=1)
    start = [keras.ops.convert_to_numpy(w) for w in training.compile_model(config, 200).trainable_weights]
    plain, _ = train_once(data, epochs=1)
    slow, _ = train_once(data, epochs=1, lookahead_steps=1000)  # longer than the epoch: its end is the one sync
    for begun, trained, looked_ahead in zip(start, plain.trainable_weights, slow.trainable_weights):
        expected = begun + 0.5 * (keras.ops.convert_to_numpy(trained) - begun)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(looked_ahead), expected, rtol=1e-5, atol=1e-6)


def test_lookahead_every_few_steps_changes_the_weights_and_repeats_bit_for_bit(data):
    plain, _ = train_once(data)
    first, history = train_once(data, lookahead_steps=3)
    second, _ = train_once(data, lookahead_steps=3)
    assert training.weights_sha256(first) == training.weights_sha256(second) != training.weights_sha256(plain)
    assert history["val_accuracy"][-1] > 0.5


def test_patch_whitening_decorrelates_patches_to_unit_variance():
    x, _ = synthetic_split(64, seed=3)
    filters = training.patch_whitening(x[..., None])
    assert filters.shape == (3, 3, 1, 18)
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64) / 255, (3, 3), axis=(1, 2))
    patches = windows.reshape(-1, 9)
    responses = patches @ filters.reshape(9, 18)[:, :9]
    covariance = responses.T @ responses / len(patches)
    eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))
    np.testing.assert_allclose(covariance, np.diag(eigenvalues / (eigenvalues + 5e-4)), atol=1e-4)
    np.testing.assert_array_equal(filters[..., 9:], -filters[..., :9])


def kernels(model) -> list[np.ndarray]:
    return [
        keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    ]


def test_whiten_init_sets_the_first_convolutions_first_filters_and_nothing_else(data):
    (x, _), _ = data
    plain = kernels(training.compile_model(tiny_config(model="conv3_bn"), 200))
    whitened = kernels(training.compile_model(tiny_config(model="conv3_bn", whiten_init=True), 200, x))
    np.testing.assert_array_equal(whitened[0][..., :18], training.patch_whitening(x))
    np.testing.assert_array_equal(whitened[0][..., 18:], plain[0][..., 18:])
    for before, after in zip(plain[1:], whitened[1:]):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError, match="training images"):
        training.compile_model(tiny_config(model="conv3_bn", whiten_init=True), 200)


def test_dirac_init_makes_later_convolutions_pass_their_inputs_through():
    plain = training.compile_model(tiny_config(model="conv3_bn"), 200)
    dirac = training.compile_model(tiny_config(model="conv3_bn", dirac_init=True), 200)
    inputs = np.random.default_rng(0).normal(size=(2, 7, 7, 64)).astype(np.float32)
    outputs = keras.ops.convert_to_numpy(dirac.get_layer("conv_3")(inputs))
    np.testing.assert_allclose(outputs[..., :64], inputs, atol=1e-6)  # the first 64 of 128 filters: identity
    before, after = kernels(plain), kernels(dirac)
    np.testing.assert_array_equal(before[0], after[0])  # the first convolution keeps its random start
    for untouched, changed in zip(before[1:], after[1:]):
        inputs_count = changed.shape[2]
        np.testing.assert_array_equal(untouched[..., inputs_count:], changed[..., inputs_count:])
