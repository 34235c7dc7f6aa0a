"""Exact mode: the pins hold when this machine's defaults differ, and the recorded facts say what ran."""

import json
import mmap
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import cpu, exact_mode
from fmnist.params.runtime import RuntimeParams
from tests.conftest import REPO

# Flags of real CPUs, as /proc/cpuinfo lists them (only those that matter here).
HASWELL = {"sse4_1", "avx", "avx2", "fma"}
ALDER_LAKE = HASWELL | {"avx_vnni"}
SKYLAKE_SP = HASWELL | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
ZEN4 = SKYLAKE_SP | {"avx512_vnni", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"avx_vnni", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}
GRANITE_RAPIDS = SAPPHIRE_RAPIDS | {"amx_fp16"}
ARROW_LAKE = ALDER_LAKE | {"avx_vnni_int8", "avx_ne_convert"}  # CPUID has them; /proc/cpuinfo does not list them


@pytest.mark.parametrize(
    ("flags", "cap", "expected"),
    [
        (HASWELL, None, "AVX2"),
        (ALDER_LAKE, None, "AVX2_VNNI"),
        (ARROW_LAKE, None, "AVX2_VNNI_2"),
        (ARROW_LAKE, "AVX2_VNNI", "AVX2_VNNI"),
        (ARROW_LAKE, "AVX512_CORE_FP16", "AVX2_VNNI"),  # the FP16 level includes AVX2_VNNI, not AVX2_VNNI_2
        (ALDER_LAKE, "AVX512_CORE", "AVX2"),  # AVX512_CORE and the levels up to BF16 do not include AVX2_VNNI
        (SKYLAKE_SP, None, "AVX512_CORE"),
        (ZEN4, None, "AVX512_CORE_BF16"),
        (ZEN4, "avx2", "AVX2"),
        (ZEN4, "AVX512_CORE", "AVX512_CORE"),
        (ZEN4, "AVX512_CORE_AMX", "AVX512_CORE_BF16"),
        (SAPPHIRE_RAPIDS, None, "AVX512_CORE_AMX"),
        (SAPPHIRE_RAPIDS, "AVX512_CORE_FP16", "AVX512_CORE_FP16"),
        (SAPPHIRE_RAPIDS, "AVX10_1_512", "AVX512_CORE_FP16"),
        (SAPPHIRE_RAPIDS, "AVX512_CORE_BF16", "AVX512_CORE_BF16"),
        (SAPPHIRE_RAPIDS, "AVX2", "AVX2"),
        (SAPPHIRE_RAPIDS, "AVX2_VNNI", "AVX2_VNNI"),
        (SAPPHIRE_RAPIDS - {"avx_vnni"}, None, "AVX512_CORE_BF16"),  # oneDNN's FP16 level needs AVX-VNNI too
        (GRANITE_RAPIDS, None, "AVX512_CORE_AMX_FP16"),
        (GRANITE_RAPIDS, "AVX10_1_512_AMX", "AVX512_CORE_AMX"),
        ({"sse4_1", "avx"}, "AVX2", "AVX"),
        ({"sse4_1"}, None, "SSE41"),
        (set(), None, None),
        (HASWELL, "ALL", "AVX2"),  # oneDNN's words for no cap: ALL, DEFAULT, or the variable set empty
        (SAPPHIRE_RAPIDS, "DEFAULT", "AVX512_CORE_AMX"),
        (SAPPHIRE_RAPIDS, "", "AVX512_CORE_AMX"),
        (HASWELL, "AVX10_9", "AVX2 (ONEDNN_MAX_CPU_ISA=AVX10_9 not known here)"),
    ],
)
def test_onednn_isa_is_the_highest_level_the_cpu_has_under_the_cap(flags, cap, expected):
    assert exact_mode.onednn_isa(flags, cap) == expected


# How oneDNN names each level in its verbose output (`onednn_verbose,info,cpu,isa:...`): every name of
# src/cpu/x64/cpu_isa_traits.cpp's isa_info_t::get_name() as the oneDNN inside TensorFlow 2.21 has them (read from
# libtensorflow_cc.so.2: no "(preview support)" suffixes, no AVX10.2 yet), and the level each stands for.
ONEDNN_VERBOSE_NAMES = {
    "Intel SSE4.1": "SSE41",
    "Intel AVX": "AVX",
    "Intel AVX2": "AVX2",
    "Intel AVX2 with Intel DL Boost": "AVX2_VNNI",
    "Intel AVX2 with Intel DL Boost, float16 and bfloat16 support": "AVX2_VNNI_2",
    "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions": "AVX512_CORE",
    "Intel AVX-512 with Intel DL Boost": "AVX512_CORE_VNNI",
    "Intel AVX-512 with Intel DL Boost and bfloat16 support": "AVX512_CORE_BF16",
    "Intel AVX-512 with Intel DL Boost and bfloat16 support on Ymm/Zmm": "AVX512_CORE_BF16",  # ONEDNN_CPU_ISA_HINTS
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support": "AVX512_CORE_FP16",  # (a trailing space)
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer "
    "support": "AVX512_CORE_AMX",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16, float16 and 8-bit "
    "integer support": "AVX512_CORE_AMX_FP16",
}


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or sys.platform != "linux",
    reason="the names of oneDNN's x86-64 kernels, in TensorFlow's Linux x86-64 library",
)
def test_the_verbose_names_are_the_ones_in_tensorflows_onednn():
    """The table above against the strings compiled into TensorFlow's library: a new oneDNN fails this first."""
    import tensorflow as tf

    library = Path(tf.__file__).parent / "libtensorflow_cc.so.2"
    with open(library, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as binary:
        for name in ONEDNN_VERBOSE_NAMES:
            as_compiled = name + (" " if ONEDNN_VERBOSE_NAMES[name] == "AVX512_CORE_FP16" else "")
            assert binary.find(as_compiled.encode() + b"\0") >= 0, name  # the whole C string


CHILD_ENV = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def child(code: str, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> str:
    result = subprocess.run(
        [*(prefix or []), sys.executable, "-c", code],
        env=os.environ | CHILD_ENV | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif("avx2" not in cpu.flags(), reason="needs an x86-64 CPU with AVX2")
def test_the_recorded_isa_is_the_one_onednn_reports_and_exact_mode_pins_it():
    probe = """
import json, sys
from fmnist import cpu, exact_mode
from fmnist.params.runtime import RuntimeParams
config = RuntimeParams(mode=sys.argv[1] if len(sys.argv) > 1 else "{mode}", threads=2)
exact_mode.pin(config)
import tensorflow as tf
exact_mode.configure_tensorflow(config)
tf.nn.conv2d(tf.ones((1, 8, 8, 1)), tf.ones((3, 3, 1, 2)), 1, "SAME").numpy()
print(json.dumps(exact_mode.facts(config)))
"""
    # Every level this CPU has, as a cap (exact mode pins its own: AVX2), and no cap.
    flags = cpu.flags()
    caps = [None, *(level for level, (_, needs) in exact_mode.ONEDNN_LEVELS.items() if needs <= flags)]
    for mode, mode_caps in (("native", caps), ("exact", [None, "AVX512_CORE"])):
        for cap in mode_caps:
            output = child(probe.format(mode=mode), {"ONEDNN_VERBOSE": "1", "ONEDNN_MAX_CPU_ISA": cap or ""})
            said = re.search(r"^onednn_verbose,.*,isa:(.*)$", output, re.MULTILINE).group(1).strip()
            facts = json.loads(output.strip().splitlines()[-1])
            assert said in ONEDNN_VERBOSE_NAMES, f"oneDNN's name {said!r} is not in this test's table"
            assert facts["onednn_isa"] == ONEDNN_VERBOSE_NAMES[said], (mode, cap)
            if mode == "exact":
                assert facts["onednn_isa"] == "AVX2"
                assert (facts["intra_op_threads"], facts["inter_op_threads"], facts["op_determinism"]) == (2, 1, True)
                assert re.search(r"^onednn_verbose,.*,nthr:2$", output, re.MULTILINE)


# A child process as the train stage starts one: pins, TensorFlow, then the default model's training params.
SETUP = """
import json
from fmnist import cpu, exact_mode
from fmnist.params.runtime import RuntimeParams
from fmnist.params.train import TrainParams
config = RuntimeParams(mode="{mode}", threads={threads})
exact_mode.pin(config)
import tensorflow as tf
from fmnist import training
from tests.conftest import synthetic_split
exact_mode.configure_tensorflow(config)
train_params = TrainParams(model="conv2_bn", epochs=1, batch_size=64, optimizer="adam", learning_rate=0.002,
    lr_schedule="cosine", warmup_fraction=0.0, weight_decay=0.0, dropout=0.15, label_smoothing=0.0, augment="flip",
    max_shift=0, random_erasing=0.0, lookahead_steps=0, whiten_init=False, dirac_init=False, batch_norm_images=0,
    seed=42, histogram_freq=0, distribute="auto")
"""

TRAIN = (
    SETUP
    + """
x, y = synthetic_split(600, seed=5)
model = training.compile_model(train_params, 500)
training.fit(model, train_params, (x[:500, ..., None], y[:500]), (x[500:, ..., None], y[500:]), None)
print(training.weights_sha256(model))
"""
)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("taskset") or cpu.usable_cores() < 2, reason="needs taskset, 2 cores")
@pytest.mark.skipif("avx512f" not in cpu.flags(), reason="needs a CPU with AVX-512 to change the ISA")
def test_exact_mode_gives_one_digest_where_the_defaults_give_several():
    """Other instruction sets and core counts, on this machine: what another CPU would change."""
    one_core = ["taskset", "-c", "0"]
    # What a user or another machine would change: the ISA cap (AVX-512 here, AVX2 on older CPUs), the cores.
    # AVX2 set by hand as well: without exact mode's own cap, the CPU's default and AVX512_CORE can give the same
    # float32 kernels (they did on a Sapphire Rapids), but AVX2's are others.
    # "" is oneDNN's default (every level the CPU has), also when the suite runs under an ONEDNN_MAX_CPU_ISA cap.
    exact_settings = [
        ({"ONEDNN_MAX_CPU_ISA": ""}, None),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, None),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, None),
        ({"ONEDNN_MAX_CPU_ISA": ""}, one_core),
    ]
    default = {"ONEDNN_MAX_CPU_ISA": ""}
    native_settings = [(default, None), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, None), (default, one_core)]
    exact = {child(TRAIN.format(mode="exact", threads=2), env, prefix).split()[-1] for env, prefix in exact_settings}
    native = {child(TRAIN.format(mode="native", threads=2), env, prefix).split()[-1] for env, prefix in native_settings}
    assert len(exact) == 1, exact
    assert len(native) == 3, native  # the settings do change the bits when nothing pins them


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("taskset") or cpu.usable_cores() < 2, reason="needs taskset, 2 cores")
def test_exact_mode_bits_follow_runtime_threads_not_the_cores_the_process_may_use():
    """The rule docs/platforms.md states: one `runtime.threads` gives one digest whether the process may use one core
    or two (the threads then share a core), and another thread count gives another (the work is split otherwise)."""
    one_core = ["taskset", "-c", "0"]
    digests = {
        (threads, cores): child(
            TRAIN.format(mode="exact", threads=threads), prefix=one_core[: 3 * (cores == 1)]
        ).split()[-1]
        for threads in (2, 4)
        for cores in (1, 2)
    }
    assert digests[2, 1] == digests[2, 2] and digests[4, 1] == digests[4, 2], digests
    assert digests[2, 2] != digests[4, 2]


def test_exact_mode_refuses_to_pin_too_late_and_native_mode_changes_nothing():
    import tensorflow  # noqa: F401  (as in any process that has loaded it)

    with pytest.raises(
        RuntimeError, match=r"^exact_mode\.pin\(\) in exact mode must run before TensorFlow is imported$"
    ):
        exact_mode.pin(RuntimeParams(mode="exact", threads=3), {})
    environ: dict[str, str] = {}
    exact_mode.pin(RuntimeParams(mode="native", threads=3), environ)
    assert environ == {}


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])  # as Linux and macOS, and as Windows name it
def test_pins_in_the_environment_and_is_quiet_on_a_cpu_it_promises(monkeypatch, capsys, machine):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(exact_mode.platform, "machine", lambda: machine)
    monkeypatch.setattr(exact_mode.cpu, "flags", lambda: frozenset({"sse4_2", "avx", "avx2", "fma"}))
    environ: dict[str, str] = {}
    exact_mode.pin(RuntimeParams(mode="exact", threads=3), environ)
    assert capsys.readouterr().err == ""
    assert environ == {  # each one is part of the same bits: none may go missing
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "TF_NUM_INTRAOP_THREADS": "3",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_DETERMINISTIC_OPS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "KERAS_BACKEND": "tensorflow",
    }


# Ops whose kernels use approximate instructions (RSQRTPS, RCPPS): their bits differ between CPU makes.
APPROXIMATE_OPS = {"Rsqrt", "RsqrtGrad", "Reciprocal", "ReciprocalGrad", "Inv", "InvGrad"}

# The ops that ran, after Grappler and the oneDNN rewrite, for one training step and one prediction.
EXECUTED_OPS = (
    SETUP
    + """
from tensorflow.python.eager import context
x, y = synthetic_split(64, seed=5)
model = training.compile_model(train_params, 64)
images, labels = next(iter(training.batches(train_params, x[..., None], y)))
context.context().enable_run_metadata()
tf.function(model.train_step)((images, labels))
tf.function(lambda x: model(x, training=False))(images)
metadata = context.context().export_run_metadata()
types = {{"optimized": set(), "executed": set()}}  # after Grappler; after the oneDNN rewrite too (what ran)
for graphs in metadata.function_graphs:
    for kind, graph_list in (("optimized", [graphs.post_optimization_graph]), ("executed", graphs.partition_graphs)):
        for graph in graph_list:
            types[kind] |= {{node.op for node in graph.node}}
            types[kind] |= {{node.op for function in graph.library.function for node in function.node_def}}
print(json.dumps({{kind: sorted(ops) for kind, ops in types.items()}}))
"""
)


@pytest.mark.slow
def test_exact_mode_trains_and_predicts_without_approximate_instructions():
    """What TensorFlow runs, not what the Python code says: Grappler rewrites x / sqrt(y) and 1 / y."""
    exact, native = (
        {k: set(v) for k, v in json.loads(child(EXECUTED_OPS.format(mode=mode, threads=2)).splitlines()[-1]).items()}
        for mode in ("exact", "native")
    )
    assert {"_MklNativeConv2D", "_MklMatMul", "Sqrt"} <= exact["executed"]
    assert not (exact["optimized"] | exact["executed"]) & APPROXIMATE_OPS
    # Batch norm in training runs as oneDNN's kernel (IEEE sqrt and division); TensorFlow's own takes rsqrt.
    assert {op for op in exact["executed"] if "BatchNorm" in op} == {
        "_MklNativeFusedBatchNormEx",  # fused with the ReLU that follows it by Grappler's remapper
        "_MklNativeFusedBatchNormGradV3",
    }
    assert native["executed"] & APPROXIMATE_OPS == {"Rsqrt", "RsqrtGrad"}  # batch norm, as TensorFlow computes it


@pytest.mark.parametrize(
    ("machine", "flags"),
    [("aarch64", {"asimd", "sve"}), ("x86_64", {"sse4_2", "avx"}), ("x86_64", {"sse4_2", "avx", "avx2"})],
)
def test_exact_mode_warns_on_a_cpu_it_cannot_promise_and_still_runs(monkeypatch, capsys, machine, flags):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as in a stage, before TensorFlow loads
    monkeypatch.setattr(exact_mode.platform, "machine", lambda: machine)
    monkeypatch.setattr(exact_mode.cpu, "flags", lambda: frozenset(flags))
    environ: dict[str, str] = {}
    exact_mode.pin(RuntimeParams(mode="exact", threads=2), environ)
    warning = capsys.readouterr().err
    assert warning.startswith(
        f"warning: runtime.mode = 'exact' gives the same bits on x86-64 CPUs with AVX2; this {machine} CPU is not one"
    )
    assert len(warning.splitlines()) == 1 and environ["TF_NUM_INTRAOP_THREADS"] == "2"


FUSED_AGAINST_KERAS = """
import json
import numpy as np
from fmnist import exact_mode
from fmnist.params.runtime import RuntimeParams
config = RuntimeParams(mode="exact", threads=2)
exact_mode.pin(config)
import keras, tensorflow as tf
exact_mode.configure_tensorflow(config)
exact_mode.configure_tensorflow(config)  # twice in one process: still one wrapper
fused_call = keras.layers.BatchNormalization.call
images = tf.constant(np.random.default_rng(3).normal(2.0, 3.0, (6, 5, 5, 16)), tf.float32)
upstream = tf.constant(np.random.default_rng(4).normal(0.0, 1.0, (6, 5, 5, 16)), tf.float32)  # d loss / d outputs
results = []
for call in (fused_call, fused_call.__wrapped__):  # exact mode's, then Keras' own ops (with exact mode's division)
    keras.layers.BatchNormalization.call = call
    layer = keras.layers.BatchNormalization(momentum=0.9)
    layer.build(images.shape)
    layer.gamma.assign(np.linspace(0.5, 2.0, 16))
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = layer(images, training=True)
        loss = tf.reduce_sum(outputs * upstream)
    gradients = tape.gradient(loss, [images, layer.gamma, layer.beta])
    values = [outputs, *gradients, layer.moving_mean, layer.moving_variance, layer(images, training=False)]
    results.append([np.asarray(value).tolist() for value in values])
print(json.dumps({"results": results, "wrapped_once": not hasattr(fused_call.__wrapped__, "__wrapped__")}))
"""


def test_exact_modes_fused_batch_norm_computes_what_keras_batch_norm_does():
    """Outputs, gradients (images, gamma, beta), moving mean and (biased) variance, and inference, to float error."""
    import numpy as np

    answer = json.loads(child(FUSED_AGAINST_KERAS).splitlines()[-1])
    fused, keras_own = answer["results"]
    names = ["outputs", "d images", "d gamma", "d beta", "moving mean", "moving variance", "inference"]
    for name, ours, theirs in zip(names, fused, keras_own, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-5, err_msg=name)
    assert answer["wrapped_once"]
