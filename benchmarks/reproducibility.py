"""Exact mode (params `runtime.mode`): does it give the same bits everywhere, and what does it cost?

    python -m benchmarks.reproducibility digests [--images 12000]   # same digest under other ISAs and cores?
    python -m benchmarks.reproducibility emulated [--images 600] [--modes exact]  # ... on CPUs QEMU emulates
    python -m benchmarks.reproducibility arm [--images 600] [--cpus max]   # ... on aarch64 CPUs (tools/arm64.sh)
    python -m benchmarks.reproducibility cost [--pairs 3]            # images/s, exact vs native, full data
    python -m benchmarks.reproducibility threads [--threads 2 4] [--rounds 3]  # exact mode's images/s and digest

`digests` trains the default model for one epoch in fresh processes, each under another setting that
changes TensorFlow's defaults on one machine (oneDNN's instruction set, the cores the process may use,
thread variables), in exact and in native mode, and prints each run's weights digest. `emulated` does
the same on this machine and under QEMU's user-mode emulation of other x86-64 CPUs (Debian's qemu-user:
an Intel Haswell and an AMD EPYC Rome, both AVX2 without AVX-512), about 100x slower, so on fewer images; `arm`
on aarch64 CPUs, in the Debian arm64 root that `bash tools/arm64.sh setup` builds. `cost` trains
the default model on the full training split in alternating processes, native then exact (A B A B ...),
and prints each pair's ratio of training images/s (second epoch), their median and spread. `threads` does the same
in exact mode for each `runtime.threads` value given, in rounds (A B A B ...), with each run's digest.
Run from the repository root after `dvc repro preprocess` (uses data/prepared; writes nothing).
"""

import argparse
import json
import statistics
import sys
import time

from benchmarks.common import child_json
from fmnist import cpu, exact_mode, params
from fmnist.params.all_sections import AllParams

# Settings that change what TensorFlow does by default on this machine; exact mode must not care.
SETTINGS = {
    "defaults": ({}, []),
    "ONEDNN_MAX_CPU_ISA=AVX512_CORE": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, []),
    "ONEDNN_MAX_CPU_ISA=AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "one core (taskset -c 0)": ({}, ["taskset", "-c", "0"]),
    "TF_NUM_INTRAOP_THREADS=1": ({"TF_NUM_INTRAOP_THREADS": "1"}, []),
}


def child(mode: str, images: int, epochs: int, threads: int = 0) -> None:
    """One training run in this process, as the train stage does it; prints a JSON line. threads: runtime.threads
    (0: params.yaml's)."""
    config = params.load(AllParams)
    runtime_params = config.runtime.model_copy(update={"mode": mode, "threads": threads or config.runtime.threads})
    exact_mode.pin(runtime_params)
    from fmnist import dataset, paths, training

    exact_mode.configure_tensorflow(runtime_params)
    # 0: all. Validation changes no weight (batch norm's statistics come from training images), so it is cut to as
    # many images: under QEMU, a forward pass over all 12,000 would cost several times training on 600.
    splits = (paths.TRAIN_ARRAYS, paths.VAL_ARRAYS)
    train, val = (tuple(a[: images or None] for a in dataset.load_arrays(split)) for split in splits)
    train_config = config.train.model_copy(update={"epochs": epochs})
    model = training.compile_model(train_config, len(train[0]))
    history = training.fit(model, train_config, train, val, log_dir=None)
    result = {
        "weights_sha256": training.weights_sha256(model),
        "images_per_second": history["images_per_second"][-1],
        "train_images": len(train[0]),
        **exact_mode.facts(runtime_params),
    }
    print(json.dumps(result))


def run_child(
    mode: str, images: int, epochs: int, env: dict | None = None, prefix: list | None = None, threads: int = 0
) -> dict:
    child_args = ["-m", "benchmarks.reproducibility", "child", mode, str(images), str(epochs)]
    child_args += ["--threads", str(threads)]
    return child_json([*(prefix or []), sys.executable, *child_args], env)


def digests(images: int) -> None:
    print(f"one epoch of the default model on {images} training images; CPU: {cpu.model()}")
    for mode in ("exact", "native"):
        seen = set()
        for name, (env, prefix) in SETTINGS.items():
            run = run_child(mode, images, 1, env, prefix)
            seen.add(run["weights_sha256"])
            isa, threads = run["onednn_isa"], run["intra_op_threads"]
            print(f"  {mode:6} {name:32} {run['weights_sha256'][:16]}  (oneDNN {isa}, {threads} intra-op threads)")
        print(f"  {mode}: {len(seen)} distinct digest(s) over {len(SETTINGS)} settings")


# CPUs that QEMU emulates (its TCG has AVX2 but no AVX-512): other vendors, models and cache sizes.
EMULATED_CPUS = ["Haswell", "EPYC-Rome"]


def emulated(images: int, modes: list[str]) -> None:
    host = f"the host ({cpu.model()})"
    print(f"one epoch of the default model on {images} training images")
    for mode in modes:
        runs = {host: run_child(mode, images, 1)}
        for emulated_cpu in EMULATED_CPUS:
            runs[f"QEMU -cpu {emulated_cpu}"] = run_child(mode, images, 1, prefix=["qemu-x86_64", "-cpu", emulated_cpu])
        for name, run in runs.items():
            print(f"  {mode:6} {name:32} {run['weights_sha256'][:16]}")
        distinct = len({run["weights_sha256"] for run in runs.values()})
        print(f"  {mode}: {distinct} distinct digest(s) over {len(runs)} CPUs")


# aarch64 CPUs that QEMU 7.2 emulates, from Armv8.0 with NEON only to SVE: Arm's Cortex-A72 (Graviton 1, Raspberry
# Pi 4), Neoverse-N1 (Graviton 2, Ampere Altra; Armv8.2 with dot product and FP16), Fujitsu's A64FX (SVE, 512-bit
# vectors) and QEMU's `max` (every feature QEMU has, SVE among them).
ARM_CPUS = ["cortex-a72", "neoverse-n1", "a64fx", "max"]


def arm(images: int, modes: list[str], cpus: list[str]) -> None:
    print(f"one epoch of the default model on {images} training images, aarch64 under QEMU (tools/arm64.sh)")
    for mode in modes:
        runs = {}
        for arm_cpu in cpus:
            command = ["bash", "tools/arm64.sh", "run", f"python -m benchmarks.reproducibility child {mode} {images} 1"]
            started = time.monotonic()
            runs[arm_cpu] = child_json(command, {"QEMU_CPU": arm_cpu})
            seconds, speed = time.monotonic() - started, runs[arm_cpu]["images_per_second"]
            print(f"  {mode:6} -cpu {arm_cpu:12} {runs[arm_cpu]['weights_sha256'][:16]}  {speed:6.1f} images/s,"
                  f" {seconds:4.0f} s in all")  # fmt: skip
        distinct = len({run["weights_sha256"] for run in runs.values()})
        print(f"  {mode}: {distinct} distinct digest(s) over {len(runs)} CPUs")


def cost(pairs: int, epochs: int) -> None:
    print(f"default model on the whole training split, {epochs} epochs; training images/s of the last epoch")
    ratios = []
    for pair in range(pairs):
        native = run_child("native", 0, epochs)["images_per_second"]
        exact = run_child("exact", 0, epochs)["images_per_second"]
        ratios.append(exact / native)
        print(f"  pair {pair + 1}: native {native:7.0f}  exact {exact:7.0f}  exact/native {ratios[-1]:.3f}")
    spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
    print(f"exact/native images/s: median {statistics.median(ratios):.3f} over {pairs} pairs (range {spread})")


def threads(counts: list[int], rounds: int, epochs: int) -> None:
    print(
        f"exact mode, default model, whole training split, {epochs} epochs; training images/s of the last epoch;"
        f" {cpu.usable_cores()} usable cores ({cpu.model()})"
    )
    speeds: dict[int, list[float]] = {count: [] for count in counts}
    digests_seen: dict[int, set[str]] = {count: set() for count in counts}
    for round_number in range(rounds):
        for count in counts:
            run = run_child("exact", 0, epochs, threads=count)
            speeds[count].append(run["images_per_second"])
            digests_seen[count].add(run["weights_sha256"])
            print(f"  round {round_number + 1}: threads {count:3}  {speeds[count][-1]:7.0f} images/s"
                  f"  digest {run['weights_sha256'][:16]}")  # fmt: skip
    first = counts[0]
    for count in counts:
        ratios = [speed / base for speed, base in zip(speeds[count], speeds[first])]
        spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
        print(
            f"threads {count}: images/s {statistics.median(ratios):.3f} of threads {first}'s (median of {rounds}"
            f" rounds, range {spread}); {len(digests_seen[count])} distinct digest(s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    digests_parser = commands.add_parser("digests")
    digests_parser.add_argument("--images", type=int, default=12000)
    emulated_parser = commands.add_parser("emulated")
    emulated_parser.add_argument("--images", type=int, default=600)
    emulated_parser.add_argument("--modes", nargs="+", choices=["exact", "native"], default=["exact", "native"])
    arm_parser = commands.add_parser("arm")
    arm_parser.add_argument("--images", type=int, default=600)
    arm_parser.add_argument("--modes", nargs="+", choices=["exact", "native"], default=["exact", "native"])
    arm_parser.add_argument("--cpus", nargs="+", default=ARM_CPUS)
    cost_parser = commands.add_parser("cost")
    cost_parser.add_argument("--pairs", type=int, default=3)
    cost_parser.add_argument("--epochs", type=int, default=2)
    threads_parser = commands.add_parser("threads")
    threads_parser.add_argument("--threads", type=int, nargs="+", default=[2, 4])
    threads_parser.add_argument("--rounds", type=int, default=3)
    threads_parser.add_argument("--epochs", type=int, default=2)
    child_parser = commands.add_parser("child")
    child_parser.add_argument("mode", choices=["exact", "native"])
    child_parser.add_argument("images", type=int)
    child_parser.add_argument("epochs", type=int)
    child_parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.command == "digests":
        digests(args.images)
    elif args.command == "emulated":
        emulated(args.images, args.modes)
    elif args.command == "arm":
        arm(args.images, args.modes, args.cpus)
    elif args.command == "cost":
        cost(args.pairs, args.epochs)
    elif args.command == "threads":
        threads(args.threads, args.rounds, args.epochs)
    else:
        child(args.mode, args.images, args.epochs, args.threads)


if __name__ == "__main__":
    main()
