"""Training with Keras and TensorBoard: what the train stage runs once its inputs are known good."""

import hashlib
import io
import json
import math
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback
from scmrepo.exceptions import SCMError

from fmnist import tensorboard_logs
from fmnist.batches import StopOnSignal, in_batches, without_autotune
from fmnist.dataset import CLASS_NAMES
from fmnist.model import build_model
from fmnist.params.train import TrainParams
from fmnist.stage_runner import StageError


class EpochStats(keras.callbacks.Callback):
    """Adds each epoch's learning rate to the logs (TensorBoard and DVCLive log it); keeps each epoch's wall time
    (validation included) and training throughput apart, in `times` and, given a folder, in a TensorBoard run
    of their own.

    Times are measurements of one machine: in the logs they would make every reproduction's TensorBoard and DVCLive
    files differ. Their run (logs/timing/<start>) is no DVC output and keeps every run made in the workspace.
    """

    def __init__(self, train_images: int, timing_dir: Path | None = None):
        super().__init__()
        self.train_images, self.timing_dir = train_images, timing_dir
        self.times: dict[str, list[float]] = {"seconds": [], "images_per_second": []}

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(str(self.timing_dir)) if self.timing_dir else None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.training_seconds = None

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training part is over
        if self.training_seconds is None:
            self.training_seconds = time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        self.times["seconds"].append(seconds)
        self.times["images_per_second"].append(self.train_images / (self.training_seconds or seconds))
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        if self.writer is not None:
            with self.writer.as_default():  # TensorBoard tags as Keras would name them
                for name, values in self.times.items():
                    tf.summary.scalar(f"epoch_{name}", values[-1], step=epoch)
            self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


class BatchNormStatistics(keras.callbacks.Callback):
    """Before each validation, sets every batch norm layer's moving mean and variance to the exact statistics of a
    fixed sample of training images under the weights as they are (Wu and Johnson's "precise BN").

    Keras' moving averages (momentum 0.99) trail the weights by about 100 steps and start at mean 0, variance 1: at
    188 steps an epoch the model scored 0.12 on validation after epoch 1 while training at 0.81, and a 1-epoch run
    gave a useless model. Layer by layer, in inference mode, so each layer sees what the next ones will at test time.
    """

    def __init__(self, images: np.ndarray, batch_size: int):
        super().__init__()
        self.images, self.batch_size = images, batch_size
        self.segments: list[Segment] | None = None

    def on_test_begin(self, logs=None):  # fit() validates at each epoch's end: the last one leaves the saved model's
        self.segments = self.segments or batch_norm_segments(self.model)  # traced once per run
        set_batch_norm_statistics(self.segments, self.images, self.batch_size)


Segment = tuple[tf.types.experimental.PolymorphicFunction, keras.layers.BatchNormalization]


def batch_norm_segments(model: keras.Model) -> list[Segment]:
    """(the layers from the previous batch norm up to this one, as one graph; this batch norm) for each, in order."""
    segments, start = [], 0
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.BatchNormalization):

            def forward(images, layers=tuple(model.layers[start:index])):
                for previous in layers:
                    images = previous(images, training=False)
                return images

            segments.append((tf.function(forward), layer))
            start = index
    return segments


def set_batch_norm_statistics(segments: list[Segment], images: np.ndarray, batch_size: int) -> None:
    """Sets each batch norm layer's statistics in turn, from what it receives with the earlier ones already set; only
    one layer's inputs are held at a time (each chunk goes through the layers between two batch norms at once)."""
    chunks = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    for forward, norm in segments:
        chunks = [forward(chunk).numpy() for chunk in chunks]
        values = [chunk.reshape(-1, chunk.shape[-1]) for chunk in chunks]  # (positions, channels)
        count = sum(len(value) for value in values)
        mean = sum(value.sum(axis=0, dtype=np.float64) for value in values) / count
        variance = sum(np.square(value - mean).sum(axis=0) for value in values) / count  # biased, as Keras
        norm.moving_mean.assign(mean.astype(np.float32))
        norm.moving_variance.assign(variance.astype(np.float32))


EXPLODED = 100  # an epoch's mean loss this many times the first step's (about ln 10 = 2.3) has exploded


def diverged(what: str, where: str, config: TrainParams) -> StageError:
    return StageError(
        f"training diverged at {where}: {what}; try a lower train.learning_rate (now {config.learning_rate:g})"
    )


def check_finite(model: keras.Model, config: TrainParams, where: str = "the last step") -> None:
    """NaN or infinite weights make a model that predicts one class for everything: never save one."""
    for weight in model.weights:
        if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
            raise diverged(f"weight {weight.path} is not finite", where, config)


class DivergenceGuard(keras.callbacks.Callback):
    """Fails the run at the first non-finite loss (every step) or weight (every epoch), or when the loss that
    exploded has not come back down by the end; warns (log and TensorBoard) when it explodes.

    Keras' TerminateOnNaN only stops training, and the run would then save the broken model and
    report its metrics as a result. Raising StageError makes the stage exit 1 with nothing written.
    """

    def __init__(self, config: TrainParams, steps_per_epoch: int, log_dir: Path | None):
        super().__init__()
        self.config, self.steps_per_epoch, self.log_dir = config, steps_per_epoch, log_dir
        self.first_loss: float | None = None
        self.last: tuple[int, float, float] | None = None  # epoch, its loss, the first step's
        self.warned = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # the epoch's running mean: non-finite from the first bad step on
        if self.first_loss is None:
            self.first_loss = loss
        if not math.isfinite(loss):
            where = f"epoch {self.epoch}, step {batch + 1} of {self.steps_per_epoch}"
            raise diverged(f"the training loss is {loss}", where, self.config)

    def on_epoch_end(self, epoch, logs=None):
        where = f"the end of epoch {epoch + 1}"
        if not math.isfinite(logs["loss"]):  # the multi-worker loop reports per epoch only
            raise diverged(f"the training loss is {logs['loss']}", where, self.config)
        check_finite(self.model, self.config, where)
        first = self.first_loss if self.first_loss is not None else logs["loss"]
        self.last = (epoch + 1, logs["loss"], first)
        if not self.warned and logs["loss"] > EXPLODED * first:
            self.warned = True
            self.warn(
                f"the training loss exploded: {logs['loss']:.4g} in epoch {epoch + 1}, over {EXPLODED}x the first"
                f" step's {first:.4g}; the run goes on and fails if it is still that high at the end;"
                f" try a lower train.learning_rate (now {self.config.learning_rate:g})",
                epoch + 1,
            )

    def on_train_end(self, logs=None):
        if self.last is None:
            return
        epoch, loss, first = self.last
        if loss > EXPLODED * first:  # never came back down: its model is no result
            what = f"the training loss is still {loss:.4g}, over {EXPLODED}x the first step's {first:.4g}"
            raise diverged(what, f"the end of epoch {epoch}", self.config)

    def warn(self, message: str, epoch: int) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)
        if self.log_dir is not None:  # TensorBoard's Text tab, beside the curves that show it
            tensorboard_logs.write_text(self.log_dir / "train", "warnings", message, step=epoch)


def learning_rate(config: TrainParams, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    steps = config.epochs * steps_per_epoch
    warmup = round(config.warmup_fraction * steps)
    if warmup:
        # Keras' cosine decay with a linear warm-up from 0 in front; alpha 1 (never below the peak) holds it constant.
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=steps - warmup,
            alpha=0.0 if config.lr_schedule == "cosine" else 1.0,
            warmup_target=config.learning_rate,
            warmup_steps=warmup,
        )
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    return config.learning_rate


def optimizer(config: TrainParams, train_images: int) -> keras.optimizers.Optimizer:
    rate = learning_rate(config, steps_per_epoch=-(-train_images // config.batch_size))
    # Keras applies decoupled weight decay in every optimizer (AdamW is Adam with it on): 0 leaves the weights as
    # they are (w - w * 0 * lr is w, bit for bit).
    if config.optimizer == "nesterov":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    return keras.optimizers.get(
        {"class_name": config.optimizer, "config": {"learning_rate": rate, "weight_decay": config.weight_decay}}
    )


WHITENING_EPSILON = 5e-4  # airbench's: keeps the filters of the near-constant patch directions finite


WHITENING_IMAGES = 4096  # the split is shuffled: its first images are a random sample


def patch_whitening(images: np.ndarray, size: int = 3) -> np.ndarray:
    """Filters (size, size, 1, 2 x size²) that whiten the images' size x size patches: each eigenvector of the
    patches' (uncentred) covariance over the square root of its eigenvalue, and its negative (ReLU keeps one side)."""
    covariance = np.zeros((size * size, size * size))
    sample = images[:WHITENING_IMAGES, ..., 0]
    for start in range(0, len(sample), 256):  # 256 images' patches at a time: 12 MiB, not 100s
        pixels = sample[start : start + 256].astype(np.float64) / 255  # as the model's Rescaling layer sees them
        patches = np.lib.stride_tricks.sliding_window_view(pixels, (size, size), axis=(1, 2)).reshape(-1, size * size)
        covariance += patches.T @ patches
    count = len(sample) * (sample.shape[1] - size + 1) * (sample.shape[2] - size + 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance / count)
    scaled = eigenvectors / np.sqrt(eigenvalues + WHITENING_EPSILON)  # columns: one filter each
    filters = np.concatenate([scaled, -scaled], axis=1)
    return filters.reshape(size, size, 1, -1).astype(np.float32)


def initialize(model: keras.Model, config: TrainParams, images: np.ndarray | None) -> None:
    """airbench's initializations, each where params ask for it: the first convolution's first filters as the
    patch whitening of the training images (from `images`, a sample of them), and each later convolution's first
    filters as the identity on its input channels (Dirac), so a fresh deeper block passes its input on."""
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if config.whiten_init:
        if images is None:
            raise ValueError("whiten_init needs training images")
        kernel = convolutions[0].kernel
        whitening = patch_whitening(images)[..., : kernel.shape[-1]]
        kernel.assign(np.concatenate([whitening, keras.ops.convert_to_numpy(kernel)[..., whitening.shape[-1] :]], -1))
    if config.dirac_init:
        for layer in convolutions[1:]:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            height, width, inputs, outputs = kernel.shape
            identity = min(inputs, outputs)
            kernel[..., :identity] = 0
            kernel[height // 2, width // 2, np.arange(identity), np.arange(identity)] = 1
            layer.kernel.assign(kernel)


def compile_model(config: TrainParams, train_images: int, images: np.ndarray | None = None) -> keras.Model:
    """The model params name, seeded, initialized and compiled. images: training images, for `whiten_init`."""
    keras.utils.set_random_seed(config.seed)  # weights, shuffling and dropout all follow the seed
    model = build_model(config.model, config.dropout)
    initialize(model, config, images)
    if config.label_smoothing:  # smoothing needs one-hot targets: fit() one-hot encodes the labels
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=optimizer(config, train_images), loss=loss, metrics=["accuracy"])
    return model


def targets(labels: np.ndarray, config: TrainParams) -> np.ndarray:
    return keras.utils.to_categorical(labels, len(CLASS_NAMES)) if config.label_smoothing else labels


def batches(config: TrainParams, images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """Training batches in a fresh seeded order each epoch; with `augment: flip`, half the images mirrored; with
    `augment: alternate`, every epoch's batches in one dataset, each image mirrored in every other epoch; with
    `max_shift: N`, each image moved by up to N pixels each way; with `random_erasing: p`, a random rectangle of each
    image blacked out with probability p.

    The flip is Keras' RandomFlip layer run in the input pipeline rather than in the model: it applies
    to training only by construction, stays out of the saved model, and costs almost nothing there.
    """
    images, labels = tf.constant(images), tf.constant(targets(labels, config))
    if config.augment == "alternate":
        dataset = alternating_flips(config, images, labels)
    else:
        # Shuffle indices and gather whole batches: per-image tf.data elements cost more than the step at batch 32.
        order = tf.data.Dataset.range(len(images)).shuffle(len(images), seed=config.seed).batch(config.batch_size)
        dataset = order.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    if config.augment == "flip":
        flip = keras.layers.RandomFlip("horizontal", seed=config.seed)
        dataset = dataset.map(lambda x, y: (tf.cast(flip(x, training=True), x.dtype), y))
    if config.max_shift:  # whole pixels (nearest), each image its own shift, the border filled with black
        factor = config.max_shift / images.shape[1]
        shift = keras.layers.RandomTranslation(
            factor, factor, fill_mode="constant", interpolation="nearest", seed=config.seed + 1
        )
        dataset = dataset.map(lambda x, y: (tf.cast(shift(x, training=True), x.dtype), y))
    if config.random_erasing:  # a rectangle of 14-57% of each side's length, blacked out (Zhong et al. 2017)
        erase = keras.layers.RandomErasing(
            factor=(config.random_erasing,) * 2, fill_value=0, value_range=(0, 255), seed=config.seed + 2
        )
        dataset = dataset.map(lambda x, y: (tf.cast(erase(x, training=True), x.dtype), y))
    return without_autotune(dataset.prefetch(2))  # 2 batches ready: the pipeline costs ~2% of a step


def alternating_flips(config: TrainParams, images: tf.Tensor, labels: tf.Tensor) -> tf.data.Dataset:
    """All epochs' batches (airbench's alternating flip): each epoch in its own seeded order, each image mirrored in
    the first epoch with probability 1/2 and then in every other epoch, so that any two epochs in a row show it both
    ways. One dataset over all epochs: the epoch number is an element, not state a callback would have to set."""
    count = len(images)
    first = tf.random.stateless_uniform([count], seed=[config.seed, 0]) < 0.5  # mirrored in epoch 0

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=[config.seed, epoch + 1])
        mirrored = tf.math.logical_xor(first, tf.math.floormod(epoch, 2) == 1)

        def gather(index):
            batch = tf.gather(images, index)
            return tf.where(tf.gather(mirrored, index)[:, None, None, None], batch[:, :, ::-1], batch), tf.gather(
                labels, index
            )

        return tf.data.Dataset.from_tensor_slices(order).batch(config.batch_size).map(gather)

    return tf.data.Dataset.range(config.epochs).flat_map(epoch_batches)


class Lookahead(keras.callbacks.Callback):
    """Lookahead (Zhang et al. 2019): every `steps` steps, and at each epoch's end, a slow copy of the weights moves
    `alpha` of the way to the trained ones, and training goes on from the slow copy. Validation and the saved model
    see the slow weights."""

    def __init__(self, steps: int, steps_per_epoch: int, alpha: float = 0.5):
        super().__init__()
        self.steps, self.steps_per_epoch, self.alpha = steps, steps_per_epoch, alpha

    def on_train_begin(self, logs=None):
        self.slow = [keras.ops.convert_to_numpy(weight) for weight in self.model.trainable_weights]
        self.since = 0

    def on_train_batch_end(self, batch, logs=None):
        self.since += 1
        if self.since == self.steps or batch + 1 == self.steps_per_epoch:
            for slow, weight in zip(self.slow, self.model.trainable_weights):
                slow += self.alpha * (keras.ops.convert_to_numpy(weight) - slow)
                weight.assign(slow)
            self.since = 0


class PipelineLive(Live):
    """DVCLive, also in a Git repository with no commit yet (`git init && dvc init && dvc repro`)."""

    def _init_dvc(self):
        try:
            super()._init_dvc()
        except SCMError:  # DVCLive 3.49.1 asks for HEAD before its own no-commits check; its defaults hold
            pass


def live_logger(folder: Path, model: keras.Model) -> Live:
    """DVCLive inside the project's own pipeline: dvc.yaml stays hand-written (DVCLive must not rewrite it), no
    experiment or report of its own. DVCLiveCallback logs every epoch's metrics as train/* and eval/*."""
    live = PipelineLive(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
    live.summary["parameters"] = model.count_params()
    return live


def callbacks(
    config: TrainParams, train_images: np.ndarray, log_dir: Path | None, live: Live | None, stats: EpochStats
) -> list[keras.callbacks.Callback]:
    # EpochStats comes first so TensorBoard logs the learning rate too; the guard fails the run before TensorBoard
    # logs NaN.
    steps = -(-len(train_images) // config.batch_size)
    chosen: list[keras.callbacks.Callback] = [StopOnSignal(), stats, DivergenceGuard(config, steps, log_dir)]
    if config.lookahead_steps:  # before batch norm's statistics: they are taken under the slow weights
        chosen.append(Lookahead(config.lookahead_steps, steps))
    if config.batch_norm_images:  # the split is shuffled: its first images are a random sample
        chosen.append(BatchNormStatistics(train_images[: config.batch_norm_images], config.batch_size))
    if log_dir is not None:
        chosen.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=config.histogram_freq))
    if live is not None:
        chosen.append(DVCLiveCallback(live=live))
    return chosen


def fit(
    model: keras.Model,
    config: TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    log_dir: Path | None,
    strategy: tf.distribute.Strategy | None = None,
    live: Live | None = None,
    timing_dir: Path | None = None,
) -> dict[str, list[float]]:
    """The history: each epoch's logs (loss, accuracy, val_*, learning_rate), its `seconds` and `images_per_second`."""
    stats = EpochStats(len(train[0]), timing_dir)
    chosen = callbacks(config, train[0], log_dir, live, stats)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        history = fit_across_workers(model, strategy, config, train, val, chosen)
    else:
        history = fit_on_one_worker(model, config, train, val, chosen)
    return history | stats.times


def fit_on_one_worker(
    model: keras.Model,
    config: TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    chosen: list[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    history = model.fit(
        batches(config, *train),
        shuffle=False,  # batches() shuffles, seeded
        epochs=config.epochs,
        # alternating flips: one dataset holds all epochs' batches
        steps_per_epoch=-(-len(train[0]) // config.batch_size) if config.augment == "alternate" else None,
        validation_data=in_batches((val[0], targets(val[1], config)), config.batch_size),
        callbacks=chosen,
        verbose=2,
    )
    return history.history


def fit_across_workers(
    model: keras.Model,
    strategy: tf.distribute.MultiWorkerMirroredStrategy,
    config: TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    chosen: list[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    """What model.fit does, as a loop of strategy.run over the model's own train_step.

    Keras 3's model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585). Its
    train_step works inside strategy.run: the loss is scaled for the global batch and gradients
    are all-reduced across workers, so every worker ends with the same weights.
    """
    if config.augment == "alternate":
        raise StageError("train.augment = 'alternate': not with train.distribute = 'multi_worker'; use 'flip'")
    options = tf.data.Options()  # every worker reads the same arrays and takes its share of each batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    distributed = strategy.experimental_distribute_dataset(batches(config, *train).with_options(options))

    @tf.function
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))

    @tf.function
    def predict(images):  # this worker's copy of the (identical) weights: no communication
        return model(images, training=False)

    callback_list = keras.callbacks.CallbackList(
        chosen, add_history=True, add_progbar=True, model=model,
        verbose=2, epochs=config.epochs, steps=-(-len(train[0]) // config.batch_size),
    )  # fmt: skip
    val_targets = targets(val[1], config)
    callback_list.on_train_begin()
    for epoch in range(config.epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for batch in distributed:
            train_step(batch)
        logs = {name: float(value) for name, value in model.get_metrics_result().items()}
        callback_list.on_test_begin()
        probabilities = np.concatenate([predict(val[0][i : i + 1000]).numpy() for i in range(0, len(val[0]), 1000)])
        logs["val_loss"] = float(model.loss(val_targets, probabilities))
        logs["val_accuracy"] = float(np.mean(probabilities.argmax(axis=1) == val[1]))
        callback_list.on_test_end()
        callback_list.on_epoch_end(epoch, logs)
    callback_list.on_train_end()
    return model.history.history


def weights_sha256(model: keras.Model) -> str:
    """A digest of every weight's bytes: equal digests mean bitwise-identical models (file hashes differ)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _numbered_in_order(config: object, numbers: dict[int, int]) -> object:
    """The config with each `shared_object_id` (Keras writes the Python id() of an object that several layers share,
    a memory address) replaced by 1, 2, ... in order of first appearance: the same sharing, the same bytes."""
    if isinstance(config, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == "shared_object_id"
            else _numbered_in_order(value, numbers)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_numbered_in_order(value, numbers) for value in config]
    return config


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save`, without what makes identical weights give other bytes: the time Keras records in the file's
    metadata.json (`date_saved`), the memory addresses it writes into config.json as `shared_object_id`, and the zip
    entries' times. Same weights, same file, so a reproduction leaves the model's hash in dvc.lock and the DVC
    cache as they were."""
    model.save(path)
    with zipfile.ZipFile(path) as saved:
        entries = [(entry, saved.read(entry)) for entry in saved.infolist()]
    with zipfile.ZipFile(path, "w") as rewritten:
        for entry, data in entries:
            if entry.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif entry.filename == "config.json":
                data = json.dumps(_numbered_in_order(json.loads(data), {})).encode()
            fixed = zipfile.ZipInfo(entry.filename, date_time=(1980, 1, 1, 0, 0, 0))  # the zip format's earliest
            fixed.compress_type, fixed.external_attr = entry.compress_type, entry.external_attr
            rewritten.writestr(fixed, data)


def model_summary(model: keras.Model) -> str:
    lines = io.StringIO()
    model.summary(print_fn=lambda line, **_: lines.write(line + "\n"))
    return lines.getvalue()
