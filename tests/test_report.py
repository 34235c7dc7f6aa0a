"""The pull-request review, end to end: a git repository whose two commits hold real (tiny) pipeline runs,
a fake GitHub API on 127.0.0.1, and `python -m tools.review` as the workflow runs it."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fmnist import cpu, params, paths
from fmnist.params.all_sections import AllParams
from tests.conftest import TINY_RUN_EPOCHS, copy_tiny_run, project_env
from tests.fake_github import FakeGitHub
from tools import review as report


def run(args, cwd, env=None, check=True):
    result = subprocess.run(args, cwd=cwd, env=env or project_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{result.stdout}\n{result.stderr}"
    return result


def set_params(project, **sections):
    values = yaml.safe_load((project / "params.yaml").read_text())
    for section, updates in sections.items():
        values[section].update(updates)
    (project / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))


def commit(project, message):
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message], project)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_run):
    """Tags `base` (tiny_run's `dvc repro`, TINY_RUN_EPOCHS = 2 epochs) and `head` (3 epochs, reproduced here), each
    a real `dvc repro` in exact mode, committed."""
    root = tmp_path_factory.mktemp("review")
    shutil.copytree(tiny_run.parent / "source", root / "source")  # its own, for a test to move away
    project = copy_tiny_run(tiny_run, root / "project")
    for tag, epochs in (("base", TINY_RUN_EPOCHS), ("head", 3)):
        set_params(project, download={"sources": [str(root / "source")]}, train={"epochs": epochs})
        run(["dvc", "repro"], project)
        commit(project, tag)
        run(["git", "tag", tag], project)
    return project


@pytest.fixture
def pr(repo):
    """A fresh branch at `head` for one test; the workspace's untracked DVC outputs are irrelevant to the review."""
    run(["git", "checkout", "-q", "-f", "-B", "pr", "head"], repo)
    yield repo
    run(["git", "checkout", "-q", "-f", "head"], repo)


@pytest.fixture
def github():
    fake = FakeGitHub()
    server, url = fake.serve()
    fake.url = url
    yield fake
    server.shutdown()
    server.server_close()


def review(project, github, tmp_path, *args, base="base"):
    env = project_env() | {
        "GITHUB_API_URL": github.url,
        "GITHUB_REPOSITORY": github.repository,
        "GITHUB_TOKEN": github.token,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    result = run([sys.executable, "-m", "tools.review", "--base", base, *args], project, env, check=False)
    return result, (project / "review" / "report.md").read_text()


@pytest.mark.slow
def test_a_reproduced_pull_request_is_reported_and_its_comment_updated_not_duplicated(pr, github, tmp_path):
    result, text = review(pr, github, tmp_path, "--reproduce", "--comment", "7")
    assert result.returncode == 0, result.stderr
    assert "created comment 1000 on pull request #7" in result.stdout
    committed = json.loads((pr / paths.FINGERPRINT).read_text())["weights_sha256"]
    assert f"**Reproduced exactly** on {cpu.model()}: weights digest `{committed[:12]}`" in text
    assert "**Up to date**" in text and "**Gate passed**" in text
    accuracy = [line for line in text.splitlines() if line.startswith("| `accuracy` (metrics.json)")]
    head_accuracy = json.loads((pr / paths.METRICS).read_text())["accuracy"]
    assert accuracy[0].endswith(f"| {head_accuracy:.4f} |")  # the reproduced column equals the committed value
    assert "| train.epochs | 2 | 3 |" in text
    assert text.count("```mermaid") == 2 and "xychart-beta" in text
    assert (tmp_path / "summary.md").read_text() == text  # the job summary holds the same report
    assert [c["body"] for c in github.comments] == [text]

    # A later push: the same comment is updated, never a second one.
    set_params(pr, review={"max_accuracy_drop": 0.004})  # the gate reads the base's value, not this one
    commit(pr, "tighter gate in the PR")
    result, text = review(pr, github, tmp_path, "--comment", "7")
    assert result.returncode == 0, result.stderr
    assert "updated comment 1000 on pull request #7" in result.stdout
    assert len(github.comments) == 1 and github.comments[0]["body"] == text
    assert "**Reproduction not run** (run without --reproduce)" in text
    assert [method for method, _ in github.requests] == ["GET", "POST", "GET", "PATCH"]


@pytest.mark.slow
def test_changing_code_or_params_without_repro_is_stale_and_fails_naming_the_stages(pr, github, tmp_path):
    set_params(pr, train={"dropout": 0.2})
    (pr / "stages" / "evaluate.py").write_text((pr / "stages" / "evaluate.py").read_text() + "\n# edited\n")
    commit(pr, "forgot dvc repro")
    result, text = review(pr, github, tmp_path, "--reproduce")
    assert result.returncode == 1
    assert result.stderr.startswith("error: stale results: train (params train modified); evaluate (")
    assert "stages/evaluate.py modified" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "**Stale results**: `train` (params train modified); `evaluate`" in text
    assert "**Reproduction not run** (results are stale)" in text


@pytest.mark.slow
def test_a_committed_digest_that_does_not_reproduce_fails(pr, github, tmp_path):
    # Results from elsewhere: another digest, committed consistently with dvc.lock, so nothing is stale.
    fingerprint = json.loads((pr / paths.FINGERPRINT).read_text()) | {"weights_sha256": "0" * 64}
    (pr / paths.FINGERPRINT).write_text(json.dumps(fingerprint, indent=2) + "\n")
    lock = (pr / "dvc.lock").read_text()
    old = subprocess.run(["git", "show", f"head:{paths.FINGERPRINT}"], cwd=pr, capture_output=True).stdout
    new = (pr / paths.FINGERPRINT).read_bytes()
    (pr / "dvc.lock").write_text(lock.replace(hashlib.md5(old).hexdigest(), hashlib.md5(new).hexdigest()))
    commit(pr, "results from another machine")
    result, text = review(pr, github, tmp_path, "--reproduce", "--comment", "8")
    assert result.returncode == 1
    assert "error: not reproduced: weights digest" in result.stderr and "000000000000 committed" in result.stderr
    assert "**Up to date**" in text and "❌ **Not reproduced**" in text
    assert github.comments[0]["body"] == text  # the failing report is still posted


@pytest.mark.slow
def test_a_reproduction_that_fails_to_run_is_reported_and_fails(pr, github, tmp_path):
    source = pr.parent / "source"
    source.rename(pr.parent / "moved")  # the data the committed params name is gone
    try:
        result, text = review(pr, github, tmp_path, "--reproduce", "--comment", "10")
    finally:
        (pr.parent / "moved").rename(source)
    assert result.returncode == 1
    assert "error: train-images-idx3-ubyte.gz: no source worked" in result.stderr  # the run's own output
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: not reproduced: `dvc repro` of HEAD failed (its output is in the log)"
    assert "❌ **Not reproduced**: `dvc repro` of HEAD failed" in text and github.comments[0]["body"] == text


@pytest.mark.slow
def test_a_read_only_token_still_writes_the_report_and_runs_the_checks(pr, github, tmp_path):
    github.read_only = True
    result, text = review(pr, github, tmp_path, "--comment", "9")
    assert result.returncode == 0, result.stderr
    assert "warning: comment not posted on pull request #9: HTTP 403" in result.stdout
    assert github.comments == [] and (tmp_path / "summary.md").read_text() == text


@pytest.mark.slow
def test_the_gate_compares_committed_head_with_committed_base(pr, github, tmp_path):
    metrics = json.loads((pr / paths.METRICS).read_text())
    base_accuracy = json.loads(run(["git", "show", f"base:{paths.METRICS}"], pr).stdout)["accuracy"]
    limit = params.load(AllParams, pr / "params.yaml").review.max_accuracy_drop
    metrics["accuracy"] = round(base_accuracy - limit - 0.001, 4)  # 0.1 pp beyond the limit
    (pr / paths.METRICS).write_text(json.dumps(metrics))
    subprocess.run(["dvc", "commit", "-q", "-f", "evaluate"], cwd=pr, env=project_env(), check=True)
    commit(pr, "worse")
    result, text = review(pr, github, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"more than the allowed {limit * 100:.2g} pp")
    assert "**Gate failed**" in text


@pytest.mark.slow
def test_a_reproduction_in_an_environment_other_than_the_lock_is_refused_before_it_runs(pr, github, tmp_path):
    """The head locks keras at another version than this environment has: a re-run here would prove nothing."""
    lock = (pr / "requirements.txt").read_text()
    installed = next(line.split("==")[1].split()[0] for line in lock.splitlines() if line.startswith("keras=="))
    (pr / "requirements.txt").write_text(lock.replace(f"keras=={installed} ", "keras==0.0.1 "))
    subprocess.run(["dvc", "commit", "-q", "-f", "train", "evaluate"], cwd=pr, env=project_env(), check=True)
    commit(pr, "a new lock, results committed with it")
    result, text = review(pr, github, tmp_path, "--reproduce")
    assert result.returncode == 1
    assert f"this environment is not HEAD's requirements.txt: keras {installed} (locked 0.0.1)" in result.stderr
    assert "reproducing" not in result.stdout  # refused before the pipeline ran
    assert "**Up to date**" in text


@pytest.mark.slow
def test_a_pull_request_cannot_loosen_its_own_gate(pr, github, tmp_path):
    """The PR raises review.max_accuracy_drop to 0.5 and drops accuracy past the base's limit: that limit holds."""
    metrics = json.loads((pr / paths.METRICS).read_text())
    base_accuracy = json.loads(run(["git", "show", f"base:{paths.METRICS}"], pr).stdout)["accuracy"]
    limit = params.load(AllParams, pr / "params.yaml").review.max_accuracy_drop
    metrics["accuracy"] = round(base_accuracy - limit - 0.001, 4)
    (pr / paths.METRICS).write_text(json.dumps(metrics))
    set_params(pr, review={"max_accuracy_drop": 0.5})
    subprocess.run(["dvc", "commit", "-q", "-f", "evaluate"], cwd=pr, env=project_env(), check=True)
    commit(pr, "worse, with a looser gate")
    result, text = review(pr, github, tmp_path)
    assert result.returncode == 1
    assert f"more than the allowed {limit * 100:.2g} pp" in result.stderr
    assert "**Gate failed**" in text


@pytest.mark.slow
def test_an_unknown_base_revision_is_one_clear_error_and_the_comment_says_nothing_was_compared(pr, github, tmp_path):
    result, text = review(pr, github, tmp_path, "--comment", "7", base="no-such-branch")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: base revision 'no-such-branch' is not in this repository (fetch it, e.g. `git fetch origin"
        " no-such-branch`): nothing was compared"
    ]
    assert "**Not compared**: base revision `no-such-branch` is not in this repository" in text
    assert [c["body"] for c in github.comments] == [text]


@pytest.mark.slow
def test_a_head_without_dvc_lock_is_one_clear_error_naming_it(pr, github, tmp_path):
    run(["git", "rm", "-q", "dvc.lock"], pr)
    commit(pr, "lost the lock")
    result, text = review(pr, github, tmp_path, "--comment", "7", "--reproduce")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: head revision 'HEAD' has no dvc.lock: its results are not tied to a run of the pipeline; run"
        " `dvc repro` and commit dvc.lock"
    ]
    assert "**No `dvc.lock`** in head" in text and "**Reproduction not run**" in text
    assert [c["body"] for c in github.comments] == [text]


@pytest.mark.slow
def test_a_base_from_before_a_stage_existed_compares_the_rest_and_says_what_not(pr, github, tmp_path):
    # The base as it was before `evaluate` existed: no stage, no lock entry, no test metrics or plots.
    run(["git", "checkout", "-q", "-B", "old-base", "base"], pr)
    pipeline = yaml.safe_load((pr / "dvc.yaml").read_text())
    del pipeline["stages"]["evaluate"]
    (pr / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    lock = yaml.safe_load((pr / "dvc.lock").read_text())
    del lock["stages"]["evaluate"]
    (pr / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    run(["git", "rm", "-q", "--cached", str(paths.METRICS), "reports/confusion.csv", "reports/confusion.png"], pr)
    commit(pr, "before evaluate")
    run(["git", "checkout", "-q", "-f", "pr"], pr)
    result, text = review(pr, github, tmp_path, "--comment", "7", base="old-base")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "note: base revision 'old-base' has no stage evaluate: its metrics (reports/metrics.json) are not compared"
    ]
    assert "**Not compared**: base `old-base` has no stage `evaluate`" in text
    assert "**Gate passed**: no test accuracy on one side to compare." in text
    assert "| train.epochs | 2 | 3 |" in text  # the rest is compared
    assert [c["body"] for c in github.comments] == [text]


# The decisions, on their own.


def test_stale_stages_ignores_missing_data_but_not_code_params_or_commands():
    status = {
        "download": [{"changed outs": {"data/raw": "not in cache"}}],
        "preprocess": [{"changed deps": {"data/raw": "deleted"}}],
        "train": [{"changed deps": {"fmnist/model.py": "modified", "data/prepared/train.npz": "deleted"}}],
        "evaluate": [{"changed deps": {"params.yaml": {"evaluate.mirror_average": "modified"}}}, "changed command"],
    }
    outputs = {"data/raw", "data/prepared", "models/model.keras"}
    assert report.stale_stages(status, outputs) == {
        "train": ["fmnist/model.py modified"],
        "evaluate": ["params evaluate.mirror_average modified", "changed command"],
    }


def test_every_reason_a_stage_is_stale_is_listed_and_its_name_has_no_dvc_yaml_prefix():
    status = {
        "dvc.yaml:train": [
            "changed command",
            {"changed deps": {"params.yaml": {"train.seed": "modified", "train.epochs": "modified"}}},
            {"changed deps": {"params.yaml": {"runtime.threads": "modified"}, "fmnist/cpu.py": "modified"}},
        ]
    }
    assert report.stale_stages(status, set()) == {
        "train": [
            "changed command",
            "params train.seed modified",
            "params train.epochs modified",
            "params runtime.threads modified",
            "fmnist/cpu.py modified",
        ]
    }


def results(accuracy, digest="a" * 64, mode="exact", isa="AVX2", machine=None):
    fingerprint = {"weights_sha256": digest, "runtime_mode": mode, "onednn_isa": isa}
    if machine:
        fingerprint["machine"] = machine
    return report.Results({str(paths.METRICS): {"accuracy": accuracy}, str(paths.FINGERPRINT): fingerprint})


def test_a_reproduction_on_arm_is_held_to_the_noise_bound_not_to_the_digest():
    """Exact mode promises its bits on x86-64 only (docs/platforms.md): on aarch64 other kernels run."""
    committed = results(0.9401, machine="x86_64")
    on_arm = results(0.9395, "b" * 64, isa=None, machine="aarch64")
    assert not report.bits_promised(committed, on_arm)
    assert report.reproduction_problem(committed, on_arm, 0.01) is None
    far = results(0.9201, "b" * 64, isa=None, machine="aarch64")
    assert report.reproduction_problem(committed, far, 0.01) == (
        "test accuracy 0.9201 reproduced, 0.9401 committed: further apart than the 1 pp noise bound"
    )
    # A fingerprint from before it named the machine was made on x86-64: the digest is still promised
    assert report.bits_promised(results(0.94), results(0.94, machine="AMD64"))
    assert "exact mode promises equal bits" in report.reproduction_problem(results(0.94), results(0.94, "b" * 64), 0.01)

    review = report.Review("main", "pr", committed, committed, [], {}, on_arm, None, None, 0.01, {})
    [line] = [line for line in review.render().splitlines() if "**Reproduced" in line]
    assert line.endswith(
        "within the 1 pp noise bound. Exact mode promises equal bits on x86-64 CPUs only; this reproduction ran on"
        " aarch64."
    )
    same = report.Review("main", "pr", committed, committed, [], {}, committed, None, None, 0.01, {})
    [line] = [line for line in same.render().splitlines() if "**Reproduced" in line]
    assert line.endswith(f": weights digest `{'a' * 12}` as committed.") and "**Reproduced exactly**" in line


def test_exact_mode_needs_the_same_digest_native_mode_accuracy_within_the_noise():
    assert report.reproduction_problem(results(0.93), results(0.93), 0.005) is None
    problem = report.reproduction_problem(results(0.93), results(0.93, "b" * 64, isa="AVX512_CORE"), 0.005)
    assert problem == (
        "weights digest bbbbbbbbbbbb reproduced, aaaaaaaaaaaa committed (committed with oneDNN at AVX2, reproduced at"
        f" AVX512_CORE on {cpu.model()}); exact mode promises equal bits"
    )
    native = results(0.930, mode="native")
    assert report.reproduction_problem(native, results(0.926, "b" * 64, "native"), 0.005) is None
    assert "further apart than the 0.5 pp" in report.reproduction_problem(native, results(0.924, "b", "native"), 0.005)
    assert report.reproduction_problem(native, results(0.925, "b" * 64, "native"), 0.005) is None  # the limit itself
    # Committed in exact mode, reproduced in native (or the other way round): no digest promised, accuracy compared
    assert report.reproduction_problem(results(0.93), results(0.93, "b" * 64, "native"), 0.005) is None
    assert report.reproduction_problem(native, results(0.93, "b" * 64), 0.005) is None
    assert "further apart" in report.reproduction_problem(results(0.93), results(0.92, "b" * 64, "native"), 0.005)


@pytest.mark.parametrize("missing", ["committed", "reproduced"])
def test_a_side_without_test_accuracy_cannot_be_compared(missing):
    fingerprint = {str(paths.FINGERPRINT): {"weights_sha256": "b" * 64, "runtime_mode": "native"}}
    sides = {"committed": results(0.93, mode="native"), "reproduced": results(0.93, "c" * 64, "native")}
    sides[missing] = report.Results(fingerprint)
    assert report.reproduction_problem(sides["committed"], sides["reproduced"], 0.005) == "no test accuracy to compare"


def test_gate_problem():
    assert report.gate_problem(results(0.9), results(0.89), 0.005) == (
        "test accuracy fell from 0.9000 to 0.8900, more than the allowed 0.5 pp"
    )
    assert report.gate_problem(results(0.9), results(0.89), 0.02) is None
    assert report.gate_problem(report.Results(), results(0.9), 0.005) is None


@pytest.mark.parametrize(
    ("before", "after", "fails"),
    [(0.9403, 0.9303, False), (0.94, 0.93, False), (0.9403, 0.9302, True), (0.9403, 0.9403, False)],
)
def test_the_gate_allows_a_drop_of_exactly_the_limit_and_no_more(before, after, fails):
    """Metrics carry 4 decimals: the drop is compared in those units, so 0.94 - 0.93 (0.010000000000000009 in
    floating point) is exactly the 0.01 limit, and one unit of the last decimal more fails."""
    assert (report.gate_problem(results(before), results(after), 0.01) is not None) == fails


@pytest.mark.parametrize("limit", [0.003, 0.05, 0.25, 0.9])
def test_a_drop_of_exactly_the_limit_passes_whatever_the_limit(limit):
    assert report.gate_problem(results(0.95), results(round(0.95 - limit, 4)), limit) is None
    assert report.gate_problem(results(0.95), results(round(0.95 - limit - 0.0001, 4)), limit) is not None


def test_mermaid_chart_has_one_line_per_series_and_names_their_colours():
    chart = report.mermaid_chart("Accuracy", {"base validation": [0.8, 0.85], "head validation": [0.8, 0.86, 0.9]})
    assert chart[0] == "```mermaid" and "xychart-beta" in chart
    assert '  x-axis "epoch" [1, 2, 3]' in chart
    lines = [line for line in chart if line.startswith("  line")]
    assert lines == ["  line [0.8000, 0.8500]", "  line [0.8000, 0.8600, 0.9000]"]
    assert chart[-1] == "Lines: base validation (blue), head validation (red)."


@pytest.mark.parametrize("base_review", [None, {"max_accuracy_drop": "lots"}, {"max_drop": 0.5}])
def test_a_base_without_a_valid_gate_uses_the_schema_default_not_the_pull_requests(
    base_review, tmp_path, monkeypatch, capsys
):
    """review.yml runs in the pull request's checkout: its own params.yaml must not set the limit it is held to."""
    from fmnist.params.review import DEFAULT_MAX_ACCURACY_DROP

    base_params = yaml.safe_load((Path(__file__).parents[1] / paths.PARAMS).read_text())
    base_params.pop("review")
    if base_review is not None:
        base_params["review"] = base_review
    monkeypatch.chdir(tmp_path)
    run(["git", "init", "-q"], tmp_path)
    (tmp_path / paths.PARAMS).write_text(yaml.safe_dump(base_params))
    commit(tmp_path, "base")
    pr_params = {**base_params, "review": {"max_accuracy_drop": 0.5}}  # the pull request's, in its workspace
    (tmp_path / paths.PARAMS).write_text(yaml.safe_dump(pr_params))
    assert report.max_accuracy_drop("HEAD") == DEFAULT_MAX_ACCURACY_DROP == 0.01
    warning = capsys.readouterr().err
    reason = "KeyError" if base_review is None else "ValidationError"
    assert warning == (
        f"warning: review: no valid review.max_accuracy_drop in HEAD's params.yaml ({reason}); the gate uses the"
        " default, 0.01\n"
    )


def test_the_base_gate_is_the_one_used(tmp_path, monkeypatch, capsys):
    base_params = yaml.safe_load((Path(__file__).parents[1] / paths.PARAMS).read_text())
    base_params["review"] = {"max_accuracy_drop": 0.02}
    monkeypatch.chdir(tmp_path)
    run(["git", "init", "-q"], tmp_path)
    (tmp_path / paths.PARAMS).write_text(yaml.safe_dump(base_params))
    commit(tmp_path, "base")
    (tmp_path / paths.PARAMS).write_text(yaml.safe_dump({**base_params, "review": {"max_accuracy_drop": 0.5}}))
    assert report.max_accuracy_drop("HEAD") == 0.02
    assert capsys.readouterr().err == ""


def test_pipeline_outputs_are_every_out_metric_and_plot_of_every_stage():
    """The repository's own dvc.yaml: plain paths and those with options alike."""
    outputs = report.pipeline_outputs(Path(__file__).parents[1] / paths.PIPELINE)
    assert {"data/raw", "data/prepared", "models/model.keras", "logs/fit", "logs/evaluate"} <= outputs
    assert {"reports/metrics.json", "reports/training/metrics.json"} <= outputs  # metrics, with `cache: false`
    assert {"reports/training/plots", "reports/confusion.csv", "reports/confusion.png"} <= outputs  # plots
    assert not any(name.startswith(("fmnist/", "stages/")) or name == "params.yaml" for name in outputs)


def test_pipeline_outputs_of_an_empty_dvc_yaml_are_none(tmp_path):
    (tmp_path / "dvc.yaml").write_text("")
    assert report.pipeline_outputs(tmp_path / "dvc.yaml") == set()
    (tmp_path / "dvc.yaml").write_text("stages:\n  only:\n    cmd: 'true'\n")
    assert report.pipeline_outputs(tmp_path / "dvc.yaml") == set()


def test_a_stage_only_one_side_has_is_named_with_the_metrics_not_compared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(["git", "init", "-q"], tmp_path)
    both = {"train": {"cmd": "t", "outs": ["models"]}}
    with_eval = {**both, "evaluate": {"cmd": "e", "metrics": [{"reports/metrics.json": {"cache": False}}, "m2.json"]}}
    with_extra = {**both, "extra": {"cmd": "x"}}
    for tag, stages in (("old", both), ("new", with_eval), ("other", with_extra)):
        (tmp_path / paths.PIPELINE).write_text(yaml.safe_dump({"stages": stages}))
        commit(tmp_path, tag)
        run(["git", "tag", tag], tmp_path)
    assert report.missing_stages("old", "old") == []
    assert report.missing_stages("old", "new") == [
        "base revision 'old' has no stage evaluate: its metrics (reports/metrics.json, m2.json) are not compared"
    ]
    assert report.missing_stages("new", "old") == [
        "head revision 'old' has no stage evaluate: its metrics (reports/metrics.json, m2.json) are not compared"
    ]
    assert report.missing_stages("new", "other") == [
        "base revision 'new' has no stage extra",  # one without metrics
        "head revision 'other' has no stage evaluate: its metrics (reports/metrics.json, m2.json) are not compared",
    ]
    (tmp_path / paths.PIPELINE).unlink()
    commit(tmp_path, "no pipeline")
    assert report.missing_stages("HEAD", "old") == ["base revision 'HEAD' has no stage train"]
