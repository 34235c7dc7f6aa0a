"""Plant single-line bugs in the code behind the project's promises and check that the tests aimed at each catch it.

    python -m tests.mutations [--only NAME ...]

Works in a scratch copy of the working tree (the repository's own files are never touched): first runs every
targeted test unmutated (they must pass, or a 'caught' means nothing), then, for each mutation, replaces exactly one
line, runs its tests and puts the line back. Prints a Markdown table: caught (a targeted test failed), MISSED (all
passed), SKIPPED (this machine cannot run them) or ERROR (they could not run), with seconds. Exits 1 unless every
mutation is caught. docs/development.md has the table of the last run.

A smoke list, picked by hand: `python -m tools.mutation` (mutmut) generates mutants nobody picked and scores every
module (docs/mutation.md).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str
    file: str
    line: str  # exactly one line of `file` holds this text
    mutated: str  # what it becomes
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "gate reads the head's limit",
        "a pull request cannot loosen its own gate",
        "tools/review.py",
        "max_drop = max_accuracy_drop(base)",
        "max_drop = max_accuracy_drop(head)",
        ("tests/test_report.py::test_a_pull_request_cannot_loosen_its_own_gate",),
    ),
    Mutation(
        "gate fails at exactly the limit",
        "a drop of exactly review.max_accuracy_drop passes",
        "tools/review.py",
        "if round((before - after) * 10_000) > round(max_drop * 10_000):",
        "if round((before - after) * 10_000) >= round(max_drop * 10_000):",
        ("tests/test_report.py::test_the_gate_allows_a_drop_of_exactly_the_limit_and_no_more",),
    ),
    Mutation(
        "staleness ignores params",
        "a changed params value marks the stage stale",
        "tools/review.py",
        'reasons += [f"params {key} {what}" for key, what in change.items()]',
        "reasons += []",
        ("tests/test_report.py::test_stale_stages_ignores_missing_data_but_not_code_params_or_commands",),
    ),
    Mutation(
        "digest of the first tensor only",
        "weights_sha256 covers every weight",
        "fmnist/training.py",
        "for weight in model.get_weights():",
        "for weight in model.get_weights()[:1]:",
        ("tests/test_train.py::test_the_digest_is_of_every_weight_in_order_and_each_one_counts",),
    ),
    Mutation(
        "exact mode without the ISA cap",
        "exact mode: the same bits whatever instruction set the CPU has",
        "fmnist/exact_mode.py",
        "ONEDNN_MAX_CPU_ISA=EXACT_ISA,",
        "# ONEDNN_MAX_CPU_ISA=EXACT_ISA,",
        ("tests/test_runtime.py::test_exact_mode_gives_one_digest_where_the_defaults_give_several",),
    ),
    Mutation(
        "exact mode with TensorFlow's rsqrt",
        "exact mode: no approximate instructions (their bits differ by CPU make)",
        "fmnist/exact_mode.py",
        "tf.nn.batch_normalization = _batch_normalization_without_rsqrt",
        "pass  # tf.nn.batch_normalization = _batch_normalization_without_rsqrt",
        ("tests/test_runtime.py::test_exact_mode_trains_and_predicts_without_approximate_instructions",),
    ),
    Mutation(
        "exact mode's batch norm unfused",
        "exact mode: batch norm in training runs as oneDNN's fused kernel",
        "fmnist/exact_mode.py",
        "_fuse_batch_norm_in_training(keras.layers.BatchNormalization)",
        "pass  # _fuse_batch_norm_in_training(keras.layers.BatchNormalization)",
        ("tests/test_runtime.py::test_exact_mode_trains_and_predicts_without_approximate_instructions",),
    ),
    Mutation(
        "fused batch norm's unbiased moving variance",
        "exact mode's batch norm computes what Keras' does, moving statistics included",
        "fmnist/exact_mode.py",
        "variance = variance * ((count - 1.0) / count)",
        "variance = variance",
        ("tests/test_runtime.py::test_exact_modes_fused_batch_norm_computes_what_keras_batch_norm_does",),
    ),
    Mutation(
        "divergence guard off",
        "a NaN loss fails the run at that step, nothing written",
        "fmnist/training.py",
        "if not math.isfinite(loss):",
        "if False:",
        ("tests/test_train.py::test_a_loss_that_becomes_nan_fails_the_run_at_that_step",),
    ),
    Mutation(
        "a lost stop signal still publishes",
        "staged outputs: a stopped stage publishes nothing",
        "fmnist/atomic_outputs.py",
        "raise_if_stopped()  # a stop signal whose exception TensorFlow swallowed",
        "pass  # a stop signal whose exception TensorFlow swallowed",
        ("tests/test_files.py::test_a_stop_signal_whose_exception_was_lost_still_publishes_nothing",),
    ),
    Mutation(
        "live folder not restored",
        "a failed run leaves DVCLive's previous folder",
        "fmnist/atomic_outputs.py",
        "                os.replace(previous, path)",
        "                pass",
        ("tests/test_files.py::test_a_live_folder_is_written_in_place_and_the_previous_comes_back_on_failure",),
    ),
    Mutation(
        "params: unknown keys ignored",
        "a misspelled knob is an error",
        "fmnist/params/__init__.py",
        'model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)',
        'model_config = ConfigDict(extra="ignore", frozen=True, strict=True, allow_inf_nan=False)',
        ("tests/test_params.py::test_misspelled_key_is_named",),
    ),
    Mutation(
        "params: values coerced",
        "a stage acts on exactly what dvc.lock records (12.0 is no epoch count)",
        "fmnist/params/__init__.py",
        'model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)',
        'model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)',
        ("tests/test_params.py::test_values_are_never_coerced",),
    ),
    Mutation(
        "params edited mid-run not put back",
        "a params edit while the stage runs is put back, so dvc.lock records what the run used",
        "fmnist/params/__init__.py",
        "    os.replace(staged, path)",
        "    pass",
        ("tests/test_params.py::test_an_edit_made_while_a_stage_ran_is_put_back_and_kept_aside",),
    ),
    Mutation(
        "download follows HTTPS to HTTP",
        "an HTTPS source stays on HTTPS",
        "stages/download.py",
        'if target not in ("http", "https") or (scheme == "https" and target != "https"):',
        'if target not in ("http", "https"):',
        ("tests/test_download.py::test_https_source_refuses_redirect_to_http",),
    ),
    Mutation(
        "download size limit one byte loose",
        "no source can send more than the file's size",
        "stages/download.py",
        "if received > max_bytes:",
        "if received > max_bytes + 1:",
        (
            "tests/test_download.py::test_a_source_sending_too_much_is_cut_off",
            "tests/test_download.py::test_the_size_limit_is_the_files_own_to_the_byte",
        ),
    ),
    Mutation(
        "unpacked size limit one byte loose",
        "no source can unpack to more than the file's size",
        "stages/download.py",
        "if max_bytes is not None and size > max_bytes:",
        "if max_bytes is not None and size > max_bytes + 1:",
        (
            "tests/test_download.py::test_a_gzip_bomb_is_refused_without_unpacking_it_all",
            "tests/test_download.py::test_the_unpacked_size_limit_is_the_files_own_to_the_byte",
        ),
    ),
    Mutation(
        "predict never negates",
        "a product photo (dark on light) becomes a Fashion-MNIST image (light on black)",
        "tools/predict.py",
        "if background >= 128:  # dark object on a light background",
        "if background > 255:  # dark object on a light background",
        ("tests/test_predict.py::test_a_product_photo_is_negated_trimmed_fitted_and_centred",),
    ),
    Mutation(
        "evaluate without the shifted views",
        "evaluate averages the 10 views it says",
        "fmnist/prediction.py",
        "moves = ONE_PIXEL_SHIFTS if shift_average else []",
        "moves = []",
        ("tests/test_evaluate.py::test_views_are_the_image_first_then_its_mirror_and_moves",),
    ),
    Mutation(
        "model file with memory addresses",
        "the same weights give the same model.keras bytes (a reproduction changes no hash in dvc.lock)",
        "fmnist/training.py",
        'elif entry.filename == "config.json":',
        "elif False:",
        ("tests/test_train.py::test_the_same_weights_saved_by_two_processes_are_the_same_file",),
    ),
    Mutation(
        "the lock check blind",
        "a run names each package installed at another version than the lock's",
        "fmnist/package_lock.py",
        "if installed != version:",
        "if False:",
        ("tests/test_lock.py::test_a_version_other_than_the_locked_one_is_named",),
    ),
    Mutation(
        "batch norm keeps Keras' moving averages",
        "each validation and the saved model use batch norm statistics of the current weights",
        "fmnist/training.py",
        "if config.batch_norm_images:  # the split is shuffled: its first images are a random sample",
        "if False:",
        ("tests/test_train.py::test_each_validation_uses_the_batch_norm_statistics_of_the_weights_it_validates",),
    ),
    Mutation(
        "batch norm statistics per image, not per position",
        "batch norm statistics are those of the sample, exactly",
        "fmnist/training.py",
        "count = sum(len(value) for value in values)",
        "count = len(images)",
        ("tests/test_train.py::test_batch_norm_statistics_are_those_of_the_sample_under_the_current_weights",),
    ),
    Mutation(
        "random erasing at a random rate below p",
        "random_erasing: p erases a share p of the training images",
        "fmnist/training.py",
        "factor=(config.random_erasing,) * 2, fill_value=0",
        "factor=(0.0, config.random_erasing), fill_value=0",
        ("tests/test_train.py::test_random_erasing_blacks_out_one_rectangle_of_about_that_share_of_images",),
    ),
]


def scratch_copy(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked-not-ignored files), without DVC outputs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[str, float]:
    """'passed', 'failed', 'skipped' (nothing ran: this machine cannot run them) or 'error N' (pytest's exit)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-n", "0", "-x", "-q", "-p", "no:cacheprovider", *tests]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode == 0:
        outcome = "passed" if " passed" in summary else "skipped"
    else:
        outcome = "failed" if result.returncode == 1 else f"error {result.returncode}"
    return outcome, time.perf_counter() - started


def apply(root: Path, mutation: Mutation) -> str:
    path = root / mutation.file
    text = path.read_text()
    lines = [line for line in text.splitlines() if mutation.line in line]
    if len(lines) != 1:
        raise SystemExit(f"error: {mutation.name}: {mutation.file} has {len(lines)} lines holding {mutation.line!r}")
    path.write_text(text.replace(mutation.line, mutation.mutated, 1))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", metavar="NAME", help="run only the mutations with these names")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutations-") as scratch:
        root = Path(scratch)
        scratch_copy(root)
        outcome, seconds = run_tests(root, tuple(sorted({test for m in chosen for test in m.tests})))
        if outcome != "passed":
            raise SystemExit(f"error: the targeted tests do not pass without any mutation ({outcome})")
        print(f"baseline: every targeted test passes unmutated ({seconds:.0f} s)\n", file=sys.stderr)
        print("| mutation | promise | file | result | seconds |\n| --- | --- | --- | --- | ---: |")
        missed = 0
        for mutation in chosen:
            original = apply(root, mutation)
            try:
                outcome, seconds = run_tests(root, mutation.tests)
            finally:
                (root / mutation.file).write_text(original)
            result = {"failed": "caught", "passed": "MISSED", "skipped": "SKIPPED (not on this CPU)"}.get(
                outcome, f"ERROR ({outcome})"
            )
            missed += result != "caught"
            print(
                f"| {mutation.name} | {mutation.promise} | `{mutation.file}` | {result} | {seconds:.0f} |", flush=True
            )
    print(f"\n{len(chosen) - missed} of {len(chosen)} caught in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
