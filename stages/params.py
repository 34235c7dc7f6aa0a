"""params.yaml, read and validated in one place before any stage does heavy work.

Each stage calls `load()` and uses only its own sections; the schema below says what every
key means and what values are allowed, so a typo fails fast with the key named.

The file is parsed by DVC's own YAML reader (ruamel.yaml, YAML 1.2) and validated strictly
(no coercion: 12.0 is not an int, "yes" is not a bool), so a stage acts on exactly the values
DVC records in dvc.lock, and refuses whatever DVC refuses, with a one-line error.
"""

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from dvc.utils.serialize import YAMLFileCorruptedError, parse_yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from stages import paths
from stages.errors import StageError

# Model names understood by stages.model.build_model (kept in step by a test).
Architecture = Literal["seed", "conv2_bn", "conv3_bn"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Schedule = Literal["constant", "cosine"]
Distribute = Literal["auto", "none", "multi_worker"]
Augment = Literal["none", "flip"]
RuntimeMode = Literal["exact", "native"]


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lowercase hex digits (a SHA-256)")
    return value


def _source(value: str) -> str:
    if "://" not in value:
        return value  # a local folder
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (parses the port: raises on a bad one)
    except ValueError as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("must be a local folder or an http:// or https:// URL with a host")
    return value


Seed = Annotated[int, Field(ge=0, lt=2**32)]  # NumPy and TensorFlow seeds are 32-bit


class Section(BaseModel):
    # Unknown keys are errors: a misspelled knob must not be silently ignored. Strict: no value is coerced
    # (the stage must act on what DVC records), and NaN or infinity is no setting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DownloadParams(Section):
    sources: list[Annotated[str, Field(min_length=1), AfterValidator(_source)]] = Field(min_length=1)
    sha256: dict[str, Annotated[str, AfterValidator(_sha256)]]
    retries: int = Field(ge=0, le=10)
    timeout_s: float = Field(gt=0, le=3600)
    backoff_s: float = Field(ge=0, le=3600)

    @field_validator("sha256")
    @classmethod
    def _every_file(cls, value: dict[str, str]) -> dict[str, str]:
        expected = sorted(paths.RAW_FILES.values())
        if sorted(value) != expected:
            raise ValueError(f"must list exactly the files {expected}")
        return value


class PreprocessParams(Section):
    val_fraction: float = Field(gt=0, lt=1)
    seed: Seed


class TrainParams(Section):
    model: Architecture
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=60_000)
    optimizer: Optimizer
    learning_rate: float = Field(gt=0)
    lr_schedule: Schedule
    weight_decay: float = Field(ge=0, lt=1)
    dropout: float = Field(ge=0, lt=1)
    label_smoothing: float = Field(ge=0, lt=1)
    augment: Augment
    max_shift: int = Field(ge=0, le=14)
    seed: Seed
    histogram_freq: int = Field(ge=0)
    distribute: Distribute


class RuntimeParams(Section):
    mode: RuntimeMode
    threads: int = Field(ge=1, le=1024)


class EvaluateParams(Section):
    mirror_average: bool
    shift_average: bool


class ReviewParams(Section):
    max_accuracy_drop: float = Field(ge=0, le=1)


class Params(Section):
    download: DownloadParams
    preprocess: PreprocessParams
    train: TrainParams
    runtime: RuntimeParams
    evaluate: EvaluateParams
    review: ReviewParams


def _printable(text: str) -> str:
    """Keys and YAML snippets come from the file: escape what would break the one-line error."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _key(error: dict) -> str:
    return ".".join(_printable(str(part)) for part in error["loc"]) or "(top level)"


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
    value = repr(first["input"])
    value = value if len(value) <= 60 else value[:57] + "..."
    return f"{source}: {_key(first)} = {value}: {first['msg'].removeprefix('Value error, ')}"


def parse(raw: object, source: Path = paths.PARAMS) -> Params:
    if not isinstance(raw, dict):
        raise StageError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise StageError(_describe(error, source)) from None


def _yaml_problem(error: YAMLFileCorruptedError) -> str:
    cause = error.__cause__
    mark = getattr(cause, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return _printable(f"{getattr(cause, 'problem', None) or str(cause).splitlines()[0]}{where}")


def read_yaml(text: str, source: Path = paths.PARAMS) -> object:
    """The document as DVC reads it: what dvc.lock records is what this returns."""
    try:
        raw = parse_yaml(text, str(source))
    except YAMLFileCorruptedError as error:
        raise StageError(f"{source}: not valid YAML: {_yaml_problem(error)}") from None
    if raw == {}:
        raise StageError(f"{source}: is empty")
    return raw


def parse_text(text: str, source: Path = paths.PARAMS) -> Params:
    return parse(read_yaml(text, source), source)


def load(path: Path = paths.PARAMS) -> Params:
    try:
        text = path.read_text(encoding="utf-8")  # as DVC reads it
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run from the repository root)") from None
    except UnicodeDecodeError as error:
        raise StageError(f"{path}: not UTF-8 text (at byte offset {error.start})") from None
    except OSError as error:
        raise StageError(f"{path}: cannot read: {error.strerror}") from None
    return parse_text(text, path)


def _leaves(values: object, prefix: str) -> dict[str, object]:
    if not isinstance(values, dict):
        return {prefix: values}
    return {key: value for name, child in values.items() for key, value in _leaves(child, f"{prefix}.{name}").items()}


def check_unchanged(loaded: Params, stage: str, path: Path = paths.PARAMS) -> None:
    """Fail if a param `stage` declares in dvc.yaml changed in params.yaml while the stage ran.

    DVC reads those params again after the stage to write dvc.lock: an edit made meanwhile would be
    recorded as the params of a result that was produced with the old ones.
    """
    declared = read_yaml(paths.PIPELINE.read_text(), paths.PIPELINE)["stages"][stage]["params"]
    before, now = loaded.model_dump(), load(path).model_dump()
    for key in declared:
        section = key.split(".")[0]
        old, new = _leaves(before[section], section), _leaves(now[section], section)
        for name in sorted(old):
            if (name == key or name.startswith(f"{key}.")) and old[name] != new.get(name):
                raise StageError(
                    f"{path}: {name} changed from {old[name]!r} to {new.get(name)!r} while the stage ran;"
                    " dvc.lock would record the new value for a result made with the old one: run it again"
                )
