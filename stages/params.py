"""params.yaml, read and validated in one place before any stage does heavy work.

Each stage calls `load()` and uses only its own section; the schema below says what every
key means and what values are allowed, so a typo fails fast with the key named.
"""

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from stages import paths
from stages.errors import StageError

# Model names understood by stages.model.build_model (kept in step by a test).
Architecture = Literal["seed", "conv2_bn"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Schedule = Literal["constant", "cosine"]
Distribute = Literal["auto", "none", "multi_worker"]
Augment = Literal["none", "flip"]
RuntimeMode = Literal["exact", "native"]


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lowercase hex digits (a SHA-256)")
    return value


class Section(BaseModel):
    # Unknown keys are errors: a misspelled knob must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DownloadParams(Section):
    sources: list[str] = Field(min_length=1)
    sha256: dict[str, Annotated[str, AfterValidator(_sha256)]]
    retries: int = Field(ge=0, le=10)
    timeout_s: float = Field(gt=0)
    backoff_s: float = Field(ge=0)

    def model_post_init(self, _context: object) -> None:
        expected = sorted(paths.RAW_FILES.values())
        if sorted(self.sha256) != expected:
            raise ValueError(f"sha256 must list exactly the files {expected}")


class PreprocessParams(Section):
    val_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)


class TrainParams(Section):
    model: Architecture
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: Optimizer
    learning_rate: float = Field(gt=0)
    lr_schedule: Schedule
    dropout: float = Field(ge=0, lt=1)
    label_smoothing: float = Field(ge=0, lt=1)
    augment: Augment
    seed: int = Field(ge=0)
    histogram_freq: int = Field(ge=0)
    distribute: Distribute


class RuntimeParams(Section):
    mode: RuntimeMode
    threads: int = Field(ge=1, le=1024)


class EvaluateParams(Section):
    mirror_average: bool


class ReviewParams(Section):
    max_accuracy_drop: float = Field(ge=0, le=1)


class Params(Section):
    download: DownloadParams
    preprocess: PreprocessParams
    train: TrainParams
    runtime: RuntimeParams
    evaluate: EvaluateParams
    review: ReviewParams


def _key(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _describe(error: ValidationError, source: Path) -> str:
    errors = error.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:  # a misspelling shows as an unknown key plus a missing one: name both
        missing = [_key(e) for e in errors if e["type"] == "missing"]
        hint = difflib.get_close_matches(_key(unknown[0]), missing, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{source}: unknown key '{_key(unknown[0])}'{suggestion}"
    first = errors[0]
    if first["type"] == "missing":
        return f"{source}: missing key '{_key(first)}'"
    return f"{source}: {_key(first)} = {first['input']!r}: {first['msg']}"


def parse(raw: object, source: Path = paths.PARAMS) -> Params:
    if not isinstance(raw, dict):
        raise StageError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise StageError(_describe(error, source)) from None


def load(path: Path = paths.PARAMS) -> Params:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as error:
        raise StageError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    return parse(raw, path)
