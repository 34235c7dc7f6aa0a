"""tools/mutation.py reads mutmut's results right: each module's score, and the promise modules under target."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from fmnist.stage_runner import StageError
from tools import mutation


def write_meta(folder, path, exit_codes):
    meta = folder / f"{path}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": exit_codes}))


def test_scores_count_killed_among_the_mutants_that_ran_or_had_no_test(tmp_path, monkeypatch):
    write_meta(
        tmp_path,
        "fmnist/cpu.py",
        {
            "fmnist.cpu.x_flags__mutmut_1": 1,  # killed
            "fmnist.cpu.x_flags__mutmut_2": 3,  # pytest's internal error: killed
            "fmnist.cpu.x_flags__mutmut_3": 0,  # survived
            "fmnist.cpu.x_model__mutmut_1": 33,  # no test ran the function
            "fmnist.cpu.x_model__mutmut_2": None,  # not run yet
            "fmnist.cpu.x_model__mutmut_3": 36,  # timeout
            "fmnist.cpu.x_model__mutmut_4": 0,  # survived, but marked equivalent
        },
    )
    write_meta(tmp_path, "tools/predict.py", {"tools.predict.xǁImageǁload__mutmut_1": 1})
    monkeypatch.setattr(mutation, "EQUIVALENT", {"fmnist.cpu.x_model__mutmut_4": "changes nothing observable"})
    scores = mutation.results(tmp_path)
    assert scores["fmnist.cpu"] == Counter(
        {"killed": 2, "survived": 1, "no tests": 1, "not run": 1, "timeout or crash": 1, "equivalent": 1}
    )
    assert mutation.score(scores["fmnist.cpu"]) == 3 / 5  # the timeout failed the tests too
    assert mutation.score(scores["tools.predict"]) == 1.0
    assert mutation.score(Counter({"not run": 3})) is None
    assert mutation.below_target(scores) == ["fmnist.cpu 60%"]  # a promise module; tools.predict is not one
    table = mutation.table(scores)
    assert "| `fmnist.cpu` (promise) | 2 | 1 | 1 | 1 | 1 | 60% |" in table
    assert "| `tools.predict` | 1 | 0 | 0 | 0 | 0 | 100% |" in table


def test_files_map_to_mutmut_patterns_and_promise_modules_match_by_pattern():
    assert mutation.module_of("fmnist/params/train.py") == "fmnist.params.train"
    assert mutation.is_promise("fmnist.params.train") and mutation.is_promise("tools.review")
    assert not mutation.is_promise("fmnist.figures")


def test_a_run_that_left_mutants_unrun_is_an_error_not_a_score(tmp_path, monkeypatch, capsys):
    """mutmut exits as if done when its first, clean test run fails; no table of zeros may pass for a result."""
    write_meta(tmp_path / "mutants", "fmnist/cpu.py", {"fmnist.cpu.x_flags__mutmut_1": None})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mutation.subprocess, "run", lambda command: subprocess.CompletedProcess(command, 0))
    monkeypatch.setattr(sys, "argv", ["tools.mutation", "fmnist/cpu.py"])
    with pytest.raises(StageError, match=r"^1 mutants were not run: mutmut stopped early"):
        mutation.main()
    assert "| module |" not in capsys.readouterr().out
