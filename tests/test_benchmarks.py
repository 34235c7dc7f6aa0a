import json
import subprocess
import sys

import pytest

from benchmarks.exact_pins import summarize
from benchmarks.profile_steps import layer_of, median_per_op
from fmnist.stage_runner import StageError
from tests.conftest import REPO, project_env

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


def test_recipe_settings_are_set_as_dvc_exp_run_sets_them_and_a_typo_is_refused_by_key():
    from benchmarks.recipes import recipe_params, with_settings

    raw = {"train": {"epochs": 24, "augment": "flip"}}
    assert with_settings(raw, "train.epochs=12 train.augment=alternate evaluate.x='y z'") == {
        "train": {"epochs": 12, "augment": "alternate"},
        "evaluate": {"x": "y z"},
    }
    assert recipe_params("train.epochs=12 train.whiten_init=true").train.epochs == 12
    with pytest.raises(StageError, match=r"^params.yaml: unknown key 'train\.epoch'$"):
        recipe_params("train.epoch=12")
    with pytest.raises(StageError, match=r"train\.epochs = 12\.5: Input should be a valid integer"):
        recipe_params("train.epochs=12.5")


def test_recipe_summary_gives_mean_sd_and_the_range_of_train_times():
    from benchmarks.recipes import summary

    runs = [
        {"seed": seed, "val_accuracy": val, "test_accuracy": test, "single_view_accuracy": 0.93, "train_seconds": s}
        for seed, val, test, s in [(42, 0.931, 0.940, 250.2), (1, 0.933, 0.942, 261.9), (2, 0.932, 0.941, 244.0)]
    ]
    assert summary(runs) == {
        "seeds": "42 1 2",
        "val_accuracy": "0.9320 ± 0.0010",
        "test_accuracy": "0.9410 ± 0.0010",
        "single_view_accuracy": "0.9300 ± 0.0000",
        "train_seconds": "244-262",
    }
    assert "test_accuracy" not in summary([{k: v for k, v in run.items() if "view" not in k and "test" not in k}
                                           for run in runs])  # fmt: skip


@pytest.mark.slow
def test_a_recipe_run_trains_and_scores_exactly_as_the_stages_do(tiny_run):
    """The default recipe's weights and test figures are the pipeline's own, bit for bit and to the digit."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.recipes", "", "train.epochs=1", "--seeds", "42"],
        cwd=tiny_run,
        env=project_env() | {"PYTHONPATH": str(REPO)},  # the benchmarks; the rest is the copy's own code
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    default, one_epoch = lines[0], lines[1]
    fingerprint = json.loads((tiny_run / "reports/fingerprint.json").read_text())
    metrics = json.loads((tiny_run / "reports/metrics.json").read_text())
    assert default["weights_sha256"] == fingerprint["weights_sha256"] != one_epoch["weights_sha256"]
    assert (default["test_accuracy"], default["single_view_accuracy"]) == (
        metrics["accuracy"],
        metrics["single_view_accuracy"],
    )
    assert [line["recipe"] for line in lines[2:]] == ["(the default params)", "train.epochs=1"]
