"""The network architectures params `train.model` can name, each in plain Keras."""

import keras
from keras import layers

from stages.dataset import CLASS_NAMES, IMAGE_SHAPE

INPUT_SHAPE = (*IMAGE_SHAPE, 1)


def seed_cnn(dropout: float) -> keras.Model:
    """The article's CNN, layer for layer: one conv, two poolings, dropout, softmax (16,010 weights)."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, dtype="uint8", name="pixels"),
            layers.Rescaling(1 / 255, name="rescale"),  # the model takes raw uint8 pixels
            layers.Conv2D(32, 3, padding="same", name="conv"),
            layers.MaxPooling2D(2, name="pool_1"),
            layers.ReLU(name="relu"),
            layers.MaxPooling2D(2, name="pool_2"),
            layers.Dropout(dropout, name="dropout"),
            layers.Flatten(name="flatten"),
            layers.Dense(len(CLASS_NAMES), activation="softmax", name="classifier"),
        ],
        name="seed",
    )


ARCHITECTURES = {"seed": seed_cnn}


def build_model(name: str, dropout: float) -> keras.Model:
    return ARCHITECTURES[name](dropout)
