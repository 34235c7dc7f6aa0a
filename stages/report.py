"""Pull-request review: metrics, params and training curves of the workspace against a base revision.

    python -m stages.report --base main [--out review] [--gate]

Writes review/report.md (metrics table, changed params, curves), review/curves.png and the
Vega-Lite spec review/curves.vl.json. Everything comes from `dvc metrics diff`, `dvc params diff`
and `dvc plots diff`; with --gate it exits 1 when test accuracy drops by more than
params `review.max_accuracy_drop`.
"""

import argparse
import json
import subprocess
from pathlib import Path

from stages import params
from stages.errors import StageError, run_stage
from stages.figures import line_panels, save_png
from stages.files import write_text

MARKER = "<!-- fashion-mnist-review -->"  # lets the PR workflow find and update its own comment
HEADLINE = ("reports/metrics.json", "accuracy")
CURVES = ("Accuracy", "Loss")


def dvc(*args: str) -> str:
    """Run a DVC command, return its stdout; a failure is one clear error line."""
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise StageError(f"dvc {' '.join(args)} failed: {last_line}")
    return result.stdout


def metric_rows(diff: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """(name, base, head, change) for every metric, test accuracy first."""
    rows = []
    for file, metrics in diff.items():
        for key, values in metrics.items():
            rows.append((f"{file}:{key}", values.get("old"), values.get("new"), values.get("diff")))
    headline = ":".join(HEADLINE)
    return sorted(rows, key=lambda row: (row[0] != headline, row[0]))


def param_rows(diff: dict) -> list[tuple[str, object, object]]:
    return [(key, values.get("old"), values.get("new")) for file in diff.values() for key, values in file.items()]


def gate_failure(rows: list, max_drop: float) -> str | None:
    """A message when test accuracy fell by more than max_drop (a fraction: 0.005 = 0.5 pp)."""
    headline = dict((name, (base, head)) for name, base, head, _ in rows).get(":".join(HEADLINE))
    if headline is None or None in headline:
        return None
    base, head = headline
    if base - head > max_drop:
        return f"test accuracy fell from {base:.4f} to {head:.4f}, more than the allowed {max_drop * 100:.2g} pp"
    return None


def _number(value: object, signed: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return f"{value:+}" if signed and isinstance(value, int) else str(value)


def render(base: str, metrics: list, changed_params: list, gate: str | None, curves_png: str | None) -> str:
    lines = [MARKER, f"## Model review: workspace vs `{base}`", ""]
    lines.append(
        f"**Gate failed:** {gate}" if gate else "**Gate passed:** test accuracy did not drop beyond the limit."
    )
    lines += ["", "### Metrics", "", "| metric | base | head | change |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {_number(b)} | {_number(h)} | {_number(d, signed=True)} |" for name, b, h, d in metrics]
    lines += ["", "### Params changed", ""]
    if changed_params:
        lines += ["| param | base | head |", "| --- | --- | --- |"]
        lines += [f"| {key} | {_number(old)} | {_number(new)} |" for key, old, new in changed_params]
    else:
        lines.append("None.")
    if curves_png:
        lines += ["", "### Training curves", "", f"![accuracy and loss per epoch, base and head]({curves_png})"]
    return "\n".join(lines) + "\n"


def curve_specs(base: str) -> dict[str, dict]:
    """Vega-Lite specs with base and workspace data, straight from `dvc plots diff`."""
    return {
        name: json.loads(dvc("plots", "diff", base, "workspace", "--targets", name, "--show-vega")) for name in CURVES
    }


def draw_curves(specs: dict[str, dict], path: Path) -> None:
    panels = {}
    for name, spec in specs.items():
        series: dict[str, list[tuple[float, float]]] = {}
        for row in spec["data"]["values"]:
            point = (float(row["epoch"]), float(row["dvc_inferred_y_value"]))
            series.setdefault(f"{row['rev']} {row['field']}", []).append(point)
        panels[name] = series
    save_png(line_panels(panels), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare the workspace with")
    parser.add_argument("--out", type=Path, default=Path("review"), help="folder for report.md and the curves")
    parser.add_argument("--gate", action="store_true", help="exit 1 if test accuracy dropped beyond the limit")
    args = parser.parse_args()
    max_drop = params.load().review.max_accuracy_drop

    metrics = metric_rows(json.loads(dvc("metrics", "diff", args.base, "--all", "--json")))
    changed = param_rows(json.loads(dvc("params", "diff", args.base, "--json")))
    specs = curve_specs(args.base)
    write_text(args.out / "curves.vl.json", json.dumps(specs, indent=1))
    draw_curves(specs, args.out / "curves.png")
    gate = gate_failure(metrics, max_drop)
    write_text(args.out / "report.md", render(args.base, metrics, changed, gate, "curves.png"))
    print(f"wrote {args.out / 'report.md'}")
    if gate and args.gate:
        raise StageError(gate)


if __name__ == "__main__":
    run_stage(main)
