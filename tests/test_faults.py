"""Faults lose nothing and say what happened.

- SIGKILL or Ctrl-C (SIGINT) a real `dvc repro` mid-stage: the next `dvc repro` completes with the same
  metrics as a run that was never interrupted; a second concurrent `dvc repro` fails fast on DVC's lock.
- SIGTERM, a diverging training, a full disk or params edited mid-run: one line, exit non-zero, and the
  previous outputs exactly as they were.
- A diverging experiment run from `dvc queue` shows as failed and leaves no result.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_TRAIN, QuietHandler, copy_project, finished_queue, project_env, write_dataset

pytestmark = pytest.mark.slow  # real processes of dvc, git and the stages: run by CI, not everyday

STAGES = ["download", "preprocess", "train", "evaluate"]
OUTPUT_DIRS = ("data", "models", "logs", "reports")
STAGING = ".dvc/tmp/staging"  # fmnist.paths.STAGING: one folder per stage process
FIRST_TEMPORARY = {  # where each stage's first staged output appears: it is writing from then on
    "download": f"{STAGING}/*/.*.tmp*",
    "preprocess": f"{STAGING}/*/.*.tmp*",
    "train": f"{STAGING}/*/.fit.*.tmp",
    "evaluate": f"{STAGING}/*/.*.tmp*",
}


class TricklingHandler(QuietHandler):
    """Serves files slowly (about 20 KB/s), so a download is still running when it is killed."""

    def do_GET(self):
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for start in range(0, len(body), 2048):
                self.wfile.write(body[start : start + 2048])
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass


def new_repo(root: Path, name: str, source: str, checksums: dict) -> Path:
    project = copy_project(
        root / name,
        download={"sources": [source], "sha256": checksums, "backoff_s": 0},
        train=TINY_TRAIN | {"epochs": 3},
    )
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, env=project_env(), check=True)
    return project


def repro(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", "repro"], cwd=project, env=project_env(), capture_output=True, text=True, timeout=600)


def start_repro(project: Path) -> subprocess.Popen:
    env = project_env() | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        ["dvc", "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C must reach it as in a terminal, also when pytest itself runs in the background (`pytest &`),
        # where the shell starts it with SIGINT ignored and every child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def kill_when(process: subprocess.Popen, marker: str, delay: float) -> str:
    """SIGKILL the repro and every stage process it started, `delay` s after `marker` is printed."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return "".join(seen)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return root, write_dataset(root / "mirror")


@pytest.fixture(scope="module")
def reference(dataset):
    """A project after a complete `dvc repro`: every stage's outputs in place, as a user has them."""
    root, checksums = dataset
    project = new_repo(root, "reference", str(root / "mirror"), checksums)
    assert repro(project).returncode == 0
    return project


@pytest.fixture(scope="module")
def reference_metrics(reference):
    return json.loads((reference / "reports/metrics.json").read_text())


def copy_of(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, symlinks=True)
    return dest


def set_params(project: Path, section: str, **values) -> None:
    loaded = yaml.safe_load((project / "params.yaml").read_text())
    loaded[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(loaded, sort_keys=False))


def outputs(project: Path) -> dict[str, str]:
    """Every file under the output folders with its SHA-256 (temporaries included, so leftovers show)."""
    files = (path for folder in OUTPUT_DIRS for path in (project / folder).rglob("*") if path.is_file())
    return {str(path.relative_to(project)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def temporaries(project: Path) -> list[Path]:
    """What a stage staged and left: beside the outputs, or in the staging folder."""
    beside = [path for folder in OUTPUT_DIRS for path in (project / folder).rglob(".*.tmp*")]
    return beside + list((project / STAGING).glob("*"))


def wait_until_writing(process: subprocess.Popen, project: Path, stage: str, timeout: float = 120) -> None:
    """Until the stage has staged its first temporary output: it is mid-write, where an interrupt matters most."""
    deadline = time.monotonic() + timeout
    while not list(project.glob(FIRST_TEMPORARY[stage])):
        assert process.poll() is None, f"{stage} ended before it wrote anything"
        assert time.monotonic() < deadline, f"{stage} never started writing"
        time.sleep(0.002)


def run_stage(project: Path, stage: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"stages.{stage}"]
    return subprocess.run(command, cwd=project, env=project_env(), capture_output=True, text=True, timeout=600)


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(["dvc", *args], cwd=project, env=project_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# Where each SIGKILL lands: this long after the line appears, the stage is mid-way (the download trickles).
KILLED_AT = {"download": ("Running stage 'download'", 1.5), "preprocess": ("Running stage 'preprocess'", 0.5),
             "train": ("Epoch 2/3", 0.2)}  # fmt: skip


def test_sigkill_in_each_stage_then_the_next_repro_goes_on_to_the_same_metrics(dataset, reference_metrics, serve):
    """A first `dvc repro` killed in download, the next in preprocess, the next in training, as a user's machine might
    go down: each repro picks up what the last left half done, and the last completes with the metrics of a run never
    interrupted and no temporary file left: a kill gives a stage no chance to clean up, so its next run does."""
    root, checksums = dataset
    project = new_repo(root, "killed", serve(root / "mirror", TricklingHandler), checksums)
    for stage, (marker, delay) in KILLED_AT.items():
        output = kill_when(start_repro(project), marker, delay)
        assert marker in output, (stage, output)
        assert not (project / "reports/metrics.json").exists()  # it really died before the end
        if stage == "download":  # the reruns need no slow server; only the source's location differs
            set_params(project, "download", sources=[str(root / "mirror")])
    result = repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((project / "reports/metrics.json").read_text()) == reference_metrics
    assert not list(project.rglob(".*.tmp*")) and not temporaries(project), "temporary files left behind"


def test_a_second_concurrent_repro_fails_fast_on_the_lock(dataset):
    root, checksums = dataset
    project = new_repo(root, "concurrent", str(root / "mirror"), checksums)
    first = start_repro(project)
    for line in first.stdout:
        if "Running stage 'train'" in line:
            break
    started = time.monotonic()
    second = repro(project)
    assert second.returncode != 0
    # DVC's repo lock ("Unable to acquire lock") or its per-output lock ("... is busy ..."), by timing.
    assert re.search(r"Unable to acquire lock|is busy", second.stderr), second.stderr
    assert time.monotonic() - started < 30
    rest = first.stdout.read()
    assert first.wait(timeout=300) == 0, rest
    assert (project / "reports/metrics.json").exists()


def test_ctrl_c_in_each_stage_stops_it_in_seconds_then_repro_completes(dataset, reference_metrics, serve):
    """Ctrl-C a first `dvc repro` in download (a slow server), the next in preprocess, then train, then evaluate,
    each while it writes its outputs: each stops within seconds with one line and no temporary files, and the next
    repro goes on from there; the last completes with the metrics of a run never interrupted."""
    root, checksums = dataset
    project = new_repo(root, "ctrl-c", serve(root / "mirror", TricklingHandler), checksums)
    for stage in STAGES:
        process = start_repro(project)
        seen = []
        for line in process.stdout:
            seen.append(line)
            if f"Running stage '{stage}'" in line:
                break
        wait_until_writing(process, project, stage)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        sent = time.monotonic()
        output = "".join(seen) + process.communicate(timeout=60)[0]
        assert time.monotonic() - sent < 10, output
        assert process.returncode != 0, output
        assert f"error: {stage}: interrupted by SIGINT; its outputs were left as they were" in output, output
        assert "Traceback" not in output
        assert not temporaries(project), stage
        if stage == "download":  # the reruns need no slow server
            set_params(project, "download", sources=[str(root / "mirror")])
    result = repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((project / "reports/metrics.json").read_text()) == reference_metrics


@pytest.mark.parametrize("stage", STAGES)
def test_sigterm_mid_stage_leaves_the_previous_outputs_as_they_were(dataset, reference, serve, tmp_path, stage):
    project = copy_of(reference, tmp_path / "project")
    if stage == "download":
        set_params(project, "download", sources=[serve(dataset[0] / "mirror", TricklingHandler)])
    before = outputs(project)
    process = subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}"],
        cwd=project, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until_writing(process, project, stage)
    process.terminate()  # SIGTERM, as `kill`, `timeout` or a container stop sends it
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert process.returncode == 128 + signal.SIGTERM
    last_line = stderr.strip().splitlines()[-1]
    assert last_line == f"error: {stage}: interrupted by SIGTERM; its outputs were left as they were"
    assert "Traceback" not in stderr
    assert outputs(project) == before
    if stage != "download":  # (its params now name the slow server)
        assert json.loads(dvc(project, "status", "--json")) == {}


def test_a_diverging_run_fails_naming_the_step_and_keeps_the_previous_outputs(reference, tmp_path):
    project = copy_of(reference, tmp_path / "project")
    set_params(project, "train", learning_rate=1e12)
    before = outputs(project)
    result = run_stage(project, "train")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: training diverged at epoch 1, step 2 of 2: the training loss is nan;"
        " try a lower train.learning_rate (now 1e+12)"
    )
    assert "Traceback" not in result.stderr
    assert outputs(project) == before


def git_status(project: Path) -> str:
    """Every tracked or untracked file that differs from HEAD (staged or not: a `dvc exp run` killed by SIGTERM
    leaves its params.yaml edit staged in git's index, same content)."""
    changed = ["git", "diff", "HEAD", "--name-status"], ["git", "ls-files", "--others", "--exclude-standard"]
    return "".join(subprocess.run(args, cwd=project, capture_output=True, text=True).stdout for args in changed)


@pytest.mark.parametrize("fault", ["bad param", "divergence", "SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", [["dvc", "repro"], ["dvc", "exp", "run"]], ids=["repro", "exp-run"])
def test_under_dvc_a_failed_stage_puts_back_every_previous_output(reference, tmp_path, command, fault):
    """DVC deletes the stage's outputs before it runs it; the failing stage puts back what dvc.lock records, every
    file byte for byte, the git-tracked metrics and plots too (from the run cache's copies), and git status is as
    it was."""
    project = copy_of(reference, tmp_path / "project")
    for git in (["add", "-A"], ["commit", "-qm", "a finished run"]):  # `dvc exp run` needs a commit
        subprocess.run(["git", *git], cwd=project, env=project_env(), check=True)
    set_params(project, "train", learning_rate={"bad param": -1, "divergence": 1e12}.get(fault, 0.002))
    before, status = outputs(project), git_status(project)
    process = subprocess.Popen(
        command, cwd=project, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    if fault in ("SIGINT", "SIGTERM"):
        wait_until_writing(process, project, "train")
        os.killpg(process.pid, getattr(signal, fault))  # Ctrl-C in a terminal; a container stop
    output = process.communicate(timeout=300)[0]
    assert process.returncode != 0, output
    deadline = time.monotonic() + 30  # after SIGTERM, dvc is gone at once; the stage may still be putting back
    while outputs(project) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    if fault != "SIGTERM":
        assert "note: train: put back the " in output and "previous output files dvc had deleted" in output, output
    assert outputs(project) == before
    assert git_status(project) == status
    assert "Traceback" not in output


def test_outputs_missing_from_dvc_s_cache_come_back_from_git_head_and_the_rest_are_named(
    reference, tmp_path, monkeypatch
):
    """A fresh clone has the uncached metrics and plots only in git: put back from HEAD when the MD5 matches."""
    from fmnist import previous_outputs

    project = copy_of(reference, tmp_path / "project")
    for git in (["add", "-A"], ["commit", "-qm", "a finished run"]):
        subprocess.run(["git", *git], cwd=project, env=project_env(), check=True)
    before = outputs(project)
    train = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]["outs"]
    shutil.rmtree(project / ".dvc/cache")  # as on a fresh clone without `dvc pull`
    for out in train:
        shutil.rmtree(project / out["path"]) if (project / out["path"]).is_dir() else (project / out["path"]).unlink()
    monkeypatch.setenv("DVC_ROOT", str(project))
    put, lost = previous_outputs.put_back("train")
    assert sorted(lost) == ["logs/fit", "models/model.keras", "models/summary.txt"]  # cached: in no git commit
    assert put == sum(
        1 for name in before if name.startswith("reports/training/") or name == "reports/fingerprint.json"
    )
    assert outputs(project) == {
        name: digest
        for name, digest in before.items()
        if not name.startswith(("logs/fit/", "models/model", "models/summ"))
    }


def test_after_a_sigkill_under_dvc_the_previous_outputs_come_back_from_the_run_cache_without_running_it(
    reference, tmp_path
):
    """A SIGKILL gives the stage no chance to put back the outputs DVC deleted: `dvc repro` with the previous
    params restores every one of them, byte for byte, from DVC's run cache, the uncached metrics and plots
    included, and runs nothing."""
    project = copy_of(reference, tmp_path / "project")
    before = outputs(project)
    params = (project / "params.yaml").read_text()
    set_params(project, "train", learning_rate=0.002)
    process = start_repro(project)
    wait_until_writing(process, project, "train")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (project / "models/model.keras").exists()  # deleted by DVC, not put back
    (project / "params.yaml").write_text(params)
    again = repro(project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Running stage" not in again.stdout
    assert "Stage 'train' is cached - skipping run, checking out outputs" in again.stdout
    assert {name: digest for name, digest in outputs(project).items() if ".tmp" not in name} == before


def test_params_edited_while_the_stage_runs_are_put_back_and_the_run_completes(reference, tmp_path):
    project = copy_of(reference, tmp_path / "project")
    set_params(project, "train", epochs=6)
    started_with = (project / "params.yaml").read_text()
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.train"],
        cwd=project, env=project_env() | {"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    for line in process.stdout:
        if "Epoch 1/6" in line:
            set_params(project, "train", epochs=5)  # DVC would record 5 for a model trained for 6
            edited = (project / "params.yaml").read_text()
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    [warning] = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith(
        "warning: params.yaml: train.epochs changed from 6 to 5 while train ran, by another program; put back as"
        " train read it, so dvc.lock records what this run used (the edit is in params.yaml.edited)"
    ), warning
    assert (project / "params.yaml").read_text() == started_with
    assert (project / "params.yaml.edited").read_text() == edited
    assert json.loads((project / "reports/training/metrics.json").read_text())["step"] == 5  # six epochs: 0..5


def test_a_second_dvc_exp_run_in_the_workspace_loses_neither_run_nor_params(reference, tmp_path):
    """DVC releases its repo lock while a stage runs (treeverse/dvc#755): a second `dvc exp run` writes its -S values
    into params.yaml, then fails on the outputs' locks. The first run's stage puts them back and names the command."""
    project = copy_of(reference, tmp_path / "project")
    set_params(project, "train", epochs=40)
    for command in (["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        subprocess.run(command, cwd=project, env=project_env(), check=True)
    env = project_env() | {"PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        ["dvc", "exp", "run", "-n", "first"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    seen = []
    for line in first.stdout:
        seen.append(line)
        if "Epoch 2/40" in line:
            break
    second = subprocess.run(
        ["dvc", "exp", "run", "-S", "train.seed=7", "-n", "second"], cwd=project, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode != 0
    # DVC refuses the second run on the outputs' locks, or (a race with the first run's DVCLive files, which git
    # tracks) earlier, when putting back the workspace it stashed: it has reset params.yaml to HEAD by then.
    refused = re.search(r"Unable to acquire lock|is busy|(Stash apply resulted in merge conflicts)", second.stderr)
    assert refused, second.stderr
    output = "".join(seen) + first.communicate(timeout=600)[0]
    if not refused.group(1):
        assert (
            "warning: params.yaml: train.seed changed from 42 to 7 while train ran, by `dvc exp run -S train.seed=7"
            " -n second` (pid "
        ) in output, output
        assert "seed: 7" in (project / "params.yaml.edited").read_text()
    diff = subprocess.run(["git", "diff", "--stat", "params.yaml"], cwd=project, capture_output=True, text=True)
    assert diff.stdout == ""  # params.yaml as committed: first's values
    # The second run's failure cleared the refs DVC keeps for the workspace's experiment, so DVC cannot record the
    # first (`'NoneType' object is not subscriptable`); its results are whole in the workspace and `dvc exp save`
    # records them. Should DVC stop clearing them, the first run simply succeeds.
    if first.returncode != 0:
        assert "Failed to reproduce experiment" in output, output
        assert "up to date" in dvc(project, "status")
        dvc(project, "exp", "save", "-n", "first")
    [experiment] = [
        exp for baseline in json.loads(dvc(project, "exp", "show", "--json"))
        for group in baseline.get("experiments") or [] for exp in group["revs"] if exp.get("name") == "first"
    ]  # fmt: skip
    assert experiment["data"]["params"]["params.yaml"]["data"]["train"]["seed"] == 42
    assert experiment["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] == 40
    metrics = experiment["data"]["metrics"]["reports/training/metrics.json"]["data"]
    assert metrics["step"] == 39  # all 40 epochs


def test_a_diverging_experiment_from_the_queue_fails_and_leaves_no_result(reference, tmp_path):
    project = copy_of(reference, tmp_path / "project")
    subprocess.run(["git", "add", "-A"], cwd=project, env=project_env(), check=True)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=project, env=project_env(), check=True)
    dvc(project, "exp", "run", "--queue", "-S", "train.learning_rate=1e12", "-n", "diverging")
    dvc(project, "queue", "start")
    status = finished_queue(project, timeout=300)
    [row] = [line for line in status.splitlines() if "diverging" in line]
    assert row.split()[-1] == "Failed"
    assert "error: training diverged at epoch 1, step 2 of 2" in dvc(project, "queue", "logs", "diverging")
    assert "diverging" not in dvc(project, "exp", "list")  # no experiment to apply, push or compare

    # DVC still lists the failed run in `dvc exp show`, marked failed; the numbers it shows there are those of
    # the commit it was queued from (DVC reads the queue's snapshot: treeverse/dvc#9787), none from this run.
    baseline, *_ = json.loads(dvc(project, "exp", "show", "--json"))[1:]
    [failed] = [exp for exp in baseline["experiments"] if exp["name"] == "diverging"]
    assert failed["executor"]["state"] == "failed"
    [state] = failed["revs"]
    assert state["error"]["msg"] == "Experiment run failed"
    assert state["data"]["metrics"] == baseline["data"]["metrics"]
    assert "diverging" not in dvc(project, "exp", "show", "--hide-failed", "--csv")


def _mount_namespace() -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace where it may mount a tmpfs."""
    for prefix in (["unshare", "--user", "--map-root-user", "--mount"], ["unshare", "--mount"]):
        probe = [*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"]
        if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
            return prefix
    return None


MOUNT_NAMESPACE = _mount_namespace()


@pytest.mark.skipif(MOUNT_NAMESPACE is None, reason="no mount namespace to hold a small tmpfs (unshare refused)")
@pytest.mark.parametrize(
    ("stage", "folder", "output"),
    [
        ("download", "data/raw", "data/raw/train-images-idx3-ubyte.gz"),
        ("preprocess", "data/prepared", "data/prepared/train.npz"),
        ("train", "logs", "logs/fit"),
        ("train", "models", "models/model.keras"),
    ],
)
def test_a_full_disk_names_the_output_and_keeps_the_previous_ones(reference, tmp_path, stage, folder, output):
    """The stage runs with `folder` on a tmpfs that holds the previous outputs and 16 KiB more."""
    project = copy_of(reference, tmp_path / "project")
    before = {path: digest for path, digest in outputs(project).items() if path.startswith(folder + "/")}
    result, after = run_on_a_small_tmpfs(project, folder, f'"$0" -m stages.{stage}', tmp_path / "after.txt")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {output}: no space left on device;")
    assert "Traceback" not in result.stderr
    assert after == before  # every previous output byte for byte, no temporaries left


@pytest.mark.slow
@pytest.mark.skipif(MOUNT_NAMESPACE is None, reason="no mount namespace to hold a small tmpfs (unshare refused)")
@pytest.mark.parametrize(("folder", "output"), [("logs", "logs/fit"), ("models", "models/model.keras")])
def test_under_dvc_a_full_disk_names_the_output_and_puts_back_every_previous_one(reference, tmp_path, folder, output):
    """`dvc repro train` of a bigger model with `folder` on that tmpfs: DVC deletes the previous outputs, which frees
    their space, the new ones still do not fit, and the stage puts the previous ones back (its temporaries are gone),
    every file byte for byte."""
    project = copy_of(reference, tmp_path / "project")
    for git in (["add", "-A"], ["commit", "-qm", "a finished run"]):
        subprocess.run(["git", *git], cwd=project, env=project_env(), check=True)
    set_params(project, "train", model="conv2_bn")  # 825k parameters against the default's 391k
    before = {path: digest for path, digest in outputs(project).items() if path.startswith(folder + "/")}
    status = git_status(project)
    result, after = run_on_a_small_tmpfs(project, folder, "dvc repro train", tmp_path / "after.txt")
    assert result.returncode != 0, result.stderr
    assert f"error: {output}: no space left on device; previous outputs left as they were" in result.stderr
    assert "note: train: put back the " in result.stderr
    assert "Traceback" not in result.stderr
    assert after == before
    assert git_status(project) == status


def run_on_a_small_tmpfs(
    project: Path, folder: str, command: str, report: Path
) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run `command` (sh; $0 is this Python) with `folder` on a tmpfs that holds what it has and 16 KiB more, in a
    private mount namespace; return its result and {path: SHA-256} of what the tmpfs held after it."""
    files = [path for path in (project / folder).rglob("*") if path.is_file()]
    size = sum(-(-path.stat().st_size // 4096) * 4096 for path in files) + 16 * 1024
    script = (
        f"mv {folder} {folder}.before && mkdir {folder} && mount -t tmpfs -o size={size} tmpfs {folder}"
        f" && cp -a {folder}.before/. {folder}/ || exit 99\n"
        f"{command}; code=$?\n"
        f"(cd {folder} && find . -type f -exec sha256sum {{}} +) > {report}\n"
        f"umount {folder}; rmdir {folder}; mv {folder}.before {folder}; exit $code"
    )
    result = subprocess.run(
        [*MOUNT_NAMESPACE, "sh", "-c", script, sys.executable],
        cwd=project, env=project_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    after = {f"{folder}/{line.split(maxsplit=1)[1].removeprefix('./')}": line.split()[0] for line in
             report.read_text().splitlines()}  # fmt: skip
    return result, after
