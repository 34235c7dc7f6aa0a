"""Training throughput: our train stage's loop vs. a plain Keras script in the article's style.

    python -m benchmarks.train_speed [--epochs 2] [--images 48000]

(a) the article's way: float32 arrays scaled in NumPy, one-hot labels, `model.fit` on NumPy arrays;
(b) our stage: `fmnist.training` on the prepared uint8 arrays (scaling inside the model).
Same model (the article's CNN), batch size and epochs, one after the other in one process; then
the default model's images/s, how far it is from this CPU's measured matmul peak, and what
random flips (train.augment) cost.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import prepared, timed, train_params
from fmnist import training
from fmnist.model import build_model


def article_script(train, val, epochs: int, batch_size: int) -> float:
    """The article's code, nearly verbatim; returns seconds for model.fit."""
    x_train, y_train = train[0].astype("float32") / 255, keras.utils.to_categorical(train[1], 10)
    x_val, y_val = val[0].astype("float32") / 255, keras.utils.to_categorical(val[1], 10)
    keras.utils.set_random_seed(42)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), padding="same"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return timed(lambda: model.fit(x_train, y_train, batch_size, epochs, validation_data=(x_val, y_val), verbose=0))


def our_stage(config, train, val) -> float:
    model = training.compile_model(config, len(train[0]))
    return timed(lambda: training.fit(model, config, train, val, log_dir=None))


def training_flops_per_image(model: keras.Model) -> float:
    """Multiply-adds of conv and dense layers x2 (FLOPs) x3 (forward, two backward passes)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel = int(np.prod(layer.kernel.shape[:-1]))
            flops += 2 * height * width * kernel * filters
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return 3 * flops


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        result = tf.matmul(a, b)
    result.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=48000)
    args = parser.parse_args()
    train, val = prepared(args.images)
    images = args.epochs * len(train[0])

    seed = train_params(model="seed", batch_size=32, epochs=args.epochs, lr_schedule="constant")
    plain = images / article_script(train, val, args.epochs, seed.batch_size)
    ours = images / our_stage(seed, train, val)
    print(f"article's CNN, batch {seed.batch_size}, {args.epochs} epochs of {len(train[0])} images (+ validation):")
    print(f"  plain Keras script: {plain:8.0f} images/s")
    print(f"  our train stage:    {ours:8.0f} images/s   ratio ours/plain: {ours / plain:.2f} (target >= 1.0)")

    default = train_params(epochs=args.epochs)
    speed = images / our_stage(default, train, val)
    flops = training_flops_per_image(build_model(default.model, default.dropout))
    peak = matmul_peak_gflops()
    achieved = flops * speed / 1e9
    print(f"default model {default.model}, batch {default.batch_size}: {speed:.0f} images/s")
    print(f"  {flops / 1e6:.1f} MFLOP per training image -> {achieved:.1f} GFLOP/s")
    print(f"  float32 matmul peak here: {peak:.1f} GFLOP/s -> {100 * achieved / peak:.0f}% of peak")

    speeds = {default.augment: speed}
    for augment in {"flip", "none"} - set(speeds):  # the setting the default run did not cover
        speeds[augment] = images / our_stage(default.model_copy(update={"augment": augment}), train, val)
    print(f"  random flips in the input pipeline: {speeds['flip']:.0f} vs {speeds['none']:.0f} images/s without,")
    print(f"  ratio with/without: {speeds['flip'] / speeds['none']:.2f}")


if __name__ == "__main__":
    main()
