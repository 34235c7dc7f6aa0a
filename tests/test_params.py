import typing

import pytest
import yaml

from stages import params
from stages.errors import StageError
from tests.conftest import REPO


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_are_valid():
    loaded = params.load(REPO / "params.yaml")
    assert loaded.train.model == "conv2_bn"
    assert 0 < loaded.preprocess.val_fraction < 1


def test_every_architecture_name_is_buildable():
    from stages.model import ARCHITECTURES

    assert set(typing.get_args(params.Architecture)) == set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", 0, "train.epochs = 0: Input should be greater than or equal to 1"),
        ("train", "epochs", -3, "train.epochs = -3"),
        ("train", "model", "resnet9000", "train.model = 'resnet9000': Input should be 'seed' or 'conv2_bn'"),
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
        params.parse(raw)
    assert expected in str(error.value)


def test_yaml_float_in_exponent_form_is_accepted(raw):
    raw["train"]["learning_rate"] = "1e-3"  # PyYAML reads 1e-3 as a string
    assert params.parse(raw).train.learning_rate == 0.001


def test_misspelled_key_is_named(raw):
    raw["train"]["epoch"] = raw["train"].pop("epochs")
    with pytest.raises(StageError, match=r"unknown key 'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        params.parse(raw)


def test_bad_checksum_is_named(raw):
    raw["download"]["sha256"]["t10k-labels-idx1-ubyte.gz"] = "abc"
    with pytest.raises(StageError, match=r"download.sha256.t10k-labels-idx1-ubyte.gz = 'abc'.*SHA-256"):
        params.parse(raw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping of sections, got NoneType"),
        ("train: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping of sections, got list"),
    ],
)
def test_unusable_file_is_one_clear_error(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(StageError, match=expected) as error:
        params.load(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(StageError, match="not found"):
        params.load(tmp_path / "params.yaml")
