"""Put a stage's previous outputs back after it failed under `dvc repro` or `dvc exp run`.

DVC deletes a stage's outputs before it starts the stage's command; `persist: true` would keep them, but DVC then
never run-caches the stage. So the run cache stays on, and a failing stage puts back what `dvc.lock` (still the
previous run's) records, each file checked against its MD5 there: from DVC's cache, which holds the cached outputs
and, once the run cache has saved a run, the uncached metrics and plots too; else from git HEAD, where a fresh
clone has the committed ones. A SIGKILL leaves no chance: then `dvc checkout` and `git checkout` bring them back.
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import yaml

from fmnist import paths


def under_dvc() -> str | None:
    """The stage DVC is running this process as (DVC sets DVC_STAGE for a stage's command), else None."""
    return os.environ.get("DVC_STAGE")


def _md5(path: Path) -> str | None:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def _content(root: Path, cache: Path, path: str, md5: str) -> bytes | None:
    """The bytes whose MD5 is `md5`: from DVC's cache, else from git HEAD's `path`."""
    stored = cache / md5[:2] / md5[2:]
    if stored.is_file():
        return stored.read_bytes()
    if not path:
        return None
    committed = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True)
    if committed.returncode == 0 and hashlib.md5(committed.stdout).hexdigest() == md5:
        return committed.stdout
    return None


def _manifest_from_git(root: Path, folder: str, md5: str) -> bytes | None:
    """The folder at git HEAD as DVC's manifest of it (a fresh clone has uncached folders only there), if its MD5
    is the one recorded: sorted {"md5", "relpath"} entries, as dvc-data writes them."""
    listed = subprocess.run(["git", "ls-tree", "-r", "HEAD", "--", folder], cwd=root, capture_output=True, text=True)
    entries = []
    for line in listed.stdout.splitlines():
        blob, path = line.split()[2], line.split("\t", 1)[1]
        data = subprocess.run(["git", "cat-file", "blob", blob], cwd=root, capture_output=True).stdout
        entries.append({"md5": hashlib.md5(data).hexdigest(), "relpath": Path(path).relative_to(folder).as_posix()})
    manifest = json.dumps(sorted(entries, key=lambda entry: entry["relpath"]), sort_keys=True).encode()
    return manifest if entries and hashlib.md5(manifest).hexdigest() == md5.removesuffix(".dir") else None


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-restore")
    temporary.write_bytes(data)
    temporary.replace(path)


def put_back(stage: str) -> tuple[int, list[str]]:
    """Make the stage's outputs what dvc.lock records. Returns how many files were put back and the outputs that
    could not be (no copy with the recorded MD5 in DVC's cache or git HEAD)."""
    from dvc.repo import Repo  # only on this failure path: download and preprocess never load DVC otherwise

    root = Path(os.environ.get("DVC_ROOT", "."))
    lock_file = root / paths.PIPELINE_LOCK
    if not lock_file.is_file():
        return 0, []
    entry = ((yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}).get(stage.split(":")[-1]) or {}
    with Repo(str(root)) as repo:
        cache = Path(repo.cache.local.path)
    put, lost = 0, []
    for out in entry.get("outs", []):
        name, md5 = out["path"], out.get("md5", "")
        if not md5.endswith(".dir"):
            if _md5(root / name) != md5:
                data = _content(root, cache, name, md5)
                if data is None:
                    lost.append(name)
                    continue
                _put(root / name, data)
                put += 1
            continue
        manifest = _content(root, cache, "", md5) or _manifest_from_git(root, name, md5)
        if manifest is None:
            lost.append(name)
            continue
        files = {item["relpath"]: item["md5"] for item in json.loads(manifest)}
        for relpath, file_md5 in files.items():
            target = root / name / relpath
            if _md5(target) != file_md5:
                data = _content(root, cache, f"{name}/{relpath}", file_md5)
                if data is None:
                    lost.append(f"{name}/{relpath}")
                    continue
                _put(target, data)
                put += 1
        for path in sorted((root / name).rglob("*"), reverse=True):  # what the failed run left that was not there
            relpath = path.relative_to(root / name).as_posix()
            if path.is_file() and relpath not in files:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return put, lost
