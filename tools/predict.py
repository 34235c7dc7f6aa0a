"""Classify image files with the trained model: `python -m tools.predict IMAGE... [--json]`.

Any PNG or JPEG, any size, photo or drawing: each is turned into a Fashion-MNIST image the way
Zalando made theirs (grayscale, negated so the object is light on black, trimmed to the object,
longest edge scaled to 28 pixels, centred on a 28x28 canvas). An image already in that form
(28x28, dark background) is used as it is, so the test set's own images give evaluate's answers.
Prints the top classes with their probabilities; a file that cannot be read gets one line and
the others still run.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist import dataset, exact_mode, params, paths
from fmnist.params.evaluate import EvaluateParams
from fmnist.params.runtime import RuntimeParams
from fmnist.stage_runner import StageError, run_stage


class Params(params.Section):  # the views evaluate averages over, computed as evaluate computes them
    evaluate: EvaluateParams
    runtime: RuntimeParams


TRIM_THRESHOLD = 0.05 * 255  # Zalando's trim: edges within 5% of the background's intensity are background


def _background(gray: np.ndarray) -> float:
    """The border's median: the background of a product photo or of a Fashion-MNIST image."""
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))


def to_fashion_mnist(image: Image.Image) -> np.ndarray:
    """An image as the model's input: (28, 28, 1) uint8, a light object centred on black."""
    image = ImageOps.exif_transpose(image)  # photos from phones are often stored sideways
    if "A" in image.getbands() or "transparency" in image.info:  # transparent areas become white background
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    background = _background(gray)
    if gray.shape == dataset.IMAGE_SHAPE and background < 128:
        return gray.astype(np.uint8)[..., np.newaxis]  # already a Fashion-MNIST image
    if background >= 128:  # dark object on a light background, as product photos are: negate
        gray, background = 255 - gray, 255 - background
    rows, columns = np.nonzero(gray > background + TRIM_THRESHOLD)
    if len(rows):
        gray = gray[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    gray = np.clip(gray - background, 0, None)
    if gray.max() > 0:
        gray *= 255 / gray.max()
    height, width = gray.shape
    scale = max(dataset.IMAGE_SHAPE) / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.LANCZOS))
    canvas = np.zeros(dataset.IMAGE_SHAPE, dtype=np.float32)
    top, left = (dataset.IMAGE_SHAPE[0] - size[1]) // 2, (dataset.IMAGE_SHAPE[1] - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = fitted
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)[..., np.newaxis]


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            return to_fashion_mnist(image)
    except FileNotFoundError:
        raise StageError(f"{path}: not found") from None
    except UnidentifiedImageError:
        raise StageError(f"{path}: not an image file Pillow can read (PNG, JPEG, ...)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise StageError(f"{path}: cannot decode the image ({error})") from None


def top_classes(probabilities: np.ndarray, count: int) -> list[dict[str, object]]:
    best = np.argsort(probabilities)[::-1][:count]
    return [{"class": dataset.CLASS_NAMES[i], "probability": round(float(probabilities[i]), 6)} for i in best]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.predict", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files")
    parser.add_argument("--model", type=Path, default=paths.MODEL, help=f"a saved Keras model (default {paths.MODEL})")
    parser.add_argument("--top", type=int, default=3, choices=range(1, len(dataset.CLASS_NAMES) + 1), metavar="K")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout, for machines")
    args = parser.parse_args()
    config = params.load(Params)

    results: list[dict[str, object]] = [{"image": str(path)} for path in args.images]
    readable: list[tuple[dict, np.ndarray]] = []
    for path, result in zip(args.images, results):
        try:
            readable.append((result, read_image(path)))
        except StageError as error:
            print(f"error: {error}", file=sys.stderr)
            result["error"] = str(error)
    if readable:
        exact_mode.start_tensorflow(config.runtime)  # takes seconds: only once there is something to classify
        from fmnist import prediction

        model = prediction.load_model(args.model)
        batch = np.stack([image for _, image in readable])
        averaging = config.evaluate
        probabilities, _ = prediction.class_probabilities(
            model, batch, averaging.mirror_average, averaging.shift_average
        )
        for (result, _), answer in zip(readable, probabilities):
            result["top"] = top_classes(answer, args.top)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "top" in result:
                best = ", ".join(f"{entry['class']} {entry['probability']:.1%}" for entry in result["top"])
                print(f"{result['image']}: {best}")
    if len(readable) < len(args.images):
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main, runs_tensorflow=True)
