from benchmarks.exact_pins import summarize
from benchmarks.profile_steps import layer_of, median_per_op

LAYERS = ["rescale", "conv_1", "pool_1", "bn_1", "conv_2", "dense", "classifier"]


def test_profile_by_layer_puts_forward_and_gradient_ops_under_their_layer():
    scope = "StatefulPartitionedCall/gradient_tape/conv3_bn_1/conv_2_1/convolution/Conv2DBackpropFilter"
    assert layer_of(scope, LAYERS) == "conv_2"
    assert layer_of("StatefulPartitionedCall/conv3_bn_1/bn_1_1/batchnorm/sub", LAYERS) == "bn_1"
    assert layer_of("StatefulPartitionedCall/conv3_bn_1/dense_1/Relu", LAYERS) == "dense"
    assert layer_of("StatefulPartitionedCall/adamw/Mul_12", LAYERS) == "(other)"


def test_median_per_op_counts_an_op_missing_from_a_run_as_zero_there():
    runs = [{"ms_per_step": times} for times in ({"Conv2D": 3.0, "Neg": 1.0}, {"Conv2D": 1.0}, {"Conv2D": 2.0})]
    assert median_per_op(runs) == {"Conv2D": 2.0, "Neg": 0.0}


def test_exact_pins_summary_gives_each_variant_its_median_range_ratio_and_digests():
    runs = [
        {"variant": variant, "images_per_second": speed, "cpu_per_wall": 1.8, "digest": digest}
        for variant, speed, digest in [
            ("exact", 2400.0, "a"),
            ("native", 3000.0, "n"),
            ("exact", 2200.0, "a"),
            ("native", 3200.0, "n"),
            ("exact", 2600.0, "b"),
            ("native", 3100.0, "n"),
        ]
    ]
    exact, native = summarize(runs)
    assert (exact["variant"], exact["runs"]) == ("exact", 3)
    assert (exact["median"], exact["low"], exact["high"]) == (2400, 2200, 2600)
    assert exact["ratio"] == 2400 / 3100 and native["ratio"] == 1.0
    assert exact["digests"] == ["a", "b"] and native["digests"] == ["n"]
