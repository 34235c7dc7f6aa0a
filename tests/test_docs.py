"""The README and docs/ stay true: short, about the project only, every command in them exists, every link resolves."""

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def code_lines(page: Path) -> list[str]:
    """The command lines of a page's bash/console code blocks, continuations joined, prompts and comments cut."""
    lines = []
    for block in re.findall(r"```(?:bash|console|sh)\n(.*?)```", page.read_text(), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.removeprefix("$ ").split("  #")[0].strip()
            if line and not line.startswith("#"):
                for part in re.split(r"&&|;", line):  # each command, without its VAR=value prefixes
                    lines.append(re.sub(r"^(\s*[A-Z_]+=(\"[^\"]*\"|'[^']*'|\S*)\s+)+", "", part).strip())
    return lines


def commands(prefix: str) -> list[tuple[str, list[str]]]:
    found = {}
    for page in PAGES:
        for line in code_lines(page):
            if line.startswith(prefix):
                found.setdefault(line, (page.relative_to(REPO).as_posix(), shlex.split(line)))
    return sorted(found.values(), key=lambda item: item[1])


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_a_page_speaks_of_the_project_not_of_how_it_was_made(page):
    assert not re.findall(r"(?i)\bsessions?\b|\bmy tests\b|\bfrom here\b|\bthis machine\b", page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_to_a_file_of_the_repository_resolves(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}"


def python_modules() -> list[str]:
    return sorted({words[2] for _, words in commands("python -m ") if len(words) > 2})


def test_the_docs_name_python_commands_at_all():
    assert {"stages.train", "tools.predict", "tools.review", "pytest"} <= set(python_modules())


@pytest.mark.parametrize("module", [m for m in python_modules() if m.split(".")[0] in ("tools", "benchmarks")])
def test_every_tool_and_benchmark_the_docs_name_answers_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.mark.parametrize("module", [m for m in python_modules() if m.split(".")[0] not in ("tools", "benchmarks")])
def test_every_other_module_the_docs_run_exists(module):
    import importlib.util

    assert importlib.util.find_spec(module) is not None, module  # stages run when started: not started here


def dvc_subcommand(words: list[str]) -> list[str]:
    """`dvc exp run -S ...` -> ['exp', 'run']: the words before the first option or argument DVC's parser takes."""
    from dvc.cli.parser import get_main_parser

    parser, chosen = get_main_parser(), []
    for word in words[1:]:
        actions = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
        if not actions:
            break
        if word not in actions[0].choices:
            return []  # `dvc exp shw`: a command that takes subcommands, given none it has
        parser = actions[0].choices[word]
        chosen.append(word)
    return chosen


def test_a_misspelled_dvc_command_is_caught():
    assert dvc_subcommand(["dvc", "exp", "show", "--only-changed"]) == ["exp", "show"]
    assert dvc_subcommand(["dvc", "repro", "train"]) == ["repro"]
    assert dvc_subcommand(["dvc", "exp", "shw"]) == []
    assert dvc_subcommand(["dvc", "reproo"]) == []


def test_every_dvc_command_in_the_docs_is_one_dvc_has():
    from dvc.cli import parse_args

    checked = set()
    for page, words in commands("dvc "):
        subcommand = dvc_subcommand(words)
        assert subcommand, f"{page}: {shlex.join(words)} names no dvc command"
        if tuple(subcommand) in checked:
            continue
        checked.add(tuple(subcommand))
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
            parse_args([*subcommand, "--help"])
        assert exit.value.code == 0, f"{page}: dvc {' '.join(subcommand)}"
    assert {("repro",), ("exp", "run"), ("exp", "show"), ("metrics", "diff"), ("plots", "show")} <= checked


def prose(page: Path) -> str:
    """A page's text without its code blocks and HTML comments: what a reader reads as words."""
    return re.sub(r"```.*?```|<!--.*?-->", "", page.read_text(), flags=re.DOTALL)


def table_cells(page: Path) -> list[str]:
    return [
        cell.strip()
        for line in prose(page).splitlines()
        if line.startswith("|")
        for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_a_page_is_at_most_2000_words_and_a_table_cell_at_most_300_characters(page):
    assert len(prose(page).split()) <= 2000
    assert [cell for cell in table_cells(page) if len(cell) > 300] == []


def test_the_budgets_count_words_and_cells_as_a_reader_sees_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("one two\n\n```bash\nnot counted\n```\n<!-- nor this -->\n| a | b \\| c |\n| --- | --- |\n")
    assert prose(page).split() == ["one", "two", "|", "a", "|", "b", "\\|", "c", "|", "|", "---", "|", "---", "|"]
    assert table_cells(page) == ["a", "b \\| c", "---", "---"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_page_gives_a_figure_that_was_only_planned(page):
    assert not re.findall(r"(?i)\bplanned\b|\bnot (yet )?measured\b", prose(page))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", prose(page), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_to_a_heading_resolves(page):
    for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
        linked = (page.parent / target) if target else page
        if "://" not in target:
            assert anchor in anchors(linked), f"{page.name} links to {target}#{anchor}"


def test_the_generated_figures_and_diagrams_match_the_committed_files():
    """Every figure of the committed run on the README and docs/results.md, the results chart, the pipeline diagram,
    the re-run table and the package counts: what `python -m tools.docs` makes of the committed files."""
    from tools import docs

    assert docs.out_of_date() == []
    text = "\n".join(page.read_text() for page in PAGES)
    assert set(re.findall(r"<!-- generated: ([\w-]+) -->", text)) == set(docs.blocks())


def test_a_stale_figure_fails_the_check(tmp_path, monkeypatch):
    from tools import docs

    for path in [*docs.PAGES, docs.RECIPES, docs.COMMITTED_RUN, docs.CHART, Path("params.yaml"), Path("dvc.yaml")]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((REPO / path).read_bytes())
    for path in ["reports", "fmnist", "requirements.txt", "requirements-dev.txt"]:
        subprocess.run(["cp", "-r", str(REPO / path), str(tmp_path / path)], check=True)
    diagram = docs.pipeline_diagram()
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    monkeypatch.setattr(docs, "pipeline_diagram", lambda: diagram)  # `dvc dag` needs a DVC repository
    assert docs.out_of_date() == []

    metrics = tmp_path / "reports/metrics.json"
    metrics.write_text(metrics.read_text().replace('"accuracy": ', '"accuracy": 0.5, "was": ', 1))
    assert docs.out_of_date() == ["README.md", "docs/results.md"]

    recipes = tmp_path / docs.RECIPES
    recipes.write_text(recipes.read_text().replace("0.9432", "0.9532"))
    assert docs.out_of_date()[0] == str(docs.CHART)


def test_the_chart_names_the_cpu_of_each_point():
    """Train times are comparable only on one CPU: with one CPU the axis names it; with several, a legend gives each
    CPU its marker shape."""
    from tools import docs

    def row(recipe: str, cpu: str) -> dict[str, object]:
        return {
            "recipe": recipe,
            "cpu": cpu,
            "epochs": 12,
            "seeds": ["42", "1", "2"],
            "test_mean": 0.93,
            "test_sd": 0.001,
            "train_s_min": 250.0,
            "train_s_max": 260.0,
        }

    def labels(rows: list[dict[str, object]]) -> list[str]:
        return re.findall(r"<!-- (.*?) -->", docs.chart_svg(rows).decode())

    one = labels([row("a", "CPU A"), row("b", "CPU A")])
    assert "train time, s (CPU A; bars: the range of the measured times)" in one
    cpus = [f"CPU {letter}" for letter in "ABCDEFG"]  # more CPUs than marker shapes: the shapes repeat
    several = labels([row(cpu.lower(), cpu) for cpu in cpus])
    assert "train time, s (bars: the range of the measured times)" in several
    assert [label for label in several if label in cpus] == cpus


def test_the_screenshots_are_of_the_committed_run():
    """docs/images/screenshots.json, written by `tools.screenshots` with the PNGs, says what TensorBoard served: the
    committed run's epochs and last validation accuracy, and no other training; each PNG is the one it was written
    with."""
    import hashlib
    import json

    images = REPO / "docs" / "images"
    manifest = json.loads((images / "screenshots.json").read_text())
    shots = {path.name for path in images.glob("tensorboard-*.png")}
    assert set(manifest["sha256"]) == shots
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((images / name).read_bytes()).hexdigest() == digest, name

    training = json.loads((REPO / "reports" / "training" / "metrics.json").read_text())
    runs = manifest["runs"]
    assert {"fit/train", "fit/validation", "evaluate"} <= set(runs)
    assert len([run for run in runs if run.startswith("timing/")]) == 1  # one training's times, this one's
    assert runs["fit/train"]["epochs"] == runs["fit/validation"]["epochs"] == training["step"] + 1
    assert runs["fit/validation"]["last_epoch_accuracy"] == round(training["eval"]["accuracy"], 4)


def committed_weights() -> str:
    import json

    return json.loads((REPO / "reports" / "fingerprint.json").read_text())["weights_sha256"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_a_weights_digest_on_a_page_is_the_committed_runs_or_names_its_commit(page):
    """A digest of other weights is a figure measured elsewhere: the paragraph or table row names its commit."""
    for paragraph in prose(page).split("\n\n"):
        units = paragraph.splitlines() if paragraph.lstrip().startswith("|") else [paragraph]
        for unit in units:
            for digest in re.findall(r"`([0-9a-f]{8,64})…?`", unit):
                if not committed_weights().startswith(digest):
                    assert re.search(r"`[0-9a-f]{7}`", unit), f"{page.name}: {digest} names no commit"


def test_the_example_outputs_show_the_committed_weights():
    """Console examples that list the workspace or main (`dvc exp show`) show the committed run's digest."""
    for page in PAGES:
        for digest in re.findall(r"^\s+(?:workspace|main)\s+([0-9a-f]{64})\b", page.read_text(), flags=re.MULTILINE):
            assert digest == committed_weights(), page.name


def test_the_review_example_shows_the_committed_run_as_its_head():
    """docs/review.md's report is real output: its head column is the committed run, or the example is stale."""
    import json

    text = (REPO / "docs" / "review.md").read_text()
    test = json.loads((REPO / "reports" / "metrics.json").read_text())
    training = json.loads((REPO / "reports" / "training" / "metrics.json").read_text())
    expected = {
        "accuracy": test["accuracy"],
        "single_view_accuracy": test["single_view_accuracy"],
        "loss": test["loss"],
        "eval.accuracy": training["eval"]["accuracy"],
        "eval.loss": training["eval"]["loss"],
    }
    for key, value in expected.items():
        head = re.search(rf"^\| `{re.escape(key)}` \([\w/.]+\) \| [^|]+ \| ([\d.]+) \|", text, flags=re.MULTILINE)
        assert head and float(head.group(1)) == round(value, 4), key
    assert re.search(rf"^\| `weights_sha256` \| \w+ \| {committed_weights()[:12]} \|", text, flags=re.MULTILINE)


def test_the_readmes_layout_names_every_module_and_needs_no_parentheses():
    layout = re.search(r"## Layout\n\n```\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL).group(1)
    assert "(" not in layout and ")" not in layout
    words = set(re.findall(r"[\w/]+", layout))
    for folder in ("fmnist", "stages", "tools", "benchmarks"):
        for module in (REPO / folder).glob("*.py"):
            if module.stem not in ("__init__", "common"):  # benchmarks/common.py: helpers, not a command
                assert module.stem in words, f"{folder}/{module.name}"
    assert "params/" in words


def test_no_tool_imports_another_tools_internals():
    for tool in (REPO / "tools").glob("*.py"):
        assert not re.findall(r"^\s*(?:from tools\b|import tools\b)", tool.read_text(), flags=re.MULTILINE), tool.name


def test_the_validation_curve_quoted_in_pipeline_md_is_the_committed_runs():
    curve = (REPO / "reports/training/plots/metrics/eval/accuracy.tsv").read_text().splitlines()[1:]
    values = [float(line.split("\t")[1]) for line in curve]
    quoted = re.search(
        r"committed run's validation curve .*?\(([\d.,\s]+)\.\.\. ([\d.]+);", prose(REPO / "docs/pipeline.md"), re.S
    )
    first = [float(v) for v in quoted.group(1).replace("\n", " ").split(",") if v.strip()]
    assert first == [round(v, 4) for v in values[: len(first)]]
    assert float(quoted.group(2)) == round(values[-1], 4)


def test_the_mutation_table_has_a_row_for_each_mutation_and_its_count_is_right():
    from tests.mutations import MUTATIONS

    text = (REPO / "docs" / "development.md").read_text()
    rows = re.findall(
        r"^\| ([^|]+) \| [^|]+ \| `[^`]+` \| (caught|MISSED|SKIPPED|ERROR) \| \d+ \|$", text, re.MULTILINE
    )
    assert sorted(name for name, _ in rows) == sorted(m.name for m in MUTATIONS)
    caught = sum(result == "caught" for _, result in rows)
    assert f"{caught} of {len(MUTATIONS)} caught" in text
