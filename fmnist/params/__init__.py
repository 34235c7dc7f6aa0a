"""params.yaml, read and validated in one place before any stage does heavy work.

Each stage declares the sections it reads as a `Section` of sections and calls `load()` with it; each
section's schema (fmnist/params/<section>.py) says what every key means and what values are allowed,
so a typo fails fast with the key named.

The file is parsed by DVC's own YAML reader (ruamel.yaml, YAML 1.2) and validated strictly
(no coercion: 12.0 is not an int, "yes" is not a bool), so a stage acts on exactly the values
DVC records in dvc.lock, and refuses whatever DVC refuses, with a one-line error.
"""

import difflib
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, TypeVar

from dvc.utils.serialize import YAMLFileCorruptedError, parse_yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fmnist import paths
from fmnist.stage_runner import StageError

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
        data = path.read_bytes()
        text = data.decode("utf-8")  # as DVC reads it
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run from the repository root)") from None
    except UnicodeDecodeError as error:
        raise StageError(f"{path}: not UTF-8 text (at byte offset {error.start})") from None
    except OSError as error:
        raise StageError(f"{path}: cannot read: {error.strerror}") from None
    loaded = parse_text(text, schema, path)
    if path not in _watchers:
        _watchers[path] = EditWatcher(path, data)
        _watchers[path].start()
    return loaded


def _leaves(values: object, prefix: str) -> dict[str, object]:
    if not isinstance(values, dict):
        return {prefix: values}
    return {key: value for name, child in values.items() for key, value in _leaves(child, f"{prefix}.{name}").items()}


def _ancestors() -> set[int]:
    """This process and those that started it (the `dvc repro` or `dvc exp run` running this stage)."""
    import psutil

    me = psutil.Process()
    return {me.pid, *(parent.pid for parent in me.parents())}


def dvc_commands_here() -> list[str]:
    """The `dvc` commands running in this directory, other than the one running this process (psutil: Linux, macOS,
    Windows)."""
    import psutil

    here, ours, found = Path.cwd().resolve(), _ancestors(), []
    for process in psutil.process_iter(["cwd", "cmdline"]):  # another user's: None (access denied)
        cwd, argv = process.info["cwd"], process.info["cmdline"]
        if process.pid in ours or not cwd or not argv or Path(cwd).resolve() != here:
            continue
        for index, arg in enumerate(argv):  # .../bin/dvc, or python -m dvc
            if Path(arg).name == "dvc":
                found.append(f"`{shlex.join(['dvc', *argv[index + 1 :]])}` (pid {process.pid})")
                break
    return found


class EditWatcher(threading.Thread):
    """Notes who edits the params file while a stage runs, looking the moment it changes: a second `dvc exp run` in
    the workspace writes its -S values, then fails on DVC's locks and is gone a second later."""

    def __init__(self, path: Path, data: bytes):
        super().__init__(name=f"watching {path}", daemon=True)
        self.path, self.data = path, data
        self.editors: list[str] = []  # the dvc commands caught at it, if any
        self.seen = self.stamp()

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_ino, status.st_size, status.st_mtime_ns

    def run(self) -> None:
        while self.stamp() == self.seen:
            time.sleep(0.1)
        self.editors = dvc_commands_here()


_watchers: dict[Path, EditWatcher] = {}


def _flat(document: object) -> dict[str, object]:
    """{'train.seed': 42, ...}; {} for what is not a mapping (a file deleted or garbled meanwhile)."""
    return {key[1:]: value for key, value in _leaves(document, "").items()} if isinstance(document, dict) else {}


def flat_keys(document: object) -> list[str]:
    """Every leaf's dotted key ('train.seed', ...), as `dvc exp run -S` names them."""
    return list(_flat(document))


def _read_or_none(path: Path) -> object:
    try:
        return read_yaml(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError, StageError):
        return None


def check_unchanged(stage: str, path: Path = paths.PARAMS) -> None:
    """Put the params file back as the stage read it if anything changed it while the stage ran.

    DVC reads the params again after the stage to write dvc.lock, and the next stages read them: an edit made
    meanwhile would be recorded as the params of a result made with the old ones, or run the rest of the pipeline on
    values nobody asked this run for. DVC releases its repo lock while a stage runs (treeverse/dvc#755), so a second
    `dvc exp run` in the same workspace gets as far as writing its -S values before DVC refuses it. The edit is kept
    beside the file, and the warning names the command that made it when it was caught in the act.
    """
    watcher = _watchers[path]
    try:
        now = path.read_bytes()
    except OSError:
        now = None
    if now == watcher.data:
        return
    before, after = _flat(read_yaml(watcher.data.decode(), path)), _flat(_read_or_none(path))
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    if not changed:
        what = "its formatting changed"
    else:
        what = f"{changed[0]} changed from {before.get(changed[0])!r} to {after.get(changed[0])!r}"
        what += f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    aside = path.with_name(path.name + ".edited")
    if now is not None:
        aside.write_bytes(now)
        kept = f"the edit is in {aside}"
    else:
        kept = "it had been deleted"
    staged = path.with_name(f".{path.name}.tmp{os.getpid()}")
    staged.write_bytes(watcher.data)
    os.replace(staged, path)
    who = ", ".join(watcher.editors) or "another program"
    advice = (
        "run one experiment at a time in a workspace, or queue them with `dvc exp run --queue` and `dvc queue start`"
    )
    if watcher.editors:  # a second `dvc exp run`, whose failure cleared the refs DVC keeps for this run
        advice += "; if this run's `dvc exp run` then fails to record it, `dvc exp save -n NAME` does"
    print(
        f"warning: {path}: {what} while {stage} ran, by {who}; put back as {stage} read it, so dvc.lock records what"
        f" this run used ({kept}): {advice}",
        file=sys.stderr,
        flush=True,
    )
