"""params.yaml, read and validated in one place before any stage does heavy work.

Each stage declares the sections it reads as a `Section` of sections and calls `load()` with it; each
section's schema (fmnist/params/<section>.py) says what every key means and what values are allowed,
so a typo fails fast with the key named.

The file is parsed by DVC's own YAML reader (ruamel.yaml, YAML 1.2) and validated strictly
(no coercion: 12.0 is not an int, "yes" is not a bool), so a stage acts on exactly the values
DVC records in dvc.lock, and refuses whatever DVC refuses, with a one-line error.
"""

import difflib
from pathlib import Path
from typing import Annotated, TypeVar

from dvc.utils.serialize import YAMLFileCorruptedError, parse_yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fmnist import paths
from fmnist.errors import StageError

# Every section params.yaml may have. Each has its own schema module beside this one (fmnist/params/<section>.py),
# so editing one section's schema re-runs only the stages that read that section.
SECTIONS = ("download", "preprocess", "train", "runtime", "evaluate", "review")

Seed = Annotated[int, Field(ge=0, lt=2**32)]  # NumPy and TensorFlow seeds are 32-bit


class Section(BaseModel):
    # Unknown keys are errors: a misspelled knob must not be silently ignored. Strict: no value is coerced
    # (the stage must act on what DVC records), and NaN or infinity is no setting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


Schema = TypeVar("Schema", bound=Section)


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


def parse(raw: object, schema: type[Schema], source: Path = paths.PARAMS) -> Schema:
    """The sections `schema` names (a Section whose fields are sections), validated; other sections are only
    checked to be known ones, so that a stage depends on the schema code of the sections it reads and no other."""
    if not isinstance(raw, dict):
        raise StageError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    for name in raw:
        if name not in SECTIONS:
            hint = difflib.get_close_matches(str(name), SECTIONS, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise StageError(f"{source}: unknown key '{_printable(str(name))}'{suggestion}")
    try:
        return schema.model_validate({name: raw[name] for name in schema.model_fields if name in raw})
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


def parse_text(text: str, schema: type[Schema], source: Path = paths.PARAMS) -> Schema:
    return parse(read_yaml(text, source), schema, source)


def load(schema: type[Schema], path: Path = paths.PARAMS) -> Schema:
    try:
        text = path.read_text(encoding="utf-8")  # as DVC reads it
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run from the repository root)") from None
    except UnicodeDecodeError as error:
        raise StageError(f"{path}: not UTF-8 text (at byte offset {error.start})") from None
    except OSError as error:
        raise StageError(f"{path}: cannot read: {error.strerror}") from None
    return parse_text(text, schema, path)


def _leaves(values: object, prefix: str) -> dict[str, object]:
    if not isinstance(values, dict):
        return {prefix: values}
    return {key: value for name, child in values.items() for key, value in _leaves(child, f"{prefix}.{name}").items()}


def check_unchanged(loaded: Section, stage: str, path: Path = paths.PARAMS) -> None:
    """Fail if a param `stage` declares in dvc.yaml changed in params.yaml while the stage ran.

    DVC reads those params again after the stage to write dvc.lock: an edit made meanwhile would be
    recorded as the params of a result that was produced with the old ones.
    """
    declared = read_yaml(paths.PIPELINE.read_text(), paths.PIPELINE)["stages"][stage]["params"]
    before, now = loaded.model_dump(), load(type(loaded), path).model_dump()
    for key in declared:
        section = key.split(".")[0]
        old, new = _leaves(before[section], section), _leaves(now[section], section)
        for name in sorted(old):
            if (name == key or name.startswith(f"{key}.")) and old[name] != new.get(name):
                raise StageError(
                    f"{path}: {name} changed from {old[name]!r} to {new.get(name)!r} while the stage ran;"
                    " dvc.lock would record the new value for a result made with the old one: run it again"
                )
