"""The locks (requirements.txt, requirements-dev.txt) are what their specs (*.in) compile to, and what is installed.

Each lock pins every package with hashes (pip installs it in hash-checking mode); its header names the command that
made it, which the spec documents. A package in one and not the other, or a pin edited by hand, fails here.
"""

import hashlib
import importlib.metadata
import platform
import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fmnist import package_lock

REPO = Path(__file__).resolve().parent.parent
LOCKS = {"requirements.txt": "requirements.in", "requirements-dev.txt": "requirements-dev.in"}


def spec_pins(spec: Path) -> dict[str, str]:
    """The spec's requirements (following -r), name -> pinned version."""
    pins = {}
    for line in spec.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            pins |= spec_pins(spec.parent / line[3:].strip())
        elif line:
            requirement = Requirement(line)
            (pin,) = requirement.specifier  # a spec pins each package it names: == and one version
            assert pin.operator == "==", f"{spec}: {line}: pin it with =="
            pins[canonicalize_name(requirement.name)] = pin.version
    return pins


def lock_entries(lock: Path) -> dict[str, tuple[str, int, set[str]]]:
    """Each locked package: name -> (version, hash count, what it is there for per uv's `# via`)."""
    entries, name = {}, None
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line):
            name = canonicalize_name(match.group(1))
            entries[name] = (match.group(2), 0, set())
        elif name and (match := re.match(r"^\s+--hash=sha256:[0-9a-f]{64}", line)):
            version, hashes, via = entries[name]
            entries[name] = (version, hashes + 1, via)
        elif name and (match := re.match(r"^\s+#\s+(?:via\s+)?(\S+)$", line)):
            entries[name][2].add(
                match.group(1) if match.group(1).startswith("-") else canonicalize_name(match.group(1))
            )
    return entries


def header_command(lock: Path) -> str:
    return lock.read_text().splitlines()[1].strip("# ")


def lock_problems(lock: Path, spec: Path) -> list[str]:
    pins, entries = spec_pins(spec), lock_entries(lock)
    problems = [f"{name}: {spec.name} pins {version}, {lock.name} has {entries.get(name, ('nothing',))[0]}"
                for name, version in pins.items() if entries.get(name, (None,))[0] != version]  # fmt: skip
    for name, (_, hashes, via) in entries.items():
        if hashes == 0:
            problems.append(f"{name}: no hash in {lock.name}")
        wanted_by = {reason for reason in via if not reason.startswith("-c")}
        if f"-r {spec.name}" in " ".join(via) or "-r" in via:
            wanted_by.discard("-r")
        if not wanted_by & (set(entries) | {"-r"}) and name not in pins:
            problems.append(f"{name}: in {lock.name} but neither in {spec.name} nor needed by a locked package")
    if header_command(lock) not in spec.read_text():
        problems.append(f"{lock.name} was made by `{header_command(lock)}`, not the command {spec.name} gives")
    return problems


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_is_what_its_spec_compiles_to(lock):
    assert lock_problems(REPO / lock, REPO / LOCKS[lock]) == []


def test_the_dev_lock_has_the_pipelines_packages_at_the_pipelines_versions():
    run, dev = lock_entries(REPO / "requirements.txt"), lock_entries(REPO / "requirements-dev.txt")
    assert {name: entry[0] for name, entry in run.items()} == {name: dev[name][0] for name in run if name in dev}
    assert set(run) <= set(dev)


@pytest.mark.parametrize("edit", ["package added to the spec", "package added to the lock", "pin edited by hand"])
def test_the_check_fails_when_spec_and_lock_disagree(tmp_path, edit):
    spec, lock = tmp_path / "requirements.in", tmp_path / "requirements.txt"
    shutil.copy(REPO / "requirements.in", spec)
    shutil.copy(REPO / "requirements.txt", lock)
    if edit == "package added to the spec":
        spec.write_text(spec.read_text() + "rich==14.0.0\n")
    elif edit == "package added to the lock":
        lock.write_text(lock.read_text() + "six==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    else:
        lock.write_text(lock.read_text().replace("\nnumpy==2.4.6 ", "\nnumpy==2.4.5 "))
    assert len(lock_problems(lock, spec)) == 1


def test_this_environment_is_exactly_the_dev_lock():
    """CI makes a fresh venv from requirements-dev.txt: what pip installed must be exactly the lock, no more."""
    locked = package_lock.locked_versions((REPO / "requirements-dev.txt").read_text())
    assert package_lock.differences(locked) == []
    installed = {canonicalize_name(dist.metadata["Name"]) for dist in importlib.metadata.distributions()}
    assert installed - set(locked) - {"pip"} == set()


def test_a_version_other_than_the_locked_one_is_named():
    locked = package_lock.locked_versions((REPO / "requirements.txt").read_text())
    assert package_lock.differences(locked) == []
    assert package_lock.differences(locked | {"keras": "0.0.1"}) == [
        f"keras {importlib.metadata.version('keras')} (locked 0.0.1)"
    ]
    assert package_lock.differences({"no-such-package": "1.0"}) == ["no-such-package not installed (locked 1.0)"]


def test_a_run_outside_the_lock_says_so_in_one_line_and_the_fingerprint_records_it(tmp_path, capsys):
    """What a user sees when their environment drifts from requirements.txt, and what the fingerprint keeps."""
    lock = tmp_path / "requirements.txt"
    lock.write_text((REPO / "requirements.txt").read_text())
    assert package_lock.warn_if_unlocked("train", lock) == []
    assert capsys.readouterr().err == ""
    assert package_lock.facts(lock)["unlocked"] == "none"

    keras = importlib.metadata.version("keras")
    drifted = {"keras": "0.0.1", "numpy": "0.0.2", "protobuf": "0.0.3", "absl-py": "0.0.4"}
    text = lock.read_text()
    for name, version in drifted.items():
        text = re.sub(rf"^{name}==\S+", f"{name}=={version}", text, flags=re.MULTILINE)
    lock.write_text(text)
    found = package_lock.warn_if_unlocked("evaluate", lock)
    assert len(found) == 4 and f"keras {keras} (locked 0.0.1)" in found
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and line.startswith(f"warning: evaluate: installed packages differ from {lock}: ")
    assert ", ".join(found[:3]) + " and 1 more; results may differ from a locked run's" in line
    lock.write_text(re.sub(r"^absl-py==\S+", "absl-py==" + importlib.metadata.version("absl-py"), text, flags=re.M))
    three = package_lock.warn_if_unlocked("evaluate", lock)
    assert len(three) == 3 and f"{', '.join(three)}; results may differ" in capsys.readouterr().err  # no "0 more"
    lock.write_text(text)

    facts = package_lock.facts(lock)
    assert facts["python"] == platform.python_version()
    assert facts["unlocked"] == "; ".join(found)
    assert facts["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert facts["packages"] == {name: importlib.metadata.version(name) for name in package_lock.DECIDING}
    assert package_lock.facts(lock, unlocked=[])["unlocked"] == "none"
    assert package_lock.facts(tmp_path / "missing.txt")["lock_sha256"] is None
    assert package_lock.warn_if_unlocked("train", tmp_path / "missing.txt") == [
        f"{tmp_path / 'missing.txt'}: cannot read (No such file or directory)"
    ]
