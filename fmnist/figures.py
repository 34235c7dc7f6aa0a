"""Figures as PNG (matplotlib, no display needed): written to reports/ and logged to TensorBoard."""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def png_bytes(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def save_png(figure: plt.Figure, path: Path) -> None:
    path.write_bytes(png_bytes(figure))


def image_grid(images: np.ndarray, titles: list[str], columns: int = 8) -> plt.Figure:
    """Grayscale images (N, 28, 28, 1) in a grid, each titled (class names, predictions)."""
    rows = max(1, -(-len(images) // columns))  # one empty row when there is nothing to show
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image.squeeze(-1), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    return figure


def confusion_matrix_plot(matrix: np.ndarray, class_names: list[str]) -> plt.Figure:
    figure, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    ax.set_title("Confusion matrix (test set)")
    return figure
