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
