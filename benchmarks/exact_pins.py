"""What each of exact mode's pins costs: training speed with one pin changed at a time, in alternating processes.

    python -m benchmarks.exact_pins [--rounds 3] [--steps 40] [--variants exact native native-avx2 exact-unfused-bn]

Each round runs every variant once, in turn, each in its own process (A B C A B C ...): 10 warm-up steps, then
`--steps` timed steps of the params' model on the prepared training split. Prints each variant's median images/s
and range, the ratio of medians to `native`, the process's CPU time per wall second (how busy the 2 cores were), and
the weights digest after the steps: variants with the same digest compute the same bits.

Variants:
    exact             runtime.mode exact, as the pipeline runs
    native            runtime.mode native (TensorFlow's defaults)
    native-avx2       native, oneDNN capped at AVX2: the cap alone, without exact mode's other pins
    native-interop1   native with one inter-op thread, as exact mode has
    exact-interop2    exact with two inter-op threads
    exact-nondeterministic  exact without op determinism (TF_DETERMINISTIC_OPS, enable_op_determinism)
    exact-unfused-bn  exact, but batch norm layers in training use Keras' own ops (exact mode's division by the square
                      root) instead of TensorFlow's fused op (oneDNN's kernel), as exact mode did before
"""

import argparse
import collections
import json
import os
import statistics
import sys

from benchmarks.common import child_json, prepared, timed_steps

VARIANTS = (
    "exact",
    "native",
    "native-avx2",
    "native-interop1",
    "exact-interop2",
    "exact-nondeterministic",
    "exact-unfused-bn",
)


def child(variant: str, steps: int) -> dict:
    """Train `steps` steps in this process under `variant`; speed, CPU use and the weights digest."""
    from fmnist import exact_mode, params
    from fmnist.params.all_sections import AllParams

    loaded = params.load(AllParams)
    config = loaded.runtime.model_copy(update={"mode": variant.split("-")[0]})
    exact_mode.pin(config)
    if variant == "exact-nondeterministic":
        del os.environ["TF_DETERMINISTIC_OPS"]
    if variant in ("exact-interop2", "native-interop1"):
        os.environ["TF_NUM_INTEROP_THREADS"] = "2" if variant == "exact-interop2" else "1"
    if variant == "native-avx2":
        os.environ["ONEDNN_MAX_CPU_ISA"] = exact_mode.EXACT_ISA
    import tensorflow as tf

    if variant == "exact-nondeterministic":
        tf.config.experimental.enable_op_determinism = lambda: None
    if variant == "exact-interop2":
        exact_mode.EXACT_INTER_OP_THREADS = 2
    exact_mode.configure_tensorflow(config)
    if variant == "native-interop1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if variant == "exact-unfused-bn":
        import keras

        keras.layers.BatchNormalization.call = keras.layers.BatchNormalization.call.__wrapped__

    from fmnist import training

    tf.keras.utils.set_random_seed(loaded.train.seed)
    train, _ = prepared()
    model = training.compile_model(loaded.train, len(train[0]))
    batches = training.batches(loaded.train, *train).repeat()
    wall, cpu = timed_steps(model, batches, steps)
    return {
        "variant": variant,
        "images_per_second": steps * loaded.train.batch_size / wall,
        "cpu_per_wall": cpu / wall,
        "digest": training.weights_sha256(model)[:12],
    }


def summarize(runs: list[dict], baseline: str = "native") -> list[dict]:
    """Per variant, in first-seen order: median and range of images/s, ratio of medians to `baseline`, digests."""
    by_variant: dict[str, list[dict]] = collections.defaultdict(list)
    for run in runs:
        by_variant[run["variant"]].append(run)
    base = statistics.median(run["images_per_second"] for run in by_variant[baseline]) if baseline in by_variant else 0
    rows = []
    for variant, variant_runs in by_variant.items():
        speeds = [run["images_per_second"] for run in variant_runs]
        rows.append(
            {
                "variant": variant,
                "runs": len(speeds),
                "median": statistics.median(speeds),
                "low": min(speeds),
                "high": max(speeds),
                "ratio": statistics.median(speeds) / base if base else None,
                "cpu_per_wall": statistics.median(run["cpu_per_wall"] for run in variant_runs),
                "digests": sorted({run["digest"] for run in variant_runs}),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    runs = []
    for round_number in range(args.rounds):
        for variant in args.variants:
            command = [sys.executable, "-m", "benchmarks.exact_pins", "--child", variant, "--steps", str(args.steps)]
            runs.append(child_json(command))
            print(f"round {round_number + 1}: {variant} {runs[-1]['images_per_second']:.0f} images/s", flush=True)
    print(f"{'variant':<24} {'images/s (median, range)':>26} {'/native':>8} {'cores busy':>10}  weights digest")
    for row in summarize(runs):
        ratio = f"{row['ratio']:8.3f}" if row["ratio"] else "       -"
        speeds = f"{row['median']:.0f} ({row['low']:.0f}-{row['high']:.0f})"
        print(f"{row['variant']:<24} {speeds:>26} {ratio} {row['cpu_per_wall']:10.2f}  {', '.join(row['digests'])}")


if __name__ == "__main__":
    main()
