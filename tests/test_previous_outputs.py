"""Put-back after a failed stage (fmnist.previous_outputs), in a small DVC project built by hand: what dvc.lock
records comes back from DVC's cache or git HEAD, checked by MD5, and what the failed run left is removed.

The slow tests in test_faults.py show the same through real `dvc repro` runs."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from fmnist import previous_outputs
from tests.conftest import checked


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Project:
    """A git repository with `dvc init`, whose dvc.lock and DVC cache the test writes itself."""

    def __init__(self, root: Path):
        self.root = root
        checked(root, "git", "init", "-q", "-b", "main")
        Repo.init(str(root))
        with Repo(str(root)) as repo:
            self.cache = Path(repo.cache.local.path)
        self.outs: list[dict] = []

    def cache_bytes(self, data: bytes, suffix: str = "") -> str:
        digest = md5(data) + suffix
        stored = self.cache / digest[:2] / digest[2:]
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(data)
        return digest

    def write(self, name: str, data: bytes) -> None:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)

    def commit(self, *names: str) -> None:
        checked(self.root, "git", "add", "-f", *names)
        checked(self.root, "git", "commit", "-qm", "a finished run")

    def lock(self, stage: str = "train") -> None:
        lock = {"schema": "2.0", "stages": {stage: {"cmd": "python -m stages.train", "outs": self.outs}}}
        (self.root / "dvc.lock").write_text(yaml.safe_dump(lock))

    def out(self, name: str, digest: str) -> None:
        self.outs.append({"path": name, "hash": "md5", "md5": digest})

    def files(self, folder: str) -> dict[str, bytes]:
        base = self.root / folder
        return {path.relative_to(base).as_posix(): path.read_bytes() for path in base.rglob("*") if path.is_file()}


def manifest(files: dict[str, bytes]) -> bytes:
    """A folder's listing as dvc-data writes it to the cache (the `.dir` entry)."""
    entries = [{"md5": md5(data), "relpath": relpath} for relpath, data in files.items()]
    return json.dumps(sorted(entries, key=lambda entry: entry["relpath"]), sort_keys=True).encode()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVC sets it for a stage's command
    return Project(tmp_path)


def test_files_come_back_from_dvc_s_cache_or_git_head_and_those_found_nowhere_are_named(project):
    project.out("models/model.keras", project.cache_bytes(b"the model"))
    project.write("reports/metrics.json", b'{"accuracy": 0.94}')
    project.commit("reports/metrics.json")  # an uncached metric: a fresh clone has it only in git
    project.out("reports/metrics.json", md5(b'{"accuracy": 0.94}'))
    project.out("models/summary.txt", md5(b"in no cache and no commit"))
    project.write("models/unchanged.txt", b"as recorded")
    project.out("models/unchanged.txt", md5(b"as recorded"))
    project.lock()
    project.write("models/model.keras", b"half-written by the failed run")  # DVC deleted the metrics
    (project.root / "reports/metrics.json").unlink()

    assert previous_outputs.put_back("dvc.yaml:train") == (2, ["models/summary.txt"])
    assert (project.root / "models/model.keras").read_bytes() == b"the model"
    assert (project.root / "reports/metrics.json").read_bytes() == b'{"accuracy": 0.94}'
    assert (project.root / "models/unchanged.txt").read_bytes() == b"as recorded"
    assert not (project.root / "models/summary.txt").exists()
    assert sorted(path.name for path in (project.root / "models").iterdir()) == ["model.keras", "unchanged.txt"]


def test_git_s_copy_comes_back_only_when_its_md5_is_the_one_dvc_lock_records(project):
    """HEAD may hold another run's metrics (committed later, or edited since): never put back the wrong result."""
    project.write("reports/metrics.json", b'{"accuracy": 0.90}')
    project.commit("reports/metrics.json")
    project.out("reports/metrics.json", md5(b'{"accuracy": 0.94}'))
    project.lock()
    project.write("reports/metrics.json", b'{"accuracy": 0.10}')  # the failed run's

    assert previous_outputs.put_back("train") == (0, ["reports/metrics.json"])
    assert (project.root / "reports/metrics.json").read_bytes() == b'{"accuracy": 0.10}'


def test_a_folder_comes_back_file_by_file_and_what_the_failed_run_added_goes(project):
    recorded = {"events.1": b"epoch 1", "plugins/profile/trace": b"a trace", "events.2": b"epoch 2"}
    for relpath in ("events.1", "plugins/profile/trace"):
        project.cache_bytes(recorded[relpath])
    project.write("logs/fit/events.2", recorded["events.2"])
    project.commit("logs/fit/events.2")  # in git HEAD only
    project.out("logs/fit", project.cache_bytes(manifest(recorded), ".dir"))
    project.lock()
    project.write("logs/fit/events.1", b"overwritten by the failed run")
    (project.root / "logs/fit/events.2").unlink()
    project.write("logs/fit/events.3", b"the failed run's")
    project.write("logs/fit/new/deeper/file", b"the failed run's")
    (project.root / "logs/fit/empty/folder").mkdir(parents=True)

    assert previous_outputs.put_back("train") == (3, [])
    assert project.files("logs/fit") == recorded
    folder = project.root / "logs/fit"
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")) == [  # no empty folder left
        "events.1",
        "events.2",
        "plugins",
        "plugins/profile",
        "plugins/profile/trace",
    ]


def test_a_folder_missing_from_the_cache_comes_back_from_git_head_when_its_listing_matches(project):
    """A fresh clone's uncached folder outputs (the plots) are in git only, with no manifest in DVC's cache."""
    recorded = {"accuracy.tsv": b"step\tacc\n0\t0.9\n", "sub/loss.tsv": b"step\tloss\n0\t0.3\n"}
    for relpath, data in recorded.items():
        project.write(f"reports/plots/{relpath}", data)
    project.write("reports/other/a.tsv", b"another folder")
    project.commit("reports/plots", "reports/other")
    project.out("reports/plots", md5(manifest(recorded)) + ".dir")
    project.out("reports/other", md5(manifest({"a.tsv": b"another run's listing"})) + ".dir")
    project.lock()
    project.write("reports/plots/accuracy.tsv", b"the failed run's")
    (project.root / "reports/plots/sub/loss.tsv").unlink()
    project.write("reports/other/a.tsv", b"the failed run's")

    assert previous_outputs.put_back("train") == (2, ["reports/other"])
    assert project.files("reports/plots") == recorded
    assert project.files("reports/other") == {"a.tsv": b"the failed run's"}  # left as it is, and named


def test_a_file_of_a_folder_found_nowhere_is_named_and_the_rest_come_back(project):
    recorded = {"kept": b"in the cache", "gone": b"nowhere"}
    project.cache_bytes(recorded["kept"])
    project.out("logs/fit", project.cache_bytes(manifest(recorded), ".dir"))
    project.lock()
    project.write("logs/fit/kept", b"the failed run's")

    assert previous_outputs.put_back("train") == (1, ["logs/fit/gone"])
    assert project.files("logs/fit") == {"kept": b"in the cache"}


def test_only_the_failed_stage_s_outputs_are_touched_and_without_a_lock_nothing(project):
    project.out("models/model.keras", project.cache_bytes(b"the model"))
    project.lock(stage="evaluate")
    project.write("models/model.keras", b"train's, which did not fail")
    assert previous_outputs.put_back("train") == (0, [])
    (project.root / "dvc.lock").unlink()
    assert previous_outputs.put_back("evaluate") == (0, [])
    assert (project.root / "models/model.keras").read_bytes() == b"train's, which did not fail"


def test_the_stage_dvc_runs_is_read_from_dvc_stage(monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert previous_outputs.under_dvc() is None
    monkeypatch.setenv("DVC_STAGE", "train")
    assert previous_outputs.under_dvc() == "train"


def test_an_output_found_nowhere_does_not_stop_the_others_coming_back(project):
    project.out("models/summary.txt", md5(b"in no cache and no commit"))
    project.out("logs/fit", md5(b"a listing nowhere") + ".dir")
    project.out("models/no-hash-recorded.txt", "")
    project.outs.append({"path": "models/lock-entry-without-md5"})
    project.out("models/model.keras", project.cache_bytes(b"the model"))
    project.lock()

    put, lost = previous_outputs.put_back("train")
    assert (put, sorted(lost)) == (
        1,
        ["logs/fit", "models/lock-entry-without-md5", "models/no-hash-recorded.txt", "models/summary.txt"],
    )
    assert (project.root / "models/model.keras").read_bytes() == b"the model"


def test_without_dvc_root_the_project_is_the_working_directory(project, monkeypatch):
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.chdir(project.root)
    project.out("models/model.keras", project.cache_bytes(b"the model"))
    project.lock()
    assert previous_outputs.put_back("train") == (1, [])
    assert (project.root / "models/model.keras").read_bytes() == b"the model"
