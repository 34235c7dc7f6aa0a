"""Where a training step's time goes, and how far it is from the CPU's peak, in the pipeline's own runtime mode.

    python -m benchmarks.profile_steps [--steps 50] [--model conv2_bn --batch-size 128] [--by layer]

On the prepared training split with params' `train` and `runtime` sections (exact mode by default): a few warm-up
steps, then `--steps` timed steps (images/s, the model's FLOP/s against a float32 matmul measured in the same
process and mode), then `--steps` steps under TensorFlow's profiler. Speed is given per second of wall time and per
second of the process's CPU time: the second does not count time the process waits or other processes take, so it
is the steadier way to compare models on a shared machine. Prints each op type's (`--by layer`: each layer's) time
summed over all threads (with 2 threads the sum can exceed the wall time) and its share. The profile's XPlane is read
with TensorFlow's own protobuf (no profiler plugin needed).
"""

import argparse
import collections
import re
import tempfile
import time
from pathlib import Path

from benchmarks.common import prepared
from fmnist import params, runtime
from fmnist.params.all_sections import AllParams


def op_times(profile_dir: Path, layers: list[str] | None = None) -> collections.Counter:
    """Seconds per op type over every thread of the host plane: kernel events are named `scope/name:Type`.

    With `layers` (the model's layer names), seconds per layer instead: forward and gradient ops both carry the
    layer's scope (`.../conv3_bn_1/conv_2_1/convolution/Conv2DBackpropFilter`); the rest counts as "(other)".
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: collections.Counter = collections.Counter()
    for path in profile_dir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            if plane.name != "/host:CPU":
                continue
            for line in plane.lines:
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if name.count(":") == 1 and " " not in name:  # not `Iterator::...` or executor spans
                        scope, op_type = name.split(":")
                        key = op_type if layers is None else layer_of(scope, layers)
                        totals[key] += event.duration_ps / 1e12
    return totals


def layer_of(scope: str, layers: list[str]) -> str:
    """The layer a scope belongs to: a path part that is a layer's name, or that name with Keras' `_1` suffix."""
    for part in scope.split("/"):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in layers:
                return candidate
    return "(other)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--by", choices=["op", "layer"], default="op", help="sum op time per op type or per layer")
    parser.add_argument("--model", help="train.model instead of params.yaml's")
    parser.add_argument("--batch-size", type=int, help="train.batch_size instead of params.yaml's")
    args = parser.parse_args()
    loaded = params.load(AllParams)
    runtime.pin(loaded.runtime)
    import tensorflow as tf

    from benchmarks.train_speed import matmul_peak_gflops, training_flops_per_image
    from fmnist import training

    runtime.configure_tensorflow(loaded.runtime)
    overrides = {"model": args.model, "batch_size": args.batch_size}
    config = loaded.train.model_copy(update={key: value for key, value in overrides.items() if value is not None})
    train, _ = prepared()
    model = training.compile_model(config, len(train[0]))
    batches = training.batches(config, *train).repeat()
    model.fit(batches, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)  # trace and warm up
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(batches, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
    speed = args.steps * config.batch_size / (time.perf_counter() - started)
    cpu_speed = args.steps * config.batch_size / (time.process_time() - cpu_started)
    flops = training_flops_per_image(model)
    peak = matmul_peak_gflops()
    with tempfile.TemporaryDirectory() as profile_dir:
        tf.profiler.experimental.start(profile_dir)
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        layers = [layer.name for layer in model.layers] if args.by == "layer" else None
        totals = op_times(Path(profile_dir), layers)
    total = sum(totals.values())
    per_step = wall / args.steps
    print(f"{config.model}, batch {config.batch_size}, {loaded.runtime.mode} mode, {args.steps} steps:")
    print(f"  {speed:.0f} images/s x {flops / 1e6:.1f} MFLOP per training image = {speed * flops / 1e9:.1f} GFLOP/s")
    print(f"  {cpu_speed:.0f} images per CPU-second (all threads' CPU time; waits and other processes not counted)")
    print(f"  float32 matmul peak in this mode: {peak:.1f} GFLOP/s -> {100 * speed * flops / 1e9 / peak:.0f}% of it")
    print(f"profiled: {1000 * per_step:.1f} ms per step wall ({config.batch_size / per_step:.0f} images/s)")
    print(f"  op time over all threads: {1000 * total / args.steps:.1f} ms per step")
    print(f"  {'op type' if args.by == 'op' else 'layer':<28} {'ms/step':>8} {'share':>6}")
    for op, seconds in totals.most_common(args.top):
        print(f"  {op:<28} {1000 * seconds / args.steps:8.2f} {100 * seconds / total:5.1f}%")


if __name__ == "__main__":
    main()
