"""Every file the pipeline reads or writes, declared once (dvc.yaml names the same paths)."""

from pathlib import Path

PIPELINE = Path("dvc.yaml")
PIPELINE_LOCK = Path("dvc.lock")  # what each stage last ran with: its deps', params' and outputs' hashes
PARAMS = Path("params.yaml")
LOCK = Path("requirements.txt")  # every package, pinned with hashes (from requirements.in)

RAW_DIR = Path("data/raw")
# The four canonical Fashion-MNIST files, by role.
RAW_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

PREPARED_DIR = Path("data/prepared")
TRAIN_ARRAYS = PREPARED_DIR / "train.npz"
VAL_ARRAYS = PREPARED_DIR / "val.npz"
TEST_ARRAYS = PREPARED_DIR / "test.npz"

MODEL = Path("models/model.keras")
MODEL_SUMMARY = Path("models/summary.txt")
LOGS = Path("logs")  # tensorboard --logdir logs
FIT_LOGS = LOGS / "fit"  # train: runs fit/train and fit/validation
EVAL_LOGS = LOGS / "evaluate"  # evaluate: test images, metrics and the run's hparams
# train: one run per training, named by its start (UTC), with what only that machine measured (epoch times,
# images/s, the CPU); no DVC output, so a reproduction on another machine changes no hash.
TIMING_LOGS = LOGS / "timing"

# Where stages write their outputs before renaming them into place: one folder per process, out of TensorBoard's and
# DVC's view (fmnist.atomic_outputs); .dvc/tmp is DVC's own scratch folder, ignored by git.
STAGING = Path(".dvc/tmp/staging")

REPORTS = Path("reports")
SAMPLES_PNG = REPORTS / "samples.png"
# DVCLive's folder, written epoch by epoch while train runs (what `dvc exp show` and VS Code show live):
# plots/metrics/{train,eval}/<metric>.tsv per step, metrics.json with the latest values and the step.
TRAINING = REPORTS / "training"
TRAINING_METRICS = TRAINING / "metrics.json"
FINGERPRINT = REPORTS / "fingerprint.json"  # weights digest and what decided the bits
METRICS = REPORTS / "metrics.json"
CONFUSION_CSV = REPORTS / "confusion.csv"
CONFUSION_PNG = REPORTS / "confusion.png"
