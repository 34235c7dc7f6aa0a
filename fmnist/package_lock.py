"""The Python environment a run used, against the lock (requirements.txt: every package, pinned, with hashes).

Exact mode promises the same bits for the same code, params and packages. The fingerprint names the packages whose
versions decide the arithmetic, and a digest of the lock; a run in an environment that differs from the lock says so
in one line naming the package.
"""

import hashlib
import importlib.metadata
import platform
import re
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from fmnist import paths

# The packages whose code computes or stores the weights (TensorFlow's kernels, Keras' layers and optimizers,
# NumPy and ml_dtypes' arrays, protobuf's graph and summary encoding), recorded in the fingerprint.
DECIDING = ("tensorflow", "keras", "numpy", "ml-dtypes", "protobuf")

# A lock line: `name==version`, optionally extras and an environment marker, continued by hash lines.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked_versions(text: str) -> dict[str, str]:
    """Every package the lock pins for this platform and Python (environment markers evaluated): name -> version."""
    versions = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match and (not match.group(3) or Marker(match.group(3)).evaluate()):
            versions[canonicalize_name(match.group(1))] = match.group(2)
    return versions


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def differences(locked: dict[str, str]) -> list[str]:
    """Each locked package whose installed version is another, as 'name installed (locked version)'."""
    found = []
    for name, version in sorted(locked.items()):
        installed = installed_version(name)
        if installed != version:
            found.append(f"{name} {installed or 'not installed'} (locked {version})")
    return found


def lock_differences(lock: Path = paths.LOCK) -> list[str]:
    try:
        return differences(locked_versions(lock.read_text()))
    except OSError as error:
        return [f"{lock}: cannot read ({error.strerror})"]


def warn_if_unlocked(stage: str, lock: Path = paths.LOCK) -> list[str]:
    """One line on stderr when the environment is not the lock's; what differs."""
    found = lock_differences(lock)
    if found:
        print(
            f"warning: {stage}: installed packages differ from {lock}: {', '.join(found[:3])}"
            f"{f' and {len(found) - 3} more' if len(found) > 3 else ''}; results may differ from a locked run's",
            file=sys.stderr,
        )
    return found


def facts(lock: Path = paths.LOCK, unlocked: list[str] | None = None) -> dict[str, object]:
    """What the fingerprint records of the environment: Python, the deciding packages, the lock's digest."""
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {
        "python": platform.python_version(),
        "packages": {name: installed_version(name) for name in DECIDING},
        "lock_sha256": digest,
        # Packages installed at other versions than the lock's ("none": the run is a locked one).
        "unlocked": "; ".join(lock_differences(lock) if unlocked is None else unlocked) or "none",
    }
