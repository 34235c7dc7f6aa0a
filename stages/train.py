"""Stage `train`: fit the model named in params on the prepared arrays, log to DVCLive and TensorBoard.

Writes models/model.keras and its summary. DVCLive writes reports/training/ epoch by epoch
(per-step `dvc plots` files and metrics.json, which `dvc exp show` reads while the run goes on).
TensorBoard logs go to logs/fit/: scalars, histograms, the graph, the model summary and a grid
of sample inputs, all made reproducible (the same run, the same bytes). What only this machine
measured (epoch times, images/s, the CPU) goes to logs/timing/<start, UTC>/, no DVC output.
In a multi-worker run (train.distribute = multi_worker) every worker runs this stage with its
own TF_CONFIG and only the chief writes.
"""

import json
import tempfile
import time
from pathlib import Path

from fmnist import cpu, dataset, distribute, exact_mode, memory, package_lock, params, paths
from fmnist.atomic_outputs import staged_outputs
from fmnist.params.runtime import RuntimeParams
from fmnist.params.train import TrainParams
from fmnist.stage_runner import raise_if_stopped, run_stage


class Params(params.Section):  # what this stage reads: dvc.yaml lists the same
    train: TrainParams
    runtime: RuntimeParams


def main() -> None:
    loaded = params.load(Params)
    config = loaded.train
    if config.distribute == "multi_worker":
        distribute.read_tf_config()
    train = dataset.load_arrays(paths.TRAIN_ARRAYS)
    val = dataset.load_arrays(paths.VAL_ARRAYS)
    unlocked = package_lock.warn_if_unlocked("train")
    # TensorFlow takes seconds to load: only once params and data are known good.
    exact_mode.start_tensorflow(loaded.runtime, start_runtime=config.distribute != "multi_worker")
    from fmnist import tensorboard_logs, training

    strategy = distribute.strategy_for(config.distribute)
    chief = distribute.is_chief(strategy)
    started, stamp = time.perf_counter(), time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    with strategy.scope():
        model = training.compile_model(config, len(train[0]), train[0])
    if not distribute.on_gpus():  # before any output is touched: a batch too big is one line, not a SIGKILL
        memory.check_training(model, config, len(train[0]), len(val[0]), train[0][0].nbytes)
    if not chief:  # another worker of a multi-worker run: train in step, leave the outputs to the chief
        training.fit(model, config, train, val, None, strategy)
        with tempfile.TemporaryDirectory() as scratch:
            model.save(Path(scratch) / "model.keras")  # every worker saves: saving may need all of them
        print(f"train: worker done, weights sha256 {training.weights_sha256(model)}")
        return
    summary = training.model_summary(model)
    # Every output is written under a temporary name and published together only if training succeeds (DVCLive's
    # folder is written in place, for live views, with the previous one kept aside): a diverged, interrupted or
    # failed run leaves the previous model, logs and metrics as they were.
    with staged_outputs() as out:
        log_dir = out.folder(paths.FIT_LOGS)
        timing_dir = out.folder(paths.TIMING_LOGS / stamp, leftovers=".*.tmp")  # a killed run's: another start
        live = training.live_logger(out.live_folder(paths.TRAINING), model)
        tensorboard_logs.write_model_overview(model, log_dir / "train", summary, *train)
        raise_if_stopped()  # tracing the graph takes seconds: stop before the first epoch's first step
        history = training.fit(model, config, train, val, log_dir, strategy, live, timing_dir)
        train_seconds = time.perf_counter() - started
        training.check_finite(model, config)
        training.save_model(model, out.file(paths.MODEL))
        out.file(paths.MODEL_SUMMARY).write_text(summary)
        live.make_summary()
        fingerprint = {
            "weights_sha256": training.weights_sha256(model),
            **exact_mode.facts(loaded.runtime),
            **package_lock.facts(unlocked=unlocked),
        }
        out.file(paths.FINGERPRINT).write_text(json.dumps(fingerprint, indent=2) + "\n")
        tensorboard_logs.make_reproducible(log_dir)
        machine = f"{cpu.model()}, {cpu.usable_cores()} cores, {loaded.runtime.mode} mode"
        run = f"{machine}: {train_seconds:.1f} s; weights sha256 {fingerprint['weights_sha256']}"
        tensorboard_logs.write_text(timing_dir, "run", run)
        params.check_unchanged("train")
    print(f"train: {train_seconds:.1f}s, validation accuracy {history['val_accuracy'][-1]:.4f}")
    print(f"train: {loaded.runtime.mode} mode, weights sha256 {fingerprint['weights_sha256']}")


if __name__ == "__main__":
    run_stage(main, runs_tensorflow=True, memory_advice="try a smaller train.batch_size or train.batch_norm_images")
