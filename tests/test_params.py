import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import typing

import pytest
import yaml
from dvc.utils.serialize import parse_yaml
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from fmnist import params
from fmnist.params.all_sections import AllParams
from fmnist.params.train import Architecture
from fmnist.stage_runner import StageError
from tests.conftest import REPO, copy_project, project_env


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_are_valid():
    loaded = params.load(AllParams, REPO / "params.yaml")
    assert loaded.train.model == "conv3_bn"
    assert 0 < loaded.preprocess.val_fraction < 1


def test_every_architecture_name_is_buildable():
    from fmnist.model import ARCHITECTURES

    assert set(typing.get_args(Architecture)) == set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", 0, "train.epochs = 0: Input should be greater than or equal to 1"),
        ("train", "epochs", -3, "train.epochs = -3"),
        (
            "train",
            "model",
            "resnet9000",
            "train.model = 'resnet9000': Input should be 'seed', 'conv2_bn', 'conv3_bn' or 'conv3_slim'",
        ),
        ("train", "optimizer", "adamm", "train.optimizer = 'adamm'"),
        ("train", "learning_rate", "fast", "train.learning_rate = 'fast': Input should be a valid number"),
        ("train", "distribute", "horovod", "train.distribute = 'horovod': Input should be 'auto', 'none' or"),
        ("preprocess", "val_fraction", 1.5, "preprocess.val_fraction = 1.5: Input should be less than 1"),
        ("preprocess", "val_fraction", 0, "preprocess.val_fraction = 0: Input should be greater than 0"),
        ("download", "sources", [], "download.sources = []"),
    ],
)
def test_bad_value_names_key_value_and_rule(raw, section, key, value, expected):
    raw[section][key] = value
    with pytest.raises(StageError) as error:
        params.parse(raw, AllParams)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("key", "spelling", "value"),
    [
        ("learning_rate", "1e-3", 0.001),  # YAML 1.2, as DVC reads it: a float (PyYAML: a string)
        ("epochs", "012", 12),  # YAML 1.2: decimal 12 (PyYAML: octal 10)
        ("batch_size", "0x40", 64),
        ("learning_rate", "1", 1.0),  # an int where a float goes: the same number
    ],
)
def test_values_are_read_as_dvc_reads_them(key, spelling, value):
    text = (REPO / "params.yaml").read_text().replace(f"  {key}: ", f"  {key}: {spelling}  #", 1)
    assert getattr(params.parse_text(text, AllParams).train, key) == value


@pytest.mark.parametrize(
    ("key", "spelling", "expected"),
    [
        ("epochs", "1:30", "train.epochs = '1:30': Input should be a valid integer"),  # PyYAML: 90
        ("epochs", "12.0", "train.epochs = 12.0: Input should be a valid integer"),  # never truncated
        ("epochs", '"12"', "train.epochs = '12': Input should be a valid integer"),  # a string stays one
        ("learning_rate", ".inf", "train.learning_rate = inf: Input should be a finite number"),
        ("learning_rate", "1e400", "train.learning_rate = inf: Input should be a finite number"),
        ("learning_rate", "true", "train.learning_rate = True: Input should be a valid number"),
        ("seed", "4294967296", "preprocess.seed = 4294967296: Input should be less than 4294967296"),
    ],
)
def test_values_are_never_coerced(key, spelling, expected):
    text = (REPO / "params.yaml").read_text().replace(f"  {key}: ", f"  {key}: {spelling}  #", 1)
    with pytest.raises(StageError, match=re.escape(expected)):
        params.parse_text(text, AllParams)


def test_yes_is_a_string_as_dvc_reads_it():
    text = (REPO / "params.yaml").read_text().replace("  mirror_average: true", "  mirror_average: yes")
    with pytest.raises(StageError, match=r"evaluate.mirror_average = 'yes': Input should be a valid boolean"):
        params.parse_text(text, AllParams)


def test_duplicate_keys_are_refused_as_dvc_refuses_them():
    text = (REPO / "params.yaml").read_text().replace("  epochs: ", "  epochs: 3\n  epochs: ", 1)
    with pytest.raises(StageError, match=r'not valid YAML: found duplicate key "epochs" .* \(line \d+, column 3\)'):
        params.parse_text(text, AllParams)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("ftp://example.org/data/", "must be a local folder or an http:// or https:// URL with a host"),
        ("https:///data/", "must be a local folder or an http:// or https:// URL with a host"),
        ("http://[::1/data/", "not a valid URL (Invalid IPv6 URL)"),
        ("http://example.org:99999/", "not a valid URL (Port out of range 0-65535)"),
    ],
)
def test_a_source_must_be_a_folder_or_an_http_url(raw, source, message):
    raw["download"]["sources"] = [source]
    with pytest.raises(StageError, match=re.escape(f"download.sources.0 = {source!r}: {message}")):
        params.parse(raw, AllParams)


def test_misspelled_key_is_named(raw):
    raw["train"]["epoch"] = raw["train"].pop("epochs")
    with pytest.raises(StageError, match=r"unknown key 'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        params.parse(raw, AllParams)


@pytest.mark.parametrize(
    ("section", "suggestion"),
    [("trian", " (did you mean 'train'?)"), ("épochs", ""), ("tr\tain", " (did you mean 'train'?)")],
)
def test_an_unknown_section_is_named_as_it_is_spelled(raw, section, suggestion):
    """A misspelled section would otherwise be ignored; printable names (accents too) are shown as typed, the rest
    escaped so that the error stays one line."""
    raw[section] = raw.pop("train")
    shown = section.replace("\t", "\\t")
    with pytest.raises(StageError) as error:
        params.parse(raw, AllParams)
    assert str(error.value) == f"params.yaml: unknown key '{shown}'{suggestion}"


def test_an_unknown_key_like_no_known_one_gets_no_suggestion(raw):
    raw["train"]["qqqq"] = 1
    with pytest.raises(StageError) as error:
        params.parse(raw, AllParams)
    assert str(error.value) == "params.yaml: unknown key 'train.qqqq'"


def test_a_missing_key_is_named(raw):
    del raw["train"]["seed"]
    with pytest.raises(StageError) as error:
        params.parse(raw, AllParams)
    assert str(error.value) == "params.yaml: missing key 'train.seed'"


def test_a_long_bad_value_is_cut_to_keep_the_error_readable(raw):
    raw["train"]["epochs"] = "x" * 100
    with pytest.raises(StageError) as error:
        params.parse(raw, AllParams)
    shown = str(error.value).split(" = ", 1)[1].split(": ", 1)[0]
    assert shown == repr("x" * 100)[:57] + "..." and len(shown) == 60
    raw["train"]["epochs"] = "x" * 58  # 60 characters with its quotes: shown whole
    with pytest.raises(StageError, match=re.escape(f"train.epochs = {'x' * 58!r}: ")):
        params.parse(raw, AllParams)
    raw["train"]["epochs"] = "x" * 59  # 61: cut
    with pytest.raises(StageError, match=re.escape(f"train.epochs = {'x' * 59!r}"[:-4] + "...: ")):
        params.parse(raw, AllParams)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: c: 2\n", "mapping values are not allowed here (line 2, column 5)"),  # 1-based, as editors count
        ("train:\n  epochs: 3\n\tseed: 1\n", "found character '\\t' that cannot start any token (line 3, column 1)"),
        # A character YAML refuses has no line and column, only a position in its own message's second line
        ("train: \x07\n", "unacceptable character #x0007: special characters are not allowed"),
    ],
)
def test_a_yaml_error_says_what_and_where(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(StageError) as error:
        params.load(AllParams, path)
    assert str(error.value) == f"{path}: not valid YAML: {expected}"


def test_a_document_that_is_not_a_mapping_has_no_keys():
    assert params.flat_keys(["train", "seed"]) == [] and params.flat_keys("text") == []
    assert params.flat_keys({"train": {"seed": 1}, "runtime": {"mode": "exact"}}) == ["train.seed", "runtime.mode"]


def test_bad_checksum_is_named(raw):
    raw["download"]["sha256"]["t10k-labels-idx1-ubyte.gz"] = "ABC"
    rule = "must be 64 lowercase hex digits (a SHA-256)"  # what to write instead, not only that it is wrong
    with pytest.raises(StageError, match=re.escape(f"download.sha256.t10k-labels-idx1-ubyte.gz = 'ABC': {rule}") + "$"):
        params.parse(raw, AllParams)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("train: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping of sections, got list"),
    ],
)
def test_unusable_file_is_one_clear_error(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(StageError, match=expected) as error:
        params.load(AllParams, path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(StageError, match="not found"):
        params.load(AllParams, tmp_path / "params.yaml")


# Whatever params.yaml holds, a stage gets either params exactly as DVC reads them or one clear line.
REPO_TEXT = (REPO / "params.yaml").read_text()
SECTIONS = parse_yaml(REPO_TEXT, "params.yaml")
KEYS = [(section, key) for section, values in SECTIONS.items() for key in values]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.dates() | st.binary(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
EDITS = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("replace section"), st.sampled_from(list(SECTIONS)), VALUES),
    st.tuples(st.just("add key"), st.sampled_from(list(SECTIONS)), st.text(max_size=8)),
)


def as_dvc_reads_it_or_one_line(text: str) -> None:
    try:
        loaded = params.parse_text(text, AllParams)
    except StageError as error:
        assert str(error).startswith("params.yaml: ") and "\n" not in str(error)
        return
    dvc_view = parse_yaml(text, "params.yaml")  # what dvc.lock would record
    assert loaded.model_dump() == {section: dvc_view[section] for section in loaded.model_dump()}


def edited(edits) -> str:
    document = parse_yaml(REPO_TEXT, "params.yaml")
    for kind, where, value in edits:
        if kind == "set" and isinstance(document.get(where[0]), dict):
            document[where[0]][where[1]] = value
        elif kind == "delete" and isinstance(document.get(where[0]), dict):
            document[where[0]].pop(where[1], None)
        elif kind == "replace section":
            document[where] = value
        elif kind == "add key" and isinstance(document.get(where), dict):
            document[where][value] = 1
    stream = io.StringIO()
    YAML(typ="safe").dump(document, stream)
    return stream.getvalue()


@given(st.lists(EDITS, min_size=1, max_size=3))
def test_any_edited_document_gives_dvcs_values_or_one_clear_line(edits):
    as_dvc_reads_it_or_one_line(edited(edits))


@given(st.integers(0, len(REPO_TEXT)), st.integers(0, 20), st.text(max_size=12))
def test_any_typing_in_the_file_gives_dvcs_values_or_one_clear_line(at, cut, typed):
    as_dvc_reads_it_or_one_line(REPO_TEXT[:at] + typed + REPO_TEXT[at + cut :])


@given(st.text(max_size=200))
def test_any_text_at_all_gives_one_clear_line(text):
    as_dvc_reads_it_or_one_line(text)


def test_a_stage_acts_on_exactly_the_values_dvc_records_in_dvc_lock(tmp_path):
    """Spellings that YAML 1.1 (PyYAML) and YAML 1.2 (DVC) read differently, through a real `dvc repro`."""
    project = copy_project(tmp_path / "project")
    text = (project / "params.yaml").read_text()
    for key, spelling in [("learning_rate", "2e-3"), ("epochs", "012"), ("batch_size", "0x80"), ("timeout_s", "30")]:
        text = re.sub(rf"(?m)^(  {key}): .*$", rf"\1: {spelling}", text)
    (project / "params.yaml").write_text(text)
    read = "import json; from fmnist import params; from fmnist.params.all_sections import AllParams; "
    read += "print(json.dumps(params.load(AllParams).model_dump()))"
    stage = {"cmd": f"python -c '{read}' > read.json", "params": list(SECTIONS), "outs": ["read.json"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"read": stage}}))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(command, cwd=project, env=project_env(), check=True)
    recorded = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["read"]["params"]["params.yaml"]
    acted_on = json.loads((project / "read.json").read_text())
    assert acted_on == recorded
    assert (acted_on["train"]["learning_rate"], acted_on["train"]["epochs"], acted_on["train"]["batch_size"]) == (
        0.002, 12, 128,
    )  # fmt: skip


def test_an_edit_made_while_a_stage_ran_is_put_back_and_kept_aside(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(REPO_TEXT)
    params.load(AllParams, path)
    params.check_unchanged("train", path)  # untouched: nothing to say
    assert capsys.readouterr().err == "" and not (tmp_path / "params.yaml.edited").exists()
    edited = REPO_TEXT.replace("  val_fraction: 0.2", "  val_fraction: 0.3").replace("epochs: 24", "epochs: 5")
    path.write_text(edited)
    params.check_unchanged("train", path)  # any stage: the next ones would read the edit
    assert path.read_text() == REPO_TEXT
    assert (tmp_path / "params.yaml.edited").read_text() == edited
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"warning: {path}: preprocess.val_fraction changed from 0.2 to 0.3 (and 1 more) while train ran, by another"
        f" program; put back as train read it, so dvc.lock records what this run used (the edit is in {path}.edited)"
    ), line
    assert line.endswith(
        "): run one experiment at a time in a workspace, or queue them with `dvc exp run --queue` and `dvc queue start`"
    )


def test_every_dvc_command_caught_editing_is_named_with_what_to_do_if_the_run_is_not_recorded(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(REPO_TEXT)
    params.load(AllParams, path)
    path.write_text(REPO_TEXT.replace("  seed: 42", "  seed: 7"))
    watcher = params._watchers[path]
    watcher.join(timeout=10)  # it has seen the edit and looked for dvc commands (none here): now say it saw two
    watcher.editors = ["`dvc exp run -S train.seed=7` (pid 11)", "`dvc exp run` (pid 12)"]
    params.check_unchanged("train", path)
    line = capsys.readouterr().err
    assert " while train ran, by `dvc exp run -S train.seed=7` (pid 11), `dvc exp run` (pid 12); put back" in line
    assert line.endswith(
        " or queue them with `dvc exp run --queue` and `dvc queue start`; if this run's `dvc exp run` then fails to"
        " record it, `dvc exp save -n NAME` does\n"
    )


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda text: text + "extra:\n  key: 1\n", "extra.key changed from None to 1"),  # a key only the edit has
        (lambda text: text.replace("  seed: 42", "  seed:   42"), "its formatting changed"),
        (None, "{first} changed from {value!r} to None (and {more} more)"),  # deleted: nothing to keep aside
    ],
    ids=["key added", "formatting", "deleted"],
)
def test_what_an_edit_changed_is_named_and_the_file_put_back(tmp_path, monkeypatch, capsys, edit, what):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(REPO_TEXT)
    params.load(AllParams, path)
    if edit:
        path.write_text(edit(REPO_TEXT))
    else:
        path.unlink()
    params.check_unchanged("evaluate", path)
    values = params._flat(yaml.safe_load(REPO_TEXT))  # every key, as a deletion changes all of them
    first = min(values)
    what = what.format(first=first, value=values[first], more=len(values) - 1)
    assert path.read_text() == REPO_TEXT
    assert (tmp_path / "params.yaml.edited").exists() == bool(edit)
    line = capsys.readouterr().err
    assert line.startswith(f"warning: {path}: {what} while evaluate ran"), line
    assert ("(the edit is in" in line) == bool(edit) and ("(it had been deleted)" in line) != bool(edit)


class FakeProcess:
    def __init__(self, pid, cwd, cmdline):
        self.pid, self.info = pid, {"cwd": cwd, "cmdline": cmdline}


def test_only_other_dvc_commands_in_this_folder_are_named(tmp_path, monkeypatch):
    import psutil

    monkeypatch.chdir(tmp_path)
    here = str(tmp_path)
    processes = [
        FakeProcess(10, here, ["/venv/bin/dvc", "exp", "run"]),  # the one running this stage: ours
        FakeProcess(11, None, ["dvc", "status"]),  # another user's: its folder cannot be read
        FakeProcess(12, here, None),  # nor, here, its command line
        FakeProcess(13, str(tmp_path.parent), ["dvc", "gc"]),  # another folder
        FakeProcess(14, here, ["python", "-m", "dvc", "exp", "run", "-S", "train.seed=7"]),
    ]
    monkeypatch.setattr(psutil, "process_iter", lambda _attrs: iter(processes))
    monkeypatch.setattr(params, "_ancestors", lambda: {10})
    assert params.dvc_commands_here() == ["`dvc exp run -S train.seed=7` (pid 14)"]


def test_the_watcher_names_the_dvc_command_that_edited_the_params(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(REPO_TEXT)
    params.load(AllParams, path)
    time.sleep(0.5)  # the stage works a while before the edit comes: the watcher must look when it does, not now
    fake = tmp_path / "bin" / "dvc"  # edits params.yaml as `dvc exp run -S` does, then lingers a second
    fake.parent.mkdir()
    fake.write_text(
        "import pathlib, sys, time\n"
        "p = pathlib.Path('params.yaml')\n"
        "if sys.argv[1:3] == ['exp', 'run']:\n"
        "    p.write_text(p.read_text().replace('seed: 42  # seeds weight', 'seed: 7  # seeds weight'))\n"
        "time.sleep(1)\n"
    )
    elsewhere = subprocess.Popen([sys.executable, str(fake), "status"], cwd=tmp_path / "bin")  # another folder
    subprocess.run([sys.executable, str(fake), "exp", "run", "-S", "train.seed=7"], check=True)
    elsewhere.wait()
    params.check_unchanged("train", path)
    line = capsys.readouterr().err
    assert "train.seed changed from 42 to 7 while train ran, by `dvc exp run -S train.seed=7` (pid " in line, line
    assert "dvc status" not in line
    assert path.read_text() == REPO_TEXT


def documented_experiments() -> list[list[str]]:
    """The `-S` values of every `dvc exp run` command in the README's and docs' code blocks (continuation lines
    joined)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages).replace("\\\n", " ")
    commands = re.findall(r"^dvc exp run (.*)$", text, flags=re.MULTILINE)
    found = []
    for command in commands:
        words = shlex.split(command.split("  #")[0])
        found.append([words[i + 1] for i, word in enumerate(words) if word in ("-S", "--set-param")])
    return found


@pytest.mark.parametrize("settings", documented_experiments(), ids=" ".join)
def test_every_documented_experiment_sets_valid_params(settings, tmp_path):
    """The named runs of the README and docs (the article's CNN, earlier defaults, candidates) must stay runnable as
    params change: each command's values, applied the way `dvc exp run -S` applies them, pass the schema."""
    from dvc.utils.hydra import apply_overrides

    from tools.sweep import grid

    for point in grid(" ".join(shlex.quote(setting) for setting in settings)):
        path = tmp_path / "params.yaml"
        shutil.copy(REPO / "params.yaml", path)
        apply_overrides(path, point)
        params.load(AllParams, path)  # raises StageError naming the key


EDIT_UNDER_ASCII_LOCALE = """
import sys
from pathlib import Path
from fmnist import params
from fmnist.params.all_sections import AllParams
path = Path(sys.argv[1])
params.load(AllParams, path)
path.write_text(path.read_text(encoding="utf-8").replace("epochs: 24", "epochs: 5"), encoding="utf-8")
params.check_unchanged("train", path)
"""


def test_an_edit_is_named_under_a_locale_that_is_not_utf8(tmp_path):
    """params.yaml is UTF-8 wherever the stage runs: on a machine whose locale is ASCII (LANG=C, Python's UTF-8 mode
    off), a comment in another language must not make the edit unreadable and the warning name every key."""
    path = tmp_path / "params.yaml"
    path.write_text("# Größe des Modells: siehe docs/\n" + REPO_TEXT, encoding="utf-8")
    ascii_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", EDIT_UNDER_ASCII_LOCALE, str(path)],
        cwd=tmp_path,
        env=project_env() | {"PYTHONPATH": str(REPO)} | ascii_locale,
        capture_output=True,
        check=True,
    )
    assert f"warning: {path}: train.epochs changed from 24 to 5 while train ran".encode() in result.stderr, (
        result.stderr
    )
