"""What decides the bits of a run, pinned before TensorFlow loads (params `runtime`), and recorded after.

TensorFlow's oneDNN kernels pick their instruction set (AVX2, AVX-512, AMX, ...) from the CPU at run
time, and split their work by the intra-op thread count; both change the order of floating-point sums,
so the same params give other weights on another machine. And one instruction TensorFlow uses for
batch norm's rsqrt is itself an approximation whose bits differ from one CPU make to another.
`runtime.mode: exact` pins the instruction set and threads, turns on op determinism and strict float32,
and computes batch norm with IEEE sqrt and division, so every x86-64 CPU with AVX2 computes the same
bits. `native` leaves TensorFlow's defaults: fastest on the machine at hand, same bits there only.
"""

import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from fmnist import cpu
from fmnist.params.runtime import RuntimeParams

EXACT_ISA = "AVX2"  # every x86-64 CPU sold since about 2015 has it
EXACT_INTER_OP_THREADS = 1  # independent ops one after another: order of execution never matters then

# oneDNN's x86-64 instruction-set levels, as the oneDNN inside TensorFlow 2.21 defines them (src/cpu/x64/
# cpu_isa_traits.hpp): the names ONEDNN_MAX_CPU_ISA takes, highest first (the order oneDNN tries them in), each with
# its bits (a level includes every level whose bits it has: a cap allows the levels it includes) and the CPU flags
# (fmnist.cpu, named as /proc/cpuinfo names them) its `mayiuse` check needs.
_AVX512_CORE = {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
_AVX512_FP16 = _AVX512_CORE | {"avx512_vnni", "avx512_bf16", "avx512_fp16", "avx2", "avx_vnni"}
_AMX = _AVX512_FP16 | {"amx_tile", "amx_int8", "amx_bf16"}
ONEDNN_LEVELS = {
    "AVX512_CORE_AMX_FP16": (0x1FEF, _AMX | {"amx_fp16"}),
    "AVX512_CORE_AMX": (0xFEF, _AMX),
    "AVX512_CORE_FP16": (0x1EF, _AVX512_FP16),
    "AVX512_CORE_BF16": (0xE7, _AVX512_CORE | {"avx512_vnni", "avx512_bf16"}),
    "AVX512_CORE_VNNI": (0x67, _AVX512_CORE | {"avx512_vnni"}),
    "AVX512_CORE": (0x27, _AVX512_CORE),
    "AVX2_VNNI_2": (0x1F, {"avx2", "avx_vnni", "avx_vnni_int8", "avx_ne_convert"}),
    "AVX2_VNNI": (0xF, {"avx2", "avx_vnni"}),
    "AVX2": (0x7, {"avx2"}),
    "AVX": (0x3, {"avx"}),
    "SSE41": (0x1, {"sse4_1"}),
}
ONEDNN_ALIASES = {  # the AVX10.1 names ONEDNN_MAX_CPU_ISA also takes for the same levels
    "AVX10_1_512": "AVX512_CORE_FP16",
    "AVX10_1_512_AMX": "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16": "AVX512_CORE_AMX_FP16",
}


def onednn_isa(flags: set[str] | frozenset[str], cap: str | None = None) -> str | None:
    """The level oneDNN runs at: the highest one the CPU has that `cap` (ONEDNN_MAX_CPU_ISA) allows."""
    name = None if cap in (None, "", "ALL", "DEFAULT") else ONEDNN_ALIASES.get(cap.upper(), cap.upper())
    if name is not None and name not in ONEDNN_LEVELS:
        return f"{onednn_isa(flags)} (ONEDNN_MAX_CPU_ISA={cap} not known here)"
    allowed = ONEDNN_LEVELS[name][0] if name else -1
    for level, (bits, needs) in ONEDNN_LEVELS.items():
        if bits & allowed == bits and needs <= flags:
            return level
    return None


def pin(config: RuntimeParams, environ: dict[str, str] = os.environ) -> None:
    """Set what TensorFlow reads when it loads; call before the first `import tensorflow`."""
    if config.mode != "exact":
        return
    if "tensorflow" in sys.modules:
        raise RuntimeError("exact_mode.pin() in exact mode must run before TensorFlow is imported")
    flags = cpu.flags()
    if platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "fma"} <= flags:
        print(
            f"warning: runtime.mode = 'exact' gives the same bits on x86-64 CPUs with AVX2; this "
            f"{platform.machine()} CPU is not one, so its results will differ from theirs",
            file=sys.stderr,
        )
    environ.update(
        ONEDNN_MAX_CPU_ISA=EXACT_ISA,
        ONEDNN_DEFAULT_FPMATH_MODE="STRICT",  # no implicit bfloat16/tf32 down-conversion
        TF_ENABLE_ONEDNN_OPTS="1",  # the default on x86 Linux, not everywhere
        TF_NUM_INTRAOP_THREADS=str(config.threads),
        TF_NUM_INTEROP_THREADS=str(EXACT_INTER_OP_THREADS),
        TF_DETERMINISTIC_OPS="1",
        CUDA_VISIBLE_DEVICES="",  # GPUs do other arithmetic: exact mode is the CPU's
        KERAS_BACKEND="tensorflow",  # whatever ~/.keras/keras.json says
    )


VERBOSE = "FMNIST_VERBOSE"  # set to 1 to see TensorFlow's C++ start-up lines again (fmnist/__init__.py)


@contextmanager
def tensorflow_startup_quiet() -> Iterator[None]:
    """Keep what C++ code writes to stderr (file descriptor 2) off it for the block, unless FMNIST_VERBOSE is set.

    TensorFlow 2.21 logs through Abseil, which writes every message to stderr until absl::InitializeLog() is called,
    and TensorFlow never calls it: TF_CPP_MIN_LOG_LEVEL does not silence the start-up lines (oneDNN's notice, CUDA
    probing, an error-level 'failed call to cuInit' on machines without a GPU). Python exceptions raised in the
    block still reach stderr, after it.
    """
    if os.environ.get(VERBOSE, "") not in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_tensorflow(config: RuntimeParams, start_runtime: bool = True) -> None:
    """Pin, import and configure TensorFlow, and start its runtime, quietly (tensorflow_startup_quiet).

    start_runtime=False leaves the runtime to start later, for what must come first (a multi-worker strategy).
    """
    pin(config)
    with tensorflow_startup_quiet():
        import tensorflow as tf

        configure_tensorflow(config)
        if start_runtime:
            tf.config.list_logical_devices()  # device probing says its piece now


def configure_tensorflow(config: RuntimeParams) -> None:
    """The pins that TensorFlow takes as calls, right after import and before the first op."""
    if config.mode != "exact":
        return
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(config.threads)
    tf.config.threading.set_inter_op_parallelism_threads(EXACT_INTER_OP_THREADS)
    tf.config.experimental.enable_op_determinism()
    tf.nn.batch_normalization = _batch_normalization_without_rsqrt  # what Keras' BatchNormalization calls
    _fuse_batch_norm_in_training(keras.layers.BatchNormalization)
    # Grappler's arithmetic optimizer would turn x / sqrt(y) back into x * rsqrt(y).
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    # Keras' own defaults, which a user's ~/.keras/keras.json may have changed (epsilon clips the loss).
    keras.config.set_floatx("float32")
    keras.config.set_epsilon(1e-7)
    keras.config.set_image_data_format("channels_last")


def _batch_normalization_without_rsqrt(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """tf.nn.batch_normalization as (x - mean) / sqrt(variance + epsilon), in IEEE arithmetic throughout.

    TensorFlow's own version computes rsqrt(variance + epsilon), which its CPU kernel takes from the
    RSQRTPS instruction plus a Newton step; so would 1 / sqrt(...), which Grappler's constant folding
    turns into Reciprocal (RCPPS). Those instructions are approximations whose bits differ between
    Intel, AMD and emulated CPUs. Dividing the activations by the square root avoids both.
    """
    import tensorflow as tf

    with tf.name_scope(name or "batchnorm"):
        normalized = (x - tf.cast(mean, x.dtype)) / tf.cast(tf.sqrt(variance + variance_epsilon), x.dtype)
        if scale is not None:
            normalized *= tf.cast(scale, x.dtype)
        return normalized + tf.cast(offset, x.dtype) if offset is not None else normalized


def _fuse_batch_norm_in_training(layer_class) -> None:
    """Batch norm layers in training run TensorFlow's fused op, on image batches (NHWC, float32).

    With oneDNN on, TensorFlow runs it as oneDNN's batch norm kernel, which computes 1 / sqrt(var + eps) with IEEE
    sqrt and division (no RSQRTPS) and splits the batch between `threads` threads the same way on every CPU (by
    images, in the channels-last layout: no cache-size blocking). One kernel instead of a dozen ops: exact mode
    trained 1.13 times faster on an AMD EPYC (benchmarks/exact_pins.py, exact-unfused-bn). test_runtime checks that
    the oneDNN op is what runs: TensorFlow's own (Eigen) kernel would use rsqrt. Inference keeps Keras' path.
    """
    import functools

    import tensorflow as tf

    unfused = layer_class.call
    if getattr(unfused, "__wrapped__", None) is not None:  # configured already in this process
        return

    @functools.wraps(unfused)
    def call(self, inputs, training=None, mask=None):
        if not (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and inputs.dtype == tf.float32
        ):
            return unfused(self, inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True, data_format="NHWC"
        )
        # The op returns the unbiased variance (n / (n - 1)); Keras' moving average takes the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = variance * ((count - 1.0) / count)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    layer_class.call = call


def _threads(configured: int, variable: str) -> int:
    """TensorFlow's rule: the configured count, else the environment variable, else one per usable core."""
    from_environment = os.environ.get(variable, "")
    return configured or (int(from_environment) if from_environment.isdigit() else 0) or cpu.usable_cores()


def facts(config: RuntimeParams) -> dict[str, object]:
    """What decided the bits of this process's arithmetic, as recorded next to the metrics."""
    import tensorflow as tf

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or None
    onednn_on = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    return {
        "runtime_mode": config.mode,
        "onednn_isa": onednn_isa(cpu.flags(), cap) if onednn_on else "off",
        "intra_op_threads": _threads(tf.config.threading.get_intra_op_parallelism_threads(), "TF_NUM_INTRAOP_THREADS"),
        "inter_op_threads": _threads(tf.config.threading.get_inter_op_parallelism_threads(), "TF_NUM_INTEROP_THREADS"),
        "op_determinism": os.environ.get("TF_DETERMINISTIC_OPS", "").lower() in ("1", "true"),
        "machine": platform.machine(),
    }
