"""Write the figures and diagrams of the docs from the committed files, so that none can go stale.

    python -m tools.docs           # redraw docs/images/results.svg and rewrite the generated blocks of the pages
    python -m tools.docs --check   # change nothing; exit 1, naming what differs, when any is out of date

Sources: the committed run's own files (reports/metrics.json, reports/training/metrics.json,
reports/fingerprint.json, params.yaml); docs/data/recipes.csv (each recipe's seeds, measured on one CPU, its commit
and date in the row) and docs/data/committed-run.csv (the committed run's time and memory by CPU); dvc.yaml (the
pipeline diagram, by `dvc dag --mermaid`, and what an edit re-runs); the locks (package counts). A generated block
sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; tests/test_docs.py runs the check.
"""

import argparse
import csv
import io
import itertools
import json
import re
import sys
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fmnist import paths
from fmnist.commands import dvc
from fmnist.stage_runner import StageError, run_stage

ROOT = Path(__file__).resolve().parent.parent
RECIPES = Path("docs/data/recipes.csv")
COMMITTED_RUN = Path("docs/data/committed-run.csv")
CHART = Path("docs/images/results.svg")
PAGES = (Path("README.md"), Path("docs/results.md"), Path("docs/development.md"), Path("docs/reproducibility.md"))


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with (ROOT / path).open(newline="") as rows:
            return list(csv.DictReader(rows))
    except OSError as error:
        raise StageError(f"{path}: {error.strerror}") from None


def recipes() -> list[dict[str, object]]:
    """Each recipe's row, numbers parsed; a bad cell is one error naming the file, the recipe and the column."""
    parsed = []
    for row in read_csv(RECIPES):
        recipe = dict(row)
        for column in ("test_mean", "test_sd", "single_view_mean", "single_view_sd", "train_s_min", "train_s_max"):
            try:
                recipe[column] = float(row[column])
            except (TypeError, ValueError):
                message = f"{RECIPES}: recipe {row.get('recipe')!r}: {column} {row[column]!r} is no number"
                raise StageError(message) from None
        recipe["epochs"] = int(row["epochs"])
        recipe["seeds"] = row["seeds"].split()
        parsed.append(recipe)
    return parsed


def chart_svg(rows: list[dict[str, object]]) -> bytes:
    """Test accuracy (mean and sd of the seeds) against train time (the seeds' range), one point per recipe."""
    plt.rcParams["svg.hashsalt"] = "fashion-mnist"  # the same SVG bytes from the same data
    figure, axes = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    cpus = sorted({row["cpu"] for row in rows})  # times are of one CPU each: a marker shape per CPU
    markers = dict(zip(cpus, itertools.cycle("osD^v")))
    for row in rows:
        default = row["recipe"] == "default"
        middle = (row["train_s_min"] + row["train_s_max"]) / 2
        axes.errorbar(
            middle,
            row["test_mean"],
            xerr=[[middle - row["train_s_min"]], [row["train_s_max"] - middle]],
            yerr=row["test_sd"],
            fmt=markers[row["cpu"]],
            color="tab:red" if default else "tab:blue",
            markersize=7 if default else 5,
            capsize=3,
        )
        axes.annotate(
            row["recipe"] if "epochs" in row["recipe"] else f"{row['recipe']} ({row['epochs']} epochs)",
            (middle, row["test_mean"]),
            textcoords="offset points",
            xytext=(6, 5),
            fontsize=8,
            fontweight="bold" if default else "normal",
        )
    if len(cpus) > 1:
        for cpu in cpus:
            axes.plot([], [], markers[cpu], color="tab:gray", label=cpu)
        axes.legend(fontsize=8, loc="lower right")
    seeds = sorted({len(row["seeds"]) for row in rows})
    where = "" if len(cpus) > 1 else f"{cpus[0]}; "
    axes.set_xlabel(f"train time, s ({where}bars: the range of the measured times)")
    axes.set_ylabel(f"test accuracy, 10 views (mean ± sd of {'/'.join(map(str, seeds))} seeds)")
    axes.grid(alpha=0.3)
    axes.set_xlim(left=0)
    out = io.BytesIO()
    figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    return out.getvalue()


def seconds(value: float) -> str:
    return f"{value:,.0f} s"


def recipes_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| recipe | `dvc exp run -S` | test accuracy | single view | train time | CPU, commit, date |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        settings = " ".join(f"`{s}`" for s in row["settings"].split()) or "(the default params)"
        name = f"**{row['recipe']}**" if row["recipe"] == "default" else row["recipe"]
        times = seconds(row["train_s_min"]) + (
            f" - {seconds(row['train_s_max'])}" if row["train_s_max"] != row["train_s_min"] else ""
        )
        lines.append(
            f"| {name} | {settings} | {row['test_mean']:.4f} ± {row['test_sd']:.4f} "
            f"| {row['single_view_mean']:.4f} ± {row['single_view_sd']:.4f} | {times} "
            f"| {row['cpu']}, `{row['commit']}`, {row['date']} |"
        )
    return "\n".join(lines)


def committed_run() -> dict[str, object]:
    """The committed run's figures, from its own files."""

    def load(path: Path) -> dict:
        try:
            return json.loads((ROOT / path).read_text())
        except (OSError, ValueError) as error:
            raise StageError(f"{path}: {error}") from None

    test, training, fingerprint = load(paths.METRICS), load(paths.TRAINING_METRICS), load(paths.FINGERPRINT)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return {
        "accuracy": test["accuracy"],
        "single_view": test["single_view_accuracy"],
        "loss": test["loss"],
        "validation": training["eval"]["accuracy"],
        "epochs": training["step"] + 1,
        "parameters": training["parameters"],
        "weights": fingerprint["weights_sha256"],
        "model": params["train"]["model"],
        "seed": params["train"]["seed"],
        "per_class": test["per_class_accuracy"],
    }


def committed_run_table(run: dict[str, object]) -> str:
    lines = [
        "| CPU (2 cores, exact mode) | commit | date | stages run | `dvc repro` | train | peak memory |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in read_csv(COMMITTED_RUN):
        lines.append(
            f"| {row['cpu']} | `{row['commit']}` | {row['date']} | {row['stages_run']} | {row['dvc_repro']} "
            f"| {row['train']} | {row['peak_memory']} |"
        )
    summary = (
        f"`{run['model']}`, {run['epochs']} epochs, seed {run['seed']}: test accuracy **{run['accuracy']:.4f}** "
        f"(single view {run['single_view']:.4f}, loss {run['loss']:.4f}), validation {run['validation']:.4f}, "
        f"{run['parameters']:,} parameters, weights `{run['weights'][:8]}…`. The same weights, byte for byte, "
        "took:"
    )
    return summary + "\n\n" + "\n".join(lines)


def classes_line(run: dict[str, object]) -> str:
    per_class = sorted(run["per_class"].items(), key=lambda item: item[1])
    hardest = ", ".join(f"{name} {accuracy:.3f}" for name, accuracy in per_class[:3])
    name, accuracy = per_class[-1]
    return f"By class (`per_class_accuracy`), the hardest are {hardest}; the easiest is {name}, {accuracy:.3f}."


def pipeline_diagram() -> str:
    """`dvc dag --mermaid`, which GitHub draws."""
    return "```mermaid\n" + dvc("dag", "--mermaid", cwd=ROOT).rstrip("\n") + "\n```"


def rerun_table() -> str:
    """Which stages an edit to each code file makes stale: dvc.yaml's deps, which tests/test_stage_deps.py derives
    from the imports. Files no stage depends on share the last row."""
    stages = (yaml.safe_load((ROOT / paths.PIPELINE).read_text()) or {})["stages"]
    by_file: dict[str, list[str]] = {}
    for stage, spec in stages.items():
        for dep in spec.get("deps", []):
            if dep.endswith(".py") or dep.endswith(".txt"):
                by_file.setdefault(dep, []).append(stage)
    groups: dict[tuple[str, ...], list[str]] = {}
    for file, stale in by_file.items():
        if not file.startswith("stages/"):
            groups.setdefault(tuple(stale), []).append(file)
    lines = ["| edited | stale stages |", "| --- | --- |"]
    for stale, files in sorted(groups.items(), key=lambda item: (-len(item[0]), item[0])):
        lines.append(f"| {', '.join(f'`{f}`' for f in sorted(files))} | {', '.join(stale)} |")
    unused = sorted(
        str(f.relative_to(ROOT)) for f in (ROOT / "fmnist").rglob("*.py") if str(f.relative_to(ROOT)) not in by_file
    )
    lines.append(f"| {', '.join(f'`{f}`' for f in unused)}; `tools/`, `benchmarks/`, `tests/`, `docs/` | none |")
    return "\n".join(lines)


def package_counts() -> str:
    counts = {}
    for lock in ("requirements.txt", "requirements-dev.txt"):
        text = (ROOT / lock).read_text()
        counts[lock] = len(re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", text, flags=re.MULTILINE))
    return (
        f"`requirements.txt` locks {counts['requirements.txt']} packages, every one pinned with its hashes, and "
        f"`requirements-dev.txt` {counts['requirements-dev.txt']} (the same plus what the tests and linters need)."
    )


def blocks() -> dict[str, str]:
    run = committed_run()  # read once for both blocks
    return {
        "pipeline": pipeline_diagram(),
        "committed-run": committed_run_table(run),
        "classes": classes_line(run),
        "recipes": recipes_table(recipes()),
        "rerun": rerun_table(),
        "packages": package_counts(),
    }


def with_blocks(text: str, generated: dict[str, str]) -> str:
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def out_of_date() -> list[str]:
    """What differs between the committed chart and pages and what this tool makes of the committed files."""
    stale = []
    rows = recipes()
    if not (ROOT / CHART).exists() or (ROOT / CHART).read_bytes() != chart_svg(rows):
        stale.append(str(CHART))
    generated = blocks()
    for page in PAGES:
        text = (ROOT / page).read_text()
        if with_blocks(text, generated) != text:
            stale.append(str(page))
    return stale


def write() -> None:
    (ROOT / CHART).write_bytes(chart_svg(recipes()))
    generated = blocks()
    for page in PAGES:
        text = (ROOT / page).read_text()
        (ROOT / page).write_text(with_blocks(text, generated))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    args = parser.parse_args()
    if args.check:
        stale = out_of_date()
        if stale:
            print(f"out of date: {', '.join(stale)}; run python -m tools.docs", file=sys.stderr)
            sys.exit(1)
        print("results chart and tables: up to date")
    else:
        write()
        print(f"wrote {CHART} and the generated blocks of {', '.join(map(str, PAGES))}")


if __name__ == "__main__":
    run_stage(main)
