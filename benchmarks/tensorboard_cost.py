"""What TensorBoard logging costs the train stage: epoch time with everything on vs. logging off.

    python -m benchmarks.tensorboard_cost [--epochs 3] [--images 48000]

Both runs use the default params (model, batch size) in one process, one after the other; the
logged run writes what the stage writes: scalars, weight histograms every epoch, graph, text, images.
"""

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import prepared, train_params
from fmnist import tensorboard_logs, training


def run(config, train, val, log_dir: Path | None) -> list[float]:
    model = training.compile_model(config, len(train[0]))
    if log_dir is not None:
        tensorboard_logs.write_model_overview(model, log_dir / "train", training.model_summary(model), *train)
    return training.fit(model, config, train, val, log_dir)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=48000)
    args = parser.parse_args()
    config = train_params(epochs=args.epochs, histogram_freq=1)
    train, val = prepared(args.images)
    off = run(config, train, val, None)
    with tempfile.TemporaryDirectory() as log_dir:
        on = run(config, train, val, Path(log_dir))
    # The first epoch carries tracing and warm-up; compare the steady epochs.
    steady_off, steady_on = sum(off[1:]) / len(off[1:]), sum(on[1:]) / len(on[1:])
    print(f"model {config.model}, batch {config.batch_size}, {len(train[0])} images/epoch")
    print(f"logging off: {steady_off:.2f} s/epoch   all TensorBoard logging on: {steady_on:.2f} s/epoch")
    print(f"ratio on/off: {steady_on / steady_off:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
