"""End to end: `dvc repro` in a fresh git repository, on tiny data served over HTTP from 127.0.0.1."""

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import (
    TINY_TRAIN,
    copy_project,
    finished_queue,
    kill_queue_workers,
    project_env,
    project_on_tiny_data,
)

pytestmark = pytest.mark.slow  # real processes of dvc, git and the stages: run by CI, not everyday


def run(args: list[str], cwd) -> str:
    result = subprocess.run(args, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def start_queue(project, jobs: int = 1) -> None:
    """`dvc queue start`, its daemon workers' output not captured: `run` would wait for them to close the pipe."""
    command = ["dvc", "queue", "start", "-j", str(jobs)]
    subprocess.run(
        command, cwd=project, env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    from tests.conftest import write_dataset

    checksums = write_dataset(root / "mirror")
    return root, checksums


def test_repro_then_noop_then_experiment(repo, serve):
    root, checksums = repo
    url = serve(root / "mirror")
    project = copy_project(
        root / "project",
        download={"sources": [str(root / "missing"), url], "sha256": checksums, "backoff_s": 0},
        train=TINY_TRAIN | {"epochs": 2},
    )
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)

    first = run(["dvc", "repro"], project)
    assert stages_run(first) == {"download", "preprocess", "train", "evaluate"}
    for path in (
        "data/raw/train-images-idx3-ubyte.gz",
        "data/prepared/train.npz",
        "data/prepared/val.npz",
        "data/prepared/test.npz",
        "models/model.keras",
        "models/summary.txt",
        "reports/samples.png",
        "reports/training/metrics.json",
        "reports/training/plots/metrics/eval/accuracy.tsv",
        "reports/metrics.json",
        "reports/confusion.csv",
        "reports/confusion.png",
    ):
        assert (project / path).stat().st_size > 0, path
    assert list((project / "logs" / "fit" / "train").glob("events.out.tfevents.*"))
    assert list((project / "logs" / "evaluate").glob("events.out.tfevents.*"))
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert 0.5 < metrics["accuracy"] <= 1  # the synthetic classes are easy; chance is 0.1
    assert 0 < metrics["loss"] < 2.3
    assert len(metrics["per_class_accuracy"]) == 10
    assert len((project / "reports/training/plots/metrics/train/loss.tsv").read_text().splitlines()) == 1 + 2

    assert stages_run(run(["dvc", "repro"], project)) == set()
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).splitlines()[-1])
    assert shown[""]["data"]["reports/metrics.json"]["data"]["accuracy"] == metrics["accuracy"]

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    # Test-time averaging (on by default) is evaluate params: only evaluate re-runs, on the same model.
    single = run(
        ["dvc", "exp", "run", "-S", "evaluate.mirror_average=false", "-S", "evaluate.shift_average=false"], project
    )
    assert stages_run(single) == {"evaluate"}
    single_view = json.loads((project / "reports/metrics.json").read_text())
    assert single_view["accuracy"] == single_view["single_view_accuracy"] == metrics["single_view_accuracy"]
    assert single_view["loss"] != metrics["loss"]

    experiment = run(["dvc", "exp", "run", "-S", "train.epochs=1", "-S", "evaluate.mirror_average=true"], project)
    assert stages_run(experiment) == {"train", "evaluate"}
    assert len((project / "reports/training/plots/metrics/train/loss.tsv").read_text().splitlines()) == 1 + 1

    # Back to the baseline's params: DVC's run cache restores train and evaluate instead of running them (it is on
    # because their uncached outputs are declared as metrics and plots), outputs equal to the baseline's.
    back = run(
        [
            "dvc",
            "exp",
            "run",
            "-S",
            "train.epochs=2",
            "-S",
            "evaluate.mirror_average=true",
            "-S",
            "evaluate.shift_average=true",
        ],
        project,
    )
    assert stages_run(back) == set(), back
    assert "Stage 'train' is cached - skipping run, checking out outputs" in back
    assert json.loads((project / "reports/metrics.json").read_text()) == metrics
    assert len((project / "reports/training/plots/metrics/train/loss.tsv").read_text().splitlines()) == 1 + 2

    # Queued experiments run in the background, two at a time, and both land in `dvc exp show`.
    for seed in (1, 2):
        run(["dvc", "exp", "run", "--queue", "-S", f"train.seed={seed}", "-S", "train.epochs=1"], project)
    start_queue(project, jobs=2)
    try:
        status = finished_queue(project, timeout=400)
    finally:
        kill_queue_workers(project)
    assert "Failed" not in status
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).splitlines()[-1])
    runs = [exp for baseline in shown for group in baseline.get("experiments") or [] for exp in group["revs"]]
    experiments = {exp["name"]: exp["data"]["params"]["params.yaml"]["data"]["train"]["seed"] for exp in runs}
    assert sorted(experiments.values()) == [1, 2, 42, 42, 42]  # queued seeds; three earlier exp runs
    losses = [exp["data"]["metrics"]["reports/metrics.json"]["data"]["loss"] for exp in runs]
    assert len(set(losses)) == len(losses), losses  # each seed gave its own model

    # The compare command gathers two experiments' TensorBoard logs from the DVC cache, one folder each.
    names = sorted(experiments, key=experiments.get)[:2]
    result = subprocess.run(
        [sys.executable, "-m", "tools.compare", *names, "--out", "cmp", "--no-serve"],
        cwd=project,
        env=project_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (project / "cmp").iterdir()) == sorted(names)
    for name in names:
        assert list((project / "cmp" / name / "fit" / "validation").glob("events.out.tfevents.*"))
        assert list((project / "cmp" / name / "evaluate").glob("events.out.tfevents.*"))


def live_progress(project, name: str) -> tuple[str | None, int | None, float | None]:
    """The named experiment's state, DVCLive step and validation accuracy, as `dvc exp show` reports them now.

    A `dvc exp show` that fails (it did once, printing nothing, on a machine loaded with other work while the queue's
    worker ran) counts as nothing seen yet: the caller asks again until its deadline, which names the last error.
    """
    shown = subprocess.run(
        ["dvc", "exp", "show", "--json"], cwd=project, env=project_env(), capture_output=True, text=True
    )
    if shown.returncode != 0 or not shown.stdout.strip():
        return f"dvc exp show failed ({shown.returncode}): {shown.stderr.strip()[-300:]}", None, None
    for baseline in json.loads(shown.stdout):
        for group in baseline.get("experiments") or []:
            if group["name"] == name:
                data = group["revs"][0].get("data") or {}
                live = (data.get("metrics") or {}).get("reports/training/metrics.json", {}).get("data", {})
                state = (group.get("executor") or {}).get("state")
                return state, live.get("step"), live.get("eval", {}).get("accuracy")
    return None, None, None


def test_a_queued_experiment_shows_its_epochs_in_exp_show_while_it_runs(tmp_path):
    project = project_on_tiny_data(tmp_path, epochs=1)
    # A committed baseline is all `dvc exp run --queue` needs; its pipeline has not run (saves a training here).
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        run(command, project)
    run(["git", "commit", "-qm", "baseline"], project)
    run(["dvc", "exp", "run", "--queue", "-S", "train.epochs=2000", "-n", "long"], project)
    start_queue(project)
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 300
        state = None
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"no live progress seen: {seen}; last state: {state}"
            state, step, accuracy = live_progress(project, "long")
            if state == "running" and step is not None and step not in seen:
                assert accuracy is not None
                seen.append(step)
            time.sleep(1)
        assert seen[0] < seen[1] < 1999  # two epoch counts, read while the experiment ran
    finally:
        subprocess.run(["dvc", "queue", "kill", "long"], cwd=project, env=project_env(), capture_output=True)
        while "Running" in run(["dvc", "queue", "status"], project):
            time.sleep(1)
