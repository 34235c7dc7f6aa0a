"""tools/mutation.py reads mutmut's results right: each module's score, and the promise modules under target."""

import importlib
import inspect
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
    scores = mutation.by_module(mutation.statuses(tmp_path))
    assert scores["fmnist.cpu"] == Counter(
        {"killed": 2, "survived": 1, "no tests": 1, "not run": 1, "timeout or crash": 1, "equivalent": 1}
    )
    assert mutation.score(scores["fmnist.cpu"]) == 3 / 5  # the timeout failed the tests too
    assert mutation.score(scores["tools.predict"]) == 1.0
    assert mutation.score(Counter({"not run": 3})) is None
    table = mutation.table(scores)
    assert "| `fmnist.cpu` | 2 | 1 | 1 | 1 | 1 | 60% |" in table
    assert "| `tools.predict` | 1 | 0 | 0 | 0 | 0 | 100% |" in table


def test_a_promise_is_scored_on_the_mutants_of_the_code_that_keeps_it(tmp_path):
    write_meta(
        tmp_path,
        "tools/review.py",
        {
            "tools.review.x_gate_problem__mutmut_1": 1,
            "tools.review.x_gate_problem__mutmut_2": 0,
            "tools.review.x_stale_stages__mutmut_1": 1,
            "tools.review.x_mermaid_chart__mutmut_1": 0,  # drawing a chart: no promise
            "tools.review.xǁReviewǁrender__mutmut_1": 0,
        },
    )
    write_meta(tmp_path, "fmnist/params/download.py", {"fmnist.params.download.x__sha256__mutmut_1": 0})
    found = mutation.statuses(tmp_path)
    promises = mutation.by_promise(found)
    assert promises == {
        "tools.review: gate and staleness": Counter({"killed": 2, "survived": 1}),
        "fmnist.params": Counter({"survived": 1}),  # the package, each section's schema included
    }
    assert mutation.below_target(promises) == ["fmnist.params 0%", "tools.review: gate and staleness 67%"]
    assert mutation.score(mutation.by_module(found)["tools.review"]) == 2 / 5


def test_every_promise_names_code_that_exists():
    """A renamed function must not leave its promise scoring nothing."""
    for promise, patterns in mutation.PROMISES.items():
        for pattern in patterns:
            module_name, _, rest = pattern.partition(".x_")
            if not rest:  # a whole module, "fmnist.cpu.*", or a package, "fmnist.params.*"
                importlib.import_module(pattern.removesuffix(".*"))
                continue
            module = importlib.import_module(module_name)
            function = rest.removesuffix("__*")
            assert inspect.isfunction(getattr(module, function, None)), f"{promise}: {module_name}.{function}"


def test_files_map_to_mutmut_patterns():
    assert mutation.module_of("fmnist/params/train.py") == "fmnist.params.train"
    assert mutation.module_of("fmnist/params/__init__.py") == "fmnist.params"  # as mutmut names its mutants


def test_a_run_that_left_mutants_unrun_is_an_error_not_a_score(tmp_path, monkeypatch, capsys):
    """mutmut exits as if done when its first, clean test run fails; no table of zeros may pass for a result."""
    write_meta(tmp_path / "mutants", "fmnist/cpu.py", {"fmnist.cpu.x_flags__mutmut_1": None})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mutation.subprocess, "run", lambda command: subprocess.CompletedProcess(command, 0))
    monkeypatch.setattr(sys, "argv", ["tools.mutation", "fmnist/cpu.py"])
    with pytest.raises(StageError, match=r"^1 mutants were not run: mutmut stopped early"):
        mutation.main()
    assert "| module |" not in capsys.readouterr().out
