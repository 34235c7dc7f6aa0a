"""dvc.yaml's code deps of each stage are exactly the project's Python files its entry module imports.

A missing dep leaves a stage "up to date" after a change to code it runs (stale committed results); an extra one
re-runs it for code it never runs. The imports are read from the code (transitively, imports inside functions
included), not kept by hand.
"""

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def module_file(root: Path, name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def imported_files(root: Path, path: Path) -> set[Path]:
    """The project files `path` imports anywhere in its code, and the packages on the way to them."""
    found = set()
    package = path.relative_to(root).parent.parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join([*package[: len(package) - node.level + 1], node.module or ""]) if node.level else node.module
            )
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.strip(".").split(".")
            found |= {f for i in range(1, len(parts) + 1) if (f := module_file(root, ".".join(parts[:i])))}
    return found


def code_closure(root: Path, entry: Path) -> set[str]:
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported_files(root, path))
    return {str(path.relative_to(root)) for path in seen}


def deps_problems(root: Path) -> list[str]:
    """One line per stage whose declared .py deps differ from what its command's module imports."""
    problems = []
    for name, stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].items():
        words = stage["cmd"].split()
        entry = module_file(root, words[words.index("-m") + 1])
        used = code_closure(root, entry)
        declared = {dep for dep in stage.get("deps", []) if dep.endswith(".py")}
        if used != declared:
            problems.append(f"{name}: missing {sorted(used - declared)}, never imported {sorted(declared - used)}")
    return problems


def test_each_stage_depends_on_exactly_the_code_it_imports():
    assert deps_problems(REPO) == []


def copy_of_repo(dest: Path) -> Path:
    for package in ("stages", "fmnist"):
        for path in (REPO / package).rglob("*.py"):
            (dest / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            (dest / path.relative_to(REPO)).write_text(path.read_text())
    (dest / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    return dest


@pytest.mark.parametrize("planted", ["missing", "extra", "import inside a function"])
def test_the_check_fails_on_a_planted_difference(tmp_path, planted):
    root = copy_of_repo(tmp_path)
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    deps = pipeline["stages"]["evaluate"]["deps"]
    if planted == "missing":
        deps.remove("fmnist/prediction.py")
    elif planted == "extra":
        deps.append("fmnist/training.py")
    else:  # evaluate's code starts running training code, inside a function, as it once did unnoticed
        module = root / "stages" / "evaluate.py"
        module.write_text(module.read_text() + "\n\ndef later():\n    from fmnist.training import fit  # noqa\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    problems = deps_problems(root)
    assert len(problems) == 1 and problems[0].startswith("evaluate:")
    assert "fmnist/prediction.py" in problems[0] if planted == "missing" else "fmnist/training.py" in problems[0]


def test_a_schema_edit_reaches_only_the_stages_that_read_its_section():
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    readers = {name: {param.split(".")[0] for param in stage.get("params", [])} for name, stage in pipeline.items()}
    for name, stage in pipeline.items():
        schemas = {
            Path(dep).stem for dep in stage["deps"] if dep.startswith("fmnist/params/") and "__init__" not in dep
        }
        assert schemas == readers[name], name  # a stage runs the schema code of the sections it reads, no other


@pytest.mark.parametrize("stage", ["download", "preprocess", "train", "evaluate"])
def test_each_stage_loads_exactly_the_params_sections_dvc_yaml_gives_it(stage):
    """A section a stage reads but dvc.yaml does not list would leave its results 'up to date' after an edit."""
    import importlib

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["params"]
    loaded = importlib.import_module(f"stages.{stage}").Params.model_fields
    assert set(loaded) == {key.split(".")[0] for key in declared}
