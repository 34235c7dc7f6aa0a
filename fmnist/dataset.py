"""Fashion-MNIST as files: IDX decoding with validation, class names, prepared-array I/O.

No TensorFlow here: download and preprocess stay fast to start.
"""

import gzip
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fmnist.stage_runner import StageError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SHAPE = (28, 28)
UBYTE = 0x08  # IDX type code for unsigned bytes, the only type Fashion-MNIST uses


def class_names(labels: np.ndarray) -> list[str]:
    return [CLASS_NAMES[label] for label in labels]


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Decode a gzipped IDX file of unsigned bytes with `ndim` dimensions, checking its header."""
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run the download stage first)") from None
    except (OSError, EOFError, zlib.error) as error:
        raise StageError(f"{path}: not a readable gzip file ({error})") from None
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise StageError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, dtype, file_ndim = data[0:2], data[2], data[3]
    if zero != b"\0\0" or dtype != UBYTE or file_ndim != ndim:
        expected = f"0x0000{UBYTE:02x}{ndim:02x}"
        raise StageError(f"{path}: bad IDX magic number 0x{data[:4].hex()}, expected {expected}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = len(data) - header_size
    if payload != int(np.prod(dims)):
        raise StageError(f"{path}: header says dimensions {dims} ({int(np.prod(dims))} bytes), file has {payload}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images as (N, 28, 28, 1) uint8 and labels as (N,) uint8 in 0..9, validated."""
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise StageError(f"{images_path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise StageError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        bad = int(np.argmax(labels >= len(CLASS_NAMES)))
        raise StageError(f"{labels_path}: label {labels[bad]} at index {bad} is outside 0..{len(CLASS_NAMES) - 1}")
    return images[..., np.newaxis], labels


def save_arrays(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with path.open("wb") as out:  # np.savez(path) would append ".npz" to a temporary's name
        np.savez(out, x=x, y=y)


def load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load prepared arrays; never unpickles, so a hostile file cannot run code."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return arrays["x"], arrays["y"]
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run the preprocess stage first)") from None
    except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise StageError(f"{path}: not a readable prepared-array file ({error})") from None
