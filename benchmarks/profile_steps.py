"""Where a training step's time goes, and how far it is from the CPU's peak, in the pipeline's own runtime mode.

    python -m benchmarks.profile_steps [--steps 50] [--model conv2_bn --batch-size 128] [--by layer] [--mode native]
    python -m benchmarks.profile_steps --pairs 3 [--steps 30]     # exact and native mode, op by op

On the prepared training split with params' `train` and `runtime` sections (exact mode by default): a few warm-up
steps, then `--steps` timed steps (images/s, the model's FLOP/s against a float32 matmul measured in the same
process and mode), then `--steps` steps under TensorFlow's profiler. Speed is given per second of wall time and per
second of the process's CPU time: the second does not count time the process waits or other processes take, so it
is the steadier way to compare models on a shared machine. Prints each op type's (`--by layer`: each layer's) time
summed over all threads (with 2 threads the sum can exceed the wall time) and its share. The profile's XPlane is read
with TensorFlow's own protobuf (no profiler plugin needed). `--pairs N` profiles exact and native mode in alternating
processes (native, exact, native, ...) and prints each op type's median time per step in each mode and their ratio.
Native mode may run two ops at once (two inter-op threads), so its per-op times are not exact mode's minus the
cap: `benchmarks.exact_pins` changes one pin at a time.
"""

import argparse
import collections
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import child_json, prepared, timed_steps
from fmnist import exact_mode, params
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


def profile(args: argparse.Namespace) -> dict:
    """Speed and op times of `args.steps` training steps, in this process, in `args.mode` (None: params')."""
    loaded = params.load(AllParams)
    runtime_params = loaded.runtime.model_copy(update={"mode": args.mode or loaded.runtime.mode})
    exact_mode.pin(runtime_params)
    import tensorflow as tf

    from benchmarks.train_speed import matmul_peak_gflops, training_flops_per_image
    from fmnist import training

    exact_mode.configure_tensorflow(runtime_params)
    overrides = {"model": args.model, "batch_size": args.batch_size}
    config = loaded.train.model_copy(update={key: value for key, value in overrides.items() if value is not None})
    train, _ = prepared()
    model = training.compile_model(config, len(train[0]))
    batches = training.batches(config, *train).repeat()
    wall, cpu = timed_steps(model, batches, args.steps)
    speed, cpu_speed = args.steps * config.batch_size / wall, args.steps * config.batch_size / cpu
    with tempfile.TemporaryDirectory() as profile_dir:
        tf.profiler.experimental.start(profile_dir)
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        layers = [layer.name for layer in model.layers] if args.by == "layer" else None
        totals = op_times(Path(profile_dir), layers)
    return {
        "title": f"{config.model}, batch {config.batch_size}, {runtime_params.mode} mode, {args.steps} steps",
        "batch_size": config.batch_size,
        "images_per_second": speed,
        "images_per_cpu_second": cpu_speed,
        "flops_per_image": training_flops_per_image(model),
        "matmul_peak_gflops": matmul_peak_gflops(),
        "profiled_ms_per_step": 1000 * wall / args.steps,
        "ms_per_step": {op: 1000 * seconds / args.steps for op, seconds in totals.most_common()},
    }


def print_profile(run: dict, by: str, top: int) -> None:
    speed, flops, peak = run["images_per_second"], run["flops_per_image"], run["matmul_peak_gflops"]
    print(f"{run['title']}:")
    print(f"  {speed:.0f} images/s x {flops / 1e6:.1f} MFLOP per training image = {speed * flops / 1e9:.1f} GFLOP/s")
    cpu_speed = run["images_per_cpu_second"]
    print(f"  {cpu_speed:.0f} images per CPU-second (all threads' CPU time; waits and other processes not counted)")
    print(f"  float32 matmul peak in this mode: {peak:.1f} GFLOP/s -> {100 * speed * flops / 1e9 / peak:.0f}% of it")
    per_step = run["profiled_ms_per_step"]
    print(f"profiled: {per_step:.1f} ms per step wall ({1000 * run['batch_size'] / per_step:.0f} images/s)")
    total = sum(run["ms_per_step"].values())
    print(f"  op time over all threads: {total:.1f} ms per step")
    print(f"  {'op type' if by == 'op' else 'layer':<28} {'ms/step':>8} {'share':>6}")
    for op, ms in list(run["ms_per_step"].items())[:top]:
        print(f"  {op:<28} {ms:8.2f} {100 * ms / total:5.1f}%")


def median_per_op(runs: list[dict]) -> dict[str, float]:
    """Each op type's median ms/step over the runs, an op missing from a run counting as 0 there."""
    ops = {op for run in runs for op in run["ms_per_step"]}
    return {op: statistics.median(run["ms_per_step"].get(op, 0.0) for run in runs) for op in ops}


def compare_modes(args: argparse.Namespace) -> None:
    """Native and exact mode in alternating processes; per op type, the median ms/step of each and their ratio."""
    options = ["--steps", str(args.steps), "--by", args.by, "--json"]
    for flag, value in (("--model", args.model), ("--batch-size", args.batch_size)):
        if value:
            options += [flag, str(value)]
    runs: dict[str, list[dict]] = {"native": [], "exact": []}
    for pair in range(args.pairs):
        for mode in runs:
            runs[mode].append(child_json([sys.executable, "-m", "benchmarks.profile_steps", "--mode", mode, *options]))
        native, exact = (runs[mode][-1]["images_per_second"] for mode in runs)
        print(f"pair {pair + 1}: native {native:.0f} images/s, exact {exact:.0f}, exact/native {exact / native:.3f}")
    ratios = [e["images_per_second"] / n["images_per_second"] for n, e in zip(runs["native"], runs["exact"])]
    print(f"exact/native images/s: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
    median = {mode: median_per_op(mode_runs) for mode, mode_runs in runs.items()}
    ops = sorted(set(median["native"]) | set(median["exact"]), key=lambda op: -median["exact"].get(op, 0.0))
    wall = {mode: statistics.median(run["profiled_ms_per_step"] for run in runs[mode]) for mode in runs}
    print(f"median wall time per profiled step: native {wall['native']:.1f} ms, exact {wall['exact']:.1f} ms")
    lost = sum(median["exact"].values()) - sum(median["native"].values())
    print(f"median ms/step over all threads, {args.pairs} runs each; exact mode spends {lost:+.1f} ms/step more in all")
    print(f"  {'op type' if args.by == 'op' else 'layer':<28} {'native':>8} {'exact':>8} {'ratio':>6} {'extra':>7}")
    for op in ops[: args.top]:
        native, exact = median["native"].get(op, 0.0), median["exact"].get(op, 0.0)
        ratio = f"{exact / native:6.2f}" if native else "     -"
        print(f"  {op:<28} {native:8.2f} {exact:8.2f} {ratio} {exact - native:+7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--by", choices=["op", "layer"], default="op", help="sum op time per op type or per layer")
    parser.add_argument("--model", help="train.model instead of params.yaml's")
    parser.add_argument("--batch-size", type=int, help="train.batch_size instead of params.yaml's")
    parser.add_argument("--mode", choices=["exact", "native"], help="runtime.mode instead of params.yaml's")
    parser.add_argument("--pairs", type=int, help="compare native and exact mode over this many pairs of processes")
    parser.add_argument("--json", action="store_true", help="print the run as one JSON line")
    args = parser.parse_args()
    if args.pairs:
        compare_modes(args)
        return
    run = profile(args)
    print(json.dumps(run)) if args.json else print_profile(run, args.by, args.top)


if __name__ == "__main__":
    main()
