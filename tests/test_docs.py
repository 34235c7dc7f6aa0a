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
