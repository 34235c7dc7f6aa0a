"""The network architectures params `train.model` can name, each in plain Keras."""

import keras
from keras import layers

from fmnist.dataset import CLASS_NAMES, IMAGE_SHAPE

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


def conv_block(index: int, filters: int, padded: bool = True) -> list[layers.Layer]:
    # Pooling straight after the convolution, so batch norm and ReLU run on 4x fewer activations:
    # 1,260 vs 898 training images/s on this CPU at batch 128 against conv -> BN -> ReLU -> pool.
    # Unpadded, the convolution's output loses a pixel at each border and pooling keeps its odd last row and column.
    return [
        layers.Conv2D(filters, 3, padding="same" if padded else "valid", use_bias=False, name=f"conv_{index}"),
        layers.MaxPooling2D(2, padding="valid" if padded else "same", name=f"pool_{index}"),
        layers.BatchNormalization(name=f"bn_{index}"),
        layers.ReLU(name=f"relu_{index}"),
    ]


def conv_bn(name: str, widths: tuple[int, ...], dropout: float, pad_last: bool = True) -> keras.Model:
    """Conv blocks with batch norm (each halves the image) and a dense head."""
    last = len(widths)
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, dtype="uint8", name="pixels"),
            layers.Rescaling(1 / 255, name="rescale"),
            *[
                layer
                for index, filters in enumerate(widths, 1)
                for layer in conv_block(index, filters, padded=pad_last or index < last)
            ],
            layers.Flatten(name="flatten"),
            layers.Dropout(dropout, name="dropout_1"),
            layers.Dense(256, activation="relu", name="dense"),
            layers.Dropout(dropout, name="dropout_2"),
            layers.Dense(len(CLASS_NAMES), activation="softmax", name="classifier"),
        ],
        name=name,
    )


def conv2_bn(dropout: float) -> keras.Model:
    """Two conv blocks (32, 64 filters) and Dense(256): the small-CNN class that reaches 0.92-0.93.

    Dense(256) rather than 128: validation accuracy 0.9315 vs 0.9294 (flips, dropout 0.15, 12 epochs)
    for 27.9 instead of 25.4 MFLOP per training image.
    """
    return conv_bn("conv2_bn", (32, 64), dropout)


def conv3_bn(dropout: float) -> keras.Model:
    """A third block (128 filters on the 7x7 maps, pooled to 3x3): more features, and half the weights of
    conv2_bn, since the dense layer sees 1,152 values instead of 3,136."""
    return conv_bn("conv3_bn", (32, 64, 128), dropout)


def conv3_slim(dropout: float) -> keras.Model:
    """conv3_bn at half the arithmetic (24.4 against 46.5 MFLOP per training image): 16 filters in the first block,
    so the second convolution reads half the channels, and the third convolution unpadded, 7x7 -> 5x5, pooled with
    padding to the same 3x3 (padded, it computed 49 outputs per filter and pooling used 36). 1.28x as fast per epoch
    in the pipeline, and a little less accurate per epoch (docs/results.md: not adopted)."""
    return conv_bn("conv3_slim", (16, 64, 128), dropout, pad_last=False)


ARCHITECTURES = {"seed": seed_cnn, "conv2_bn": conv2_bn, "conv3_bn": conv3_bn, "conv3_slim": conv3_slim}


def build_model(name: str, dropout: float) -> keras.Model:
    return ARCHITECTURES[name](dropout)
