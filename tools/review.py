"""Pull-request review: what HEAD commits against what the base commits, whether it is stale, whether it reproduces.

    python -m tools.review --base main [--reproduce] [--comment PR] [--out review]

1. Committed results: `dvc metrics diff`, `dvc params diff` and `dvc plots diff` between the base revision
   and HEAD as committed, so a reviewer sees the author's claim without any training.
2. Stale results: `dvc status` in a fresh checkout of HEAD (a git worktree with an empty DVC cache) names
   every stage whose code, params or command changed after its dvc.lock entry ("forgot `dvc repro`").
3. With --reproduce, the pipeline runs again from the data in that checkout. In exact mode (params
   `runtime.mode`) the weights digest must equal the committed one; otherwise test accuracy must be
   within `review.max_accuracy_drop` of the committed value (the measured seed-to-seed noise).
4. The gate: HEAD's committed test accuracy may fall at most `review.max_accuracy_drop` below the base's.

Writes review/report.md (training curves inline as Mermaid charts, which GitHub renders), appends it
to $GITHUB_STEP_SUMMARY when set and, with --comment, posts it as one pull-request comment that later
runs update (fmnist/github.py). Exits 1, after all that, if a check failed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fmnist import cpu, github, package_lock, params, paths
from fmnist.atomic_outputs import write_text
from fmnist.commands import dvc, run
from fmnist.params.review import DEFAULT_MAX_ACCURACY_DROP, ReviewParams
from fmnist.stage_runner import StageError, run_stage

MARKER = "<!-- fashion-mnist-review -->"  # lets the workflow find and update its own comment
HEADLINE = "accuracy"
# Metrics shown in the main table, in order (file, key); the rest (per-class accuracy) are folded away.
MAIN_METRICS = [
    (paths.METRICS, "accuracy"),
    (paths.METRICS, "single_view_accuracy"),
    (paths.METRICS, "loss"),
    (paths.TRAINING_METRICS, "eval.accuracy"),  # validation (before DVCLive: train_metrics.json val_accuracy)
    (paths.TRAINING_METRICS, "eval.loss"),
    (paths.TRAINING_METRICS, "parameters"),
]
CURVES = {"Accuracy": "accuracy", "Loss": "loss"}  # dvc.yaml plot id: its y field (a train and an eval file)
# Mermaid has no legend: each line's colour is fixed here and named under the chart.
LINE_COLOURS = {
    "base train": ("#9ecae1", "light blue"),
    "base validation": ("#1f77b4", "blue"),
    "head train": ("#fdae6b", "light orange"),
    "head validation": ("#d62728", "red"),
}


def flatten(values: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class Results:
    """One revision's committed (or reproduced) results: {metrics file: {flattened key: value}}."""

    files: dict[str, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> "Results":
        """The metrics files dvc.yaml declares, as DVC reads them in `folder`."""
        shown = json.loads(dvc("metrics", "show", "--json", cwd=folder)).get("", {}).get("data", {})
        return cls({file: flatten(values.get("data", {})) for file, values in shown.items()})

    def get(self, path: Path, key: str) -> object:
        return self.files.get(str(path), {}).get(key)


def committed_results(diff: dict) -> tuple[Results, Results]:
    """Base and head results from `dvc metrics diff --all --json` (its old and new values)."""
    base, head = Results(), Results()
    for file, metrics in diff.items():
        for key, values in metrics.items():
            if values.get("old") is not None:
                base.files.setdefault(file, {})[key] = values["old"]
            if values.get("new") is not None:
                head.files.setdefault(file, {})[key] = values["new"]
    return base, head


def pipeline_outputs(dvc_yaml: Path) -> set[str]:
    """Every path a stage writes: a dependency on one of these is data, not code."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    outputs = set()
    for stage in stages.values():
        for out in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            outputs.add(next(iter(out)) if isinstance(out, dict) else out)
    return outputs


def stale_stages(status: dict, outputs: set[str]) -> dict[str, list[str]]:
    """{stage: what changed after its dvc.lock entry}, from `dvc status --json` in a checkout with no cache.

    In such a checkout every data dependency and output reads as deleted or not in cache: that is
    expected. What marks a stage stale is a changed command, a changed params value, or a code file
    (any dependency no stage produces) that differs from the one its lock entry recorded.
    """
    stale = {}
    for stage, entries in status.items():
        reasons = []
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                reasons.append(entry)
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # a params file: {section or key: change}
                    reasons += [f"params {key} {what}" for key, what in change.items()]
                elif path not in outputs and not any(path.startswith(out + "/") for out in outputs):
                    reasons.append(f"{path} {change}")
        if reasons:
            stale[stage.split(":")[-1]] = reasons
    return stale


def _in_4th_decimals(value: float) -> int:
    """A difference of metrics in units of their 4th decimal, so that a difference of exactly a limit is the limit
    (0.94 - 0.93 > 0.01 in floating point)."""
    return round(value * 10_000)


X86_64 = ("x86_64", "AMD64", None)  # None: a fingerprint from before it named the machine, all made on x86-64


def bits_promised(committed: Results, reproduced: Results) -> bool:
    """Exact mode promises equal bits between two exact-mode runs on x86-64; a reproduction on another architecture
    (ARM) is held to the noise bound on accuracy, as native mode is."""
    return all(
        side.get(paths.FINGERPRINT, "runtime_mode") == "exact" and side.get(paths.FINGERPRINT, "machine") in X86_64
        for side in (committed, reproduced)
    )


def reproduction_problem(committed: Results, reproduced: Results, tolerance: float) -> str | None:
    """Why the reproduction does not match the committed results, or None when it does."""
    digest = committed.get(paths.FINGERPRINT, "weights_sha256")
    again = reproduced.get(paths.FINGERPRINT, "weights_sha256")
    if bits_promised(committed, reproduced):
        if digest != again:
            where = f"committed with oneDNN at {committed.get(paths.FINGERPRINT, 'onednn_isa')}"
            where += f", reproduced at {reproduced.get(paths.FINGERPRINT, 'onednn_isa')} on {cpu.model()}"
            return f"weights digest {str(again)[:12]} reproduced, {str(digest)[:12]} committed ({where}); exact mode promises equal bits"  # noqa: E501
        return None
    accuracy, accuracy_again = committed.get(paths.METRICS, HEADLINE), reproduced.get(paths.METRICS, HEADLINE)
    if accuracy is None or accuracy_again is None:
        return "no test accuracy to compare"
    if _in_4th_decimals(abs(accuracy - accuracy_again)) > _in_4th_decimals(tolerance):
        return (
            f"test accuracy {accuracy_again:.4f} reproduced, {accuracy:.4f} committed: "
            f"further apart than the {tolerance * 100:.2g} pp noise bound"
        )
    return None


def gate_problem(base: Results, head: Results, max_drop: float) -> str | None:
    """A message when committed test accuracy fell by more than max_drop (a fraction: 0.005 = 0.5 pp)."""
    before, after = base.get(paths.METRICS, HEADLINE), head.get(paths.METRICS, HEADLINE)
    if before is None or after is None:
        return None
    if _in_4th_decimals(before - after) > _in_4th_decimals(max_drop):
        return f"test accuracy fell from {before:.4f} to {after:.4f}, more than the allowed {max_drop * 100:.2g} pp"
    return None


def _number(value: object, signed: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return f"{value:+}" if signed else str(value)


def _change(before: object, after: object) -> object:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    return after - before if numbers else None


def metric_table(keys: list[tuple[str, str]], base: Results, head: Results, reproduced: Results | None) -> list[str]:
    lines = ["| metric | base | head | change | reproduced |", "| --- | ---: | ---: | ---: | ---: |"]
    for file, key in keys:
        before, after = base.get(file, key), head.get(file, key)
        again = reproduced.get(file, key) if reproduced else None
        name = f"`{key}` ({Path(file).relative_to(paths.REPORTS) if file.startswith(str(paths.REPORTS)) else file})"
        lines.append(
            f"| {name} | {_number(before)} | {_number(after)} | {_number(_change(before, after), True)} "
            f"| {_number(again)} |"
        )
    return lines


def mermaid_chart(title: str, series: dict[str, list[float]]) -> list[str]:
    """A Mermaid xychart-beta line chart, one line per series in LINE_COLOURS order (GitHub renders it)."""
    names = [name for name in LINE_COLOURS if series.get(name)]
    if not names:
        return []
    values = [v for name in names for v in series[name]]
    epochs = max(len(series[name]) for name in names)
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or 0.01
    palette = ", ".join(LINE_COLOURS[name][0] for name in names)
    lines = [
        "```mermaid",
        "---",
        "config:",
        "  themeVariables:",
        "    xyChart:",
        f'      plotColorPalette: "{palette}"',
        "---",
        "xychart-beta",
        f'  title "{title} per epoch"',
        f'  x-axis "epoch" [{", ".join(str(e) for e in range(1, epochs + 1))}]',
        f'  y-axis "{title.lower()}" {low - pad:.4f} --> {high + pad:.4f}',
    ]
    lines += [f"  line [{', '.join(f'{v:.4f}' for v in series[name])}]" for name in names]
    lines += ["```", "Lines: " + ", ".join(f"{name} ({LINE_COLOURS[name][1]})" for name in names) + "."]
    return lines


def curve_kind(row: dict) -> str:
    """A plotted point's line: DVCLive keeps validation under eval/ (before it, history.csv's val_* columns)."""
    return "validation" if "eval/" in row.get("filename", "") or row.get("field", "").startswith("val_") else "train"


def curves(base: str, head: str) -> dict[str, dict[str, list[float]]]:
    """{chart: {'base train': [...], 'head validation': [...], ...}} from `dvc plots diff base head`."""
    charts = {}
    for chart, y_field in CURVES.items():
        spec = json.loads(dvc("plots", "diff", base, head, "--targets", chart, "--show-vega"))
        series: dict[str, list[tuple[float, float]]] = {}
        for row in spec["data"]["values"]:
            side = "base" if row["rev"] == base else "head"
            x = float(row["step"] if "step" in row else row["epoch"])  # DVCLive's step, or an older commit's epoch
            y = float(row.get("dvc_inferred_y_value", row.get(y_field)))  # (DVC's name when a file gives two fields)
            series.setdefault(f"{side} {curve_kind(row)}", []).append((x, y))
        charts[chart] = {name: [y for _, y in sorted(points)] for name, points in series.items()}
    return charts


def revision_problem(role: str, revision: str) -> str | None:
    """Why `revision` cannot be reviewed at all: it is not a commit here."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], capture_output=True)
    if found.returncode == 0:
        return None
    return (
        f"{role} revision {revision!r} is not in this repository (fetch it, e.g. `git fetch origin {revision}`):"
        " nothing was compared"
    )


def has_lock(revision: str) -> bool:
    return (
        subprocess.run(["git", "cat-file", "-e", f"{revision}:{paths.PIPELINE_LOCK}"], capture_output=True).returncode
        == 0
    )


def pipeline_at(revision: str) -> dict[str, dict]:
    """dvc.yaml's stages at a revision ({} where it has none)."""
    try:
        return (yaml.safe_load(run(["git", "show", f"{revision}:{paths.PIPELINE}"])) or {}).get("stages", {})
    except StageError:
        return {}


def missing_stages(base: str, head: str) -> list[str]:
    """A line for each stage one side has and the other lacks: its metrics cannot be compared."""
    sides = {"base": (base, pipeline_at(base)), "head": (head, pipeline_at(head))}
    notes = []
    for role, other in (("base", "head"), ("head", "base")):
        revision, stages = sides[role]
        for stage, spec in sides[other][1].items():
            if stage not in stages:
                metrics = [next(iter(m)) if isinstance(m, dict) else m for m in spec.get("metrics", [])]
                notes.append(
                    f"{role} revision {revision!r} has no stage {stage}: its metrics ({', '.join(metrics)}) are not"
                    " compared"
                    if metrics
                    else f"{role} revision {revision!r} has no stage {stage}"
                )
    return notes


@dataclass
class Review:
    base: str
    head: str
    base_results: Results
    head_results: Results
    changed_params: list[tuple[str, object, object]]
    stale: dict[str, list[str]]
    reproduced: Results | None
    reproduction: str | None  # what went wrong, if anything
    gate: str | None
    max_drop: float
    charts: dict[str, dict[str, list[float]]]
    head_has_lock: bool = True
    not_compared: list[str] = field(default_factory=list)  # stages one side lacks

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.head_has_lock:
            found.append(
                f"head revision {self.head!r} has no {paths.PIPELINE_LOCK}: its results are not tied to a run of the"
                f" pipeline; run `dvc repro` and commit {paths.PIPELINE_LOCK}"
            )
        if self.stale:
            found.append(
                "stale results: " + "; ".join(f"{stage} ({', '.join(why)})" for stage, why in self.stale.items())
            )
        if self.reproduction:
            found.append(f"not reproduced: {self.reproduction}")
        if self.gate:
            found.append(f"gate: {self.gate}")
        return found

    def render(self) -> str:
        lines = [MARKER, f"## Model review: `{self.head}` vs `{self.base}`", ""]
        lines += [*self._verdicts(), "", "### Metrics, as committed", ""]
        main = [(str(f), k) for f, k in MAIN_METRICS]
        lines += metric_table(main, self.base_results, self.head_results, self.reproduced)
        others = sorted(
            (file, key)
            for results in (self.base_results, self.head_results)
            for file, values in results.files.items()
            for key in values
            if file != str(paths.FINGERPRINT) and (file, key) not in main
        )
        if others:
            lines += ["", "<details><summary>Per-class and other metrics</summary>", ""]
            lines += metric_table(list(dict.fromkeys(others)), self.base_results, self.head_results, self.reproduced)
            lines += ["", "</details>"]
        lines += ["", "### Fingerprint", "", "| | base | head | reproduced |", "| --- | --- | --- | --- |"]
        keys = {key for r in (self.base_results, self.head_results) for key in r.files.get(str(paths.FINGERPRINT), {})}
        for key in sorted(keys, key=lambda key: (key != "weights_sha256", key)):  # the digest first
            values = [r.get(paths.FINGERPRINT, key) if r else None for r in self._sides()]
            shown = [_number(v)[:12] if key == "weights_sha256" and v else _number(v) for v in values]
            lines.append(f"| `{key}` | {' | '.join(shown)} |")
        lines += ["", "### Params changed", ""]
        if self.changed_params:
            lines += ["| param | base | head |", "| --- | --- | --- |"]
            lines += [f"| {key} | {_number(old)} | {_number(new)} |" for key, old, new in self.changed_params]
        else:
            lines.append("None.")
        if self.charts:
            lines += ["", "### Training curves, as committed", ""]
            for title, series in self.charts.items():
                lines += [*mermaid_chart(title, series), ""]
        return "\n".join(lines).rstrip() + "\n"

    def _sides(self) -> list[Results | None]:
        return [self.base_results, self.head_results, self.reproduced]

    def _verdicts(self) -> list[str]:
        lines = [f"- ⚪ **Not compared**: {note_markdown(note)}." for note in self.not_compared]
        if not self.head_has_lock:
            lines.append(
                f"- ❌ **No `{paths.PIPELINE_LOCK}`** in head `{self.head}`: its results are not tied to a run of the"
                f" pipeline. Run `dvc repro` and commit `{paths.PIPELINE_LOCK}`."
            )
        elif self.stale:
            named = "; ".join(f"`{stage}` ({', '.join(why)})" for stage, why in self.stale.items())
            lines.append(f"- ❌ **Stale results**: {named}. Run `dvc repro` and commit `dvc.lock` and `reports/`.")
        else:
            lines.append("- ✅ **Up to date**: every stage's `dvc.lock` entry matches its code, params and command.")
        if self.reproduction:
            lines.append(f"- ❌ **Not reproduced**: {self.reproduction}.")
        elif self.reproduced is None:
            why = (
                f"no {paths.PIPELINE_LOCK}"
                if not self.head_has_lock
                else "results are stale"
                if self.stale
                else "run without --reproduce"
            )
            lines.append(f"- ⚪ **Reproduction not run** ({why}).")
        else:
            digest = str(self.reproduced.get(paths.FINGERPRINT, "weights_sha256"))
            exact = digest == str(self.head_results.get(paths.FINGERPRINT, "weights_sha256"))
            on = f"on {cpu.model()}"  # the reproduction ran here
            line = (
                f"- ✅ **Reproduced exactly** {on}: weights digest `{digest[:12]}` as committed."
                if exact
                else f"- ✅ **Reproduced** {on} within the {self.max_drop * 100:.2g} pp noise bound."
            )
            machine = self.reproduced.get(paths.FINGERPRINT, "machine")
            reproduced_exact = self.reproduced.get(paths.FINGERPRINT, "runtime_mode") == "exact"
            if not exact and reproduced_exact and machine not in X86_64:
                line += f" Exact mode promises equal bits on x86-64 CPUs only; this reproduction ran on {machine}."
            lines.append(line)
        before, after = self.base_results.get(paths.METRICS, HEADLINE), self.head_results.get(paths.METRICS, HEADLINE)
        if self.gate:
            lines.append(f"- ❌ **Gate failed**: {self.gate}.")
        elif before is not None and after is not None:
            change = f"{(after - before) * 100:+.2f} pp; the limit is a {self.max_drop * 100:.2g} pp drop"
            lines.append(f"- ✅ **Gate passed**: test accuracy {after:.4f} vs {before:.4f} ({change}).")
        else:
            lines.append("- ✅ **Gate passed**: no test accuracy on one side to compare.")
        return lines


def max_accuracy_drop(base: str) -> float:
    """The base's threshold: a pull request must not loosen its own gate. A base without a valid one gets the
    schema's default, never the workspace's value (in a pull request's check, the pull request's own)."""
    try:
        section = params.read_yaml(run(["git", "show", f"{base}:{paths.PARAMS}"]))["review"]  # as DVC reads it
        return ReviewParams.model_validate(section).max_accuracy_drop
    except (StageError, KeyError, TypeError, ValueError) as error:
        print(
            f"warning: review: no valid review.max_accuracy_drop in {base}'s {paths.PARAMS} ({type(error).__name__});"
            f" the gate uses the default, {DEFAULT_MAX_ACCURACY_DROP}",
            file=sys.stderr,
        )
        return DEFAULT_MAX_ACCURACY_DROP


def check_head(head: str, reproduce: bool) -> tuple[dict[str, list[str]], Results | None, str | None]:
    """Staleness, then (if asked and not stale) a full re-run, in a fresh checkout of `head` with no cache.

    Returns the stale stages, the reproduced results, and why the re-run failed if it did.
    """
    with tempfile.TemporaryDirectory(prefix="review-") as scratch:
        checkout = Path(scratch) / "head"
        run(["git", "worktree", "add", "--detach", "--quiet", str(checkout), head])
        try:
            status = json.loads(dvc("status", "--json", cwd=checkout) or "{}")
            stale = stale_stages(status, pipeline_outputs(checkout / paths.PIPELINE))
            if not reproduce or stale:
                return stale, None, None
            unlocked = package_lock.lock_differences(checkout / paths.LOCK)
            if unlocked:  # the promise covers the locked packages: a re-run elsewhere proves nothing
                return stale, None, f"this environment is not {head}'s {paths.LOCK}: {', '.join(unlocked)}"
            print(f"reproducing {head} in a fresh checkout: dvc repro", flush=True)
            if subprocess.run(["dvc", "repro"], cwd=checkout).returncode != 0:
                return stale, None, f"`dvc repro` of {head} failed (its output is in the log)"
            return stale, Results.read(checkout), None
        finally:
            run(["git", "worktree", "remove", "--force", str(checkout)])


def note_markdown(note: str) -> str:
    """A note's revision and stage in code type: "base `old` has no stage `evaluate` ..."."""
    return re.sub(r"^(base|head) revision '(.*?)' has no stage (\S+?)(:|$)", r"\1 `\2` has no stage `\3`\4", note)


def unavailable(base: str, head: str, problem: str) -> str:
    """The report when a revision is missing: says so, instead of leaving an older comment standing."""
    role, revision = problem.split(" revision ", 1)[0], base if problem.startswith("base") else head
    return (
        "\n".join(
            [
                MARKER,
                f"## Model review: `{head}` vs `{base}`",
                "",
                f"- ❌ **Not compared**: {role} revision `{revision}` is not in this repository"
                f" (fetch it, e.g. `git fetch origin {revision}`).",
            ]
        )
        + "\n"
    )


def build(base: str, head: str, reproduce: bool) -> Review:
    if not has_lock(head):  # nothing to check staleness or reproduction against
        reproduce = False
    diff = json.loads(dvc("metrics", "diff", base, head, "--all", "--json") or "{}")
    base_results, head_results = committed_results(diff)
    param_diff = json.loads(dvc("params", "diff", base, head, "--json") or "{}")
    changed = [(key, v.get("old"), v.get("new")) for file in param_diff.values() for key, v in file.items()]
    max_drop = max_accuracy_drop(base)
    stale, reproduced, failure = check_head(head, reproduce) if has_lock(head) else ({}, None, None)
    return Review(
        base=base,
        head=head,
        base_results=base_results,
        head_results=head_results,
        changed_params=changed,
        stale=stale,
        reproduced=reproduced,
        reproduction=failure or (reproduction_problem(head_results, reproduced, max_drop) if reproduced else None),
        gate=gate_problem(base_results, head_results, max_drop),
        max_drop=max_drop,
        charts=curves(base, head),
        head_has_lock=has_lock(head),
        not_compared=missing_stages(base, head),
    )


def publish(report: str, out: Path, comment: int | None) -> None:
    write_text(out / "report.md", report)
    print(f"wrote {out / 'report.md'}")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
            summary.write(report)
    if comment is not None:
        print(github.post_or_update_comment(comment, report, MARKER))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--head", default="HEAD", help="git revision under review (default: HEAD)")
    parser.add_argument("--out", type=Path, default=Path("review"), help="folder for report.md")
    parser.add_argument("--reproduce", action="store_true", help="re-run the pipeline of --head and compare")
    parser.add_argument("--comment", type=int, metavar="PR", help="post or update the report on this pull request")
    args = parser.parse_args()

    problem = revision_problem("base", args.base) or revision_problem("head", args.head)
    if problem:
        publish(unavailable(args.base, args.head, problem), args.out, args.comment)
        raise StageError(problem)
    review = build(args.base, args.head, args.reproduce)
    for note in review.not_compared:
        print(f"note: {note}", file=sys.stderr)
    publish(review.render(), args.out, args.comment)
    problems = review.problems
    if problems:
        raise StageError("; ".join(problems))


if __name__ == "__main__":
    run_stage(main)
