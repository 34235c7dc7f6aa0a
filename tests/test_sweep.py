"""A sweep fanned out over two machines: two clones ("runners", separate processes) each run one experiment and
`dvc exp push` it to a shared Git remote and DVC remote; a third clone pulls both and compares them."""

import json
import re
import subprocess
import sys

import pytest

from fmnist.stage_runner import StageError
from tests.conftest import checked, project_env, pushed_baseline
from tools import sweep

SWEEP = "train.learning_rate=0.001,0.002"  # both differ from the baseline (TINY_TRAIN), so both train


def test_the_grid_is_dvcs_own():
    assert sweep.grid("train.learning_rate=0.001,0.002 train.dropout=0.1,0.2") == [
        ["train.learning_rate=0.001", "train.dropout=0.1"],
        ["train.learning_rate=0.001", "train.dropout=0.2"],
        ["train.learning_rate=0.002", "train.dropout=0.1"],
        ["train.learning_rate=0.002", "train.dropout=0.2"],
    ]
    assert sweep.grid("train.epochs=range(1,4)") == [[f"train.epochs={n}"] for n in (1, 2, 3)]
    assert sweep.grid("train.optimizer=choice(adam,sgd)") == [["train.optimizer=adam"], ["train.optimizer=sgd"]]
    assert sweep.matrix("train.seed=1,2") == {
        "include": [{"index": 0, "params": "train.seed=1"}, {"index": 1, "params": "train.seed=2"}]
    }
    with pytest.raises(StageError, match="expected KEY=VALUES"):
        sweep.grid("train.seed")


def plan(grid: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.sweep", "plan", grid], capture_output=True, text=True)


def test_a_plan_over_githubs_matrix_limit_fails_in_one_line_saying_how_to_split_it():
    result = plan("train.learning_rate=range(1,11) train.dropout=range(1,11) train.seed=range(1,11)")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: sweep 'train.learning_rate=range(1,11) train.dropout=range(1,11) train.seed=range(1,11)': 1000"
        " points, over GitHub Actions' limit of 256 jobs a matrix; split train.learning_rate's 10 values into 5"
        " sweeps of at most 2 (200 points each)"
    ]
    assert len(sweep.grid("train.seed=range(0,256)")) == sweep.MATRIX_LIMIT
    sweep.matrix("train.seed=range(0,256)")  # exactly the limit: planned
    with pytest.raises(StageError, match=r"257 points, .* split train.seed's 257 values into 2 sweeps of at most 256"):
        sweep.matrix("train.seed=range(0,257)")


@pytest.mark.parametrize(
    ("grid", "problem"),
    [
        ("train.dropout=0.2,1.5 train.seed=1", "point 1 (train.dropout=1.5 train.seed=1): params.yaml: train.dropout"
         " = 1.5: Input should be less than 1"),
        ("train.seed=1 train.nosuchkey=3", "point 0 (train.seed=1 train.nosuchkey=3): params.yaml: unknown key"
         " 'train.nosuchkey'"),
        ("train.seeds=1,2", "point 0 (train.seeds=1): params.yaml: unknown key 'train.seeds' (did you mean"
         " 'train.seed'?)"),
        ("train.model=conv3_bn,conv9", "point 1 (train.model=conv9): params.yaml: train.model = 'conv9': Input should"
         " be 'seed', 'conv2_bn', 'conv3_bn' or 'conv3_slim'"),
        ("train.epochs=12.0", "point 0 (train.epochs=12.0): params.yaml: train.epochs = 12.0: Input should be a valid"
         " integer"),
    ],
)  # fmt: skip
def test_an_invalid_point_fails_the_plan_naming_point_key_and_value(grid, problem):
    result = plan(grid)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: sweep {problem}"]


def test_every_params_constraint_is_per_key_so_plan_may_check_each_setting_alone():
    """check_points validates each distinct setting on its own; a constraint across keys would need whole points."""
    from fmnist.params.all_sections import AllParams

    for section in AllParams.model_fields.values():
        assert not section.annotation.__pydantic_decorators__.model_validators, section.annotation.__name__


def test_duplicate_points_are_dropped_from_the_matrix():
    result = plan("train.seed=1,2,1 train.dropout=0.1,0.1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["include"] == [
        {"index": 0, "params": "train.seed=1 train.dropout=0.1"},
        {"index": 1, "params": "train.seed=2 train.dropout=0.1"},
    ]
    assert result.stderr == "note: sweep: dropped 4 duplicate points\n"


@pytest.mark.slow
def test_two_runners_push_their_experiments_and_a_third_clone_sees_both(tmp_path, tiny_run):
    pushed_baseline(tmp_path, tiny_run, str(tmp_path / "dvc-remote"))

    runners = []
    for index in (0, 1):
        checked(tmp_path, "git", "clone", "-q", str(tmp_path / "origin.git"), f"runner-{index}")
        runners.append(
            subprocess.Popen(
                [sys.executable, "-m", "tools.sweep", "run", SWEEP, str(index)],
                cwd=tmp_path / f"runner-{index}", env=project_env(), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            )
        )  # fmt: skip
    for index, runner in enumerate(runners):
        output = runner.communicate(timeout=600)[0]
        assert runner.returncode == 0, output
        assert re.search(rf"sweep: pushed experiment sweep-[0-9a-f]{{6}}-{index}\n", output)
        assert "Running stage 'download'" not in output and "Running stage 'train'" in output  # upstream pulled

    checked(tmp_path, "git", "clone", "-q", str(tmp_path / "origin.git"), "reviewer")
    reviewer = tmp_path / "reviewer"
    table = checked(reviewer, sys.executable, "-m", "tools.sweep", "show", "--prefix", "sweep-")
    lines = table.splitlines()
    assert lines[0] == "| experiment | test accuracy | single view | test loss | train.learning_rate |"
    names = sorted(line.split(" | ")[0].removeprefix("| ") for line in lines[2:])
    assert [re.sub("-[0-9a-f]{6}-", "-", name) for name in names] == ["sweep-0", "sweep-1"]
    assert len({name[:-2] for name in names}) == 1  # one sweep: one id
    assert {line.split(" | ")[-1].rstrip(" |") for line in lines[2:]} == {"0.001", "0.002"}
    accuracies = [float(line.split(" | ")[1]) for line in lines[2:]]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    shown = json.loads(checked(reviewer, "dvc", "exp", "show", "--json"))
    experiments = {exp["name"] for baseline in shown for group in baseline.get("experiments") or [] for exp in
                   group["revs"]}  # fmt: skip
    assert experiments == set(names)


def experiment(name: str, baseline: str, accuracy: float, complete: bool = True, **train) -> dict:
    return {"name": name, "baseline": baseline, "complete": complete, "metrics": {"accuracy": accuracy}, "train": train}


def test_show_ranks_one_sweep_and_lists_its_incomplete_experiments_apart():
    page = sweep.render(
        [
            experiment("sweep-0a0a0a-0", "c" * 40, 0.91, learning_rate=0.001),
            experiment("sweep-0a0a0a-1", "c" * 40, 0.93, learning_rate=0.002),
            experiment("sweep-0a0a0a-2", "c" * 40, 0.99, complete=False, learning_rate=0.003),
        ],
        "sweep-",
    )
    assert page.splitlines() == [
        "| experiment | test accuracy | single view | test loss | train.learning_rate |",
        "| --- | --- | --- | --- | --- |",
        "| sweep-0a0a0a-1 | 0.93 |  |  | 0.002 |",
        "| sweep-0a0a0a-0 | 0.91 |  |  | 0.001 |",
        "",
        "Incomplete, not ranked (Git ref pushed, outputs missing from the DVC remote): sweep-0a0a0a-2",
    ]


def test_show_never_ranks_two_sweeps_in_one_table():
    """Same prefix, another grid or another baseline: separate tables, and a note saying so."""
    page = sweep.render(
        [
            experiment("sweep-0a0a0a-0", "c" * 40, 0.91, seed=1),
            experiment("sweep-0b0b0b-0", "c" * 40, 0.95, seed=2),
            experiment("sweep-0b0b0b-1", "d" * 40, 0.97, seed=3),
            experiment("by-hand", "c" * 40, 0.90),
        ],
        "",
    )
    assert page.startswith("Note: the experiments named ... come from 4 sweeps")
    titles = [line for line in page.splitlines() if line.startswith("### ")]
    assert titles == [
        "### sweep 0a0a0a, baseline ccccccc",
        "### sweep 0b0b0b, baseline ccccccc",
        "### sweep 0b0b0b, baseline ddddddd",
        "### experiments not named by a sweep, baseline ccccccc",
    ]
    assert all(len([line for line in part.splitlines() if line.startswith("| sweep") or line.startswith("| by")]) == 1
               for part in page.split("### ")[1:])  # fmt: skip


def test_a_sweep_is_named_by_its_grid_and_baseline():
    ids = {sweep.sweep_id(grid, baseline) for grid in ("train.seed=1,2", "train.seed=1,3") for baseline in "ab"}
    assert len(ids) == 4 and all(re.fullmatch("[0-9a-f]{6}", id_) for id_ in ids)
    assert sweep.sweep_id("train.seed=1,2", "a") == sweep.sweep_id(" train.seed=1,2 ", "a")  # as the shell splits it
    assert (
        sweep.without_secrets("https://x-access-token:ghs_abc@github.com/o/r.git") == "https://***@github.com/o/r.git"
    )


# run_point's order, with Git, DVC and the training replaced by fakes that log what they are asked: the promise is
# that nothing reaches the Git remote before its outputs are on the DVC remote, and that no experiment is trained
# twice or overwritten. tests/test_sweep_faults.py breaks the real remotes at each step.
BASELINE = "ab" + "c" * 38
TRAINED = "e" * 40
GRID = "train.epochs=1,2"


class FakeRepo:
    def __init__(self, log, diverged):
        self.log, self.diverged = log, diverged
        remotes = {"team": {"url": "s3://user:token@bucket/cache"}, "backup": {"url": "/mnt/backup"}}
        self.config = {"core": {"remote": "team"}, "remote": remotes}
        self.experiments = self

    def pull(self, remote):
        self.log.append(f"pull from {remote}")

    def push(self, git_remote=None, names=None, revs=None, workspace=None, remote=None, push_cache=None):
        if names is None:  # repo.push: outputs to the DVC remote
            self.log.append(f"push outputs of {revs} to {remote} (workspace={workspace})")
            return None
        self.log.append(f"push {names} to {git_remote} (push_cache={push_cache})")  # repo.experiments.push
        return {"diverged": names} if self.diverged else {"uploaded": names}


@pytest.fixture
def fake_point(monkeypatch):
    """fake_point(local=None, remote={}, trained=0, diverged=False, point=0) -> the log of what run_point asked."""
    import contextlib

    def setup(local=None, remote=None, trained=0, diverged=False, point=0):
        log = []
        ref_made, index = {"ref": local}, {"point": point}

        def git(*args):
            ref = sweep.experiment_ref(BASELINE, f"sweep-{sweep.sweep_id(GRID, BASELINE)}-{index['point']}")
            if args == ("rev-parse", "HEAD"):
                return BASELINE + "\n"
            if args == ("for-each-ref", "--format=%(objectname)", ref):
                return (local or "") + "\n"
            if args == ("rev-parse", ref):
                return ref_made["ref"] + "\n"
            raise AssertionError(args)

        def remote_experiments(git_remote, what):
            log.append(f"list {git_remote} ({what})")
            return dict(remote or {})

        @contextlib.contextmanager
        def dvc_step(step, then, warnings=None):
            log.append(f"step: {step}; if it fails: {then}")
            yield FakeRepo(log, diverged)

        def check_dvc_remote(repo, name, write, then):
            assert isinstance(repo, FakeRepo)
            log.append(f"check {name} write={write} ({then})")

        def exp_run(command, **kwargs):
            log.append(" ".join(command))
            if trained == 0:
                ref_made["ref"] = TRAINED
            return subprocess.CompletedProcess(command, trained)

        monkeypatch.setattr(sweep, "git", git)
        monkeypatch.setattr(sweep, "remote_experiments", remote_experiments)
        monkeypatch.setattr(sweep, "dvc_step", dvc_step)
        monkeypatch.setattr(sweep, "check_dvc_remote", check_dvc_remote)
        monkeypatch.setattr(sweep.subprocess, "run", exp_run)
        return log

    return setup


WHERE = "DVC remote 'team' (s3://***@bucket/cache)"  # the remote's URL without its credentials
AGAIN = "run again to push it without training"


def test_a_point_is_checked_trained_then_pushed_outputs_first(fake_point):
    log = fake_point(point=1)
    name = sweep.run_point(GRID, 1, "sweep", "origin")
    assert name == f"sweep-{sweep.sweep_id(GRID, BASELINE)}-1"
    assert log == [
        "list origin (nothing was run)",
        "step: checking the DVC remote; if it fails: nothing was run",
        "check team write=True (nothing was run)",
        f"step: pulling the baseline's outputs from {WHERE}; if it fails: nothing was trained",
        "pull from team",
        f"dvc exp run -n {name} -S train.epochs=2",
        f"step: pushing its outputs to {WHERE}; if it fails: its Git ref was not pushed, so no one sees it half-pushed;"
        f" {AGAIN}",
        f"push outputs of ['{TRAINED}'] to team (workspace=False)",
        f"step: pushing it to Git remote 'origin'; if it fails: its outputs are on {WHERE}; {AGAIN}",
        f"push ['{name}'] to origin (push_cache=False)",
    ]


def test_a_point_already_trained_here_is_pushed_not_trained_again(fake_point, capsys):
    log = fake_point(local="d" * 40)
    name = sweep.run_point(GRID, 0, "sweep", "origin")
    assert [entry for entry in log if not entry.startswith("step: ")] == [
        "list origin (nothing was run)",
        "check team write=True (nothing was run)",
        f"push outputs of ['{'d' * 40}'] to team (workspace=False)",
        f"push ['{name}'] to origin (push_cache=False)",
    ]
    assert f"{name} already ran here (ddddddd); pushing it" in capsys.readouterr().out


def test_a_name_the_git_remote_has_for_another_commit_is_not_run_or_overwritten(fake_point):
    name = f"sweep-{sweep.sweep_id(GRID, BASELINE)}-0"
    log = fake_point(remote={f"refs/exps/ab/{'c' * 38}/{name}": "f" * 40})
    with pytest.raises(StageError) as error:
        sweep.run_point(GRID, 0, "sweep", "https://user:token@example.org/repo.git")
    assert str(error.value) == (
        f"sweep run {name}: Git remote 'https://***@example.org/repo.git' already has an experiment named {name}"
        " (another runner of this point, or an earlier run of this sweep): not run again, nothing overwritten;"
        " `sweep show` lists it"
    )
    assert log == ["list https://user:token@example.org/repo.git (nothing was run)"]  # nothing else asked


def test_the_same_name_from_another_baseline_also_counts_as_taken(fake_point):
    name = f"sweep-{sweep.sweep_id(GRID, BASELINE)}-0"
    fake_point(remote={f"refs/exps/12/{'3' * 38}/{name}": "f" * 40})
    with pytest.raises(StageError, match="already has an experiment named"):
        sweep.run_point(GRID, 0, "sweep", "origin")


def test_a_push_of_git_that_failed_before_is_completed_when_the_remote_has_this_very_commit(fake_point):
    name = f"sweep-{sweep.sweep_id(GRID, BASELINE)}-0"
    log = fake_point(local="d" * 40, remote={sweep.experiment_ref(BASELINE, name): "d" * 40})
    assert sweep.run_point(GRID, 0, "sweep", "origin") == name
    assert log[-1] == f"push ['{name}'] to origin (push_cache=False)"


def test_a_failed_training_pushes_nothing(fake_point):
    log = fake_point(trained=2)
    with pytest.raises(StageError, match=r": `dvc exp run` failed \(exit 2, output above\); nothing was pushed$"):
        sweep.run_point(GRID, 0, "sweep", "origin")
    assert not any(entry.startswith("push") for entry in log)


def test_a_name_another_runner_pushed_meanwhile_is_reported_not_overwritten(fake_point):
    fake_point(diverged=True)
    where = "this one's outputs are on the DVC remote but it is not listed"  # what the person can do next
    with pytest.raises(StageError, match=rf"from another runner meanwhile: not overwritten; {where}$"):
        sweep.run_point(GRID, 0, "sweep", "origin")


def test_an_index_outside_the_grid_is_refused_before_anything_runs(fake_point):
    log = fake_point()
    with pytest.raises(StageError, match=r"^sweep 'train.epochs=1,2' has 2 experiments; no index 2$"):
        sweep.run_point(GRID, 2, "sweep", "origin")
    with pytest.raises(StageError, match="no index -1"):
        sweep.run_point(GRID, -1, "sweep", "origin")
    assert log == []


def test_an_experiment_ref_is_dvcs_path_for_its_baseline_and_name():
    assert sweep.experiment_ref(BASELINE, "sweep-abcdef-3") == f"refs/exps/ab/{'c' * 38}/sweep-abcdef-3"


def test_a_dvc_remote_given_is_used_for_the_check_and_both_transfers(fake_point):
    log = fake_point()
    sweep.run_point(GRID, 0, "sweep", "origin", dvc_remote="backup")
    assert [entry for entry in log if "team" in entry] == []
    assert "check backup write=True (nothing was run)" in log and "pull from backup" in log
    assert any(entry.startswith("push outputs of") and entry.endswith("to backup (workspace=False)") for entry in log)
    where = "DVC remote 'backup' (/mnt/backup)"
    assert f"step: pushing it to Git remote 'origin'; if it fails: its outputs are on {where}; {AGAIN}" in log
