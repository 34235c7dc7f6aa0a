"""Memory: what training will need, what this process may use, and whether the kernel's OOM killer struck.

On a CPU a run that needs more memory than the machine has gets no error: the kernel's out-of-memory killer ends it
with SIGKILL, and all DVC says is `exited with -9`. So train estimates its peak before it touches any output and
refuses a batch that cannot fit, in one line (`check_training`); and the process supervising a stage reads the
cgroup's OOM-kill count to name the cause when one is killed anyway (fmnist.supervisor).

No TensorFlow import here: the model is passed in.
"""

import math
import os
from pathlib import Path

import psutil

from fmnist.stage_runner import StageError

GIB = 2**30
# Peak memory of a training step beyond what the process holds before fit(), per byte of float32 activations (every
# layer's output for one image) per image of the batch. Measured with `python -m benchmarks.train_memory` for
# conv3_bn at batch 64-16,384: 1.2-1.8 (Keras keeps each activation for the backward pass, and gradients and oneDNN's
# buffers come on top); the largest, so the estimate is an upper bound.
TRAINING_BYTES_PER_ACTIVATION_BYTE = 1.8
FIXED_TRAINING_BYTES = 160 * 2**20  # tf.data buffers, the optimizer's first-step allocations: 105 MiB at batch 64
UNLIMITED = 2**62  # cgroup v1 writes "no limit" as about 2**63, rounded down to the page size


def _cgroup_dirs() -> list[Path]:
    """This process's memory cgroup folders, its own first, then each ancestor up to the hierarchy's root (Linux;
    cgroup v2, or v1's memory controller). Empty where there is none to read."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    roots = {}
    for line in mounts:
        fields = line.split()
        if len(fields) > 3 and fields[2] == "cgroup2":
            roots.setdefault("", Path(fields[1]))
        elif len(fields) > 3 and fields[2] == "cgroup" and "memory" in fields[3].split(","):
            roots["memory"] = Path(fields[1])
    for line in memberships:  # "<id>:<controllers>:<path>"; v2 has no controllers and wins where v1's memory lacks
        _, controllers, path = line.split(":", 2)
        if "memory" in roots and "memory" in controllers.split(","):
            root = roots["memory"]
        elif "memory" not in roots and "" in roots and controllers == "":
            root = roots[""]
        else:
            continue
        own = root / path.lstrip("/")
        return [own, *(folder for folder in own.parents if folder.is_relative_to(root))]
    return []


def _read(folder: Path, name: str) -> str | None:
    try:
        return (folder / name).read_text()
    except OSError:
        return None


def _stat(folder: Path, key: str) -> int:
    text = _read(folder, "memory.stat") or ""
    return next((int(line.split()[1]) for line in text.splitlines() if line.split()[0] == key), 0)


def cgroup_room() -> tuple[int, Path] | None:
    """(bytes the cgroup with the tightest limit can still give, that cgroup), or None with no limit to read. Page
    cache the kernel can drop (inactive files) counts as free."""
    tightest = None
    for folder in _cgroup_dirs():
        limit = _read(folder, "memory.max") or _read(folder, "memory.limit_in_bytes")
        usage = _read(folder, "memory.current") or _read(folder, "memory.usage_in_bytes")
        if limit is None or usage is None or limit.strip() == "max" or int(limit) >= UNLIMITED:
            continue
        reclaimable = _stat(folder, "inactive_file") or _stat(folder, "total_inactive_file")
        room = max(0, int(limit) - int(usage) + reclaimable)
        if tightest is None or room < tightest[0]:
            tightest = (room, folder)
    return tightest


def oom_kills() -> int | None:
    """How many processes of this process's cgroup the OOM killer has ended, or None where it cannot be read."""
    for folder in _cgroup_dirs()[:1]:
        text = _read(folder, "memory.events") or _read(folder, "memory.oom_control") or ""
        for line in text.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return None


def room() -> tuple[int, str]:
    """(bytes this process may still take, what limits it): the machine's available memory or its cgroup's room."""
    available = psutil.virtual_memory().available
    limited = cgroup_room()
    if limited is not None and limited[0] < available:
        return limited[0], f"its cgroup's limit ({limited[1]})"
    return available, "available memory"


def activation_bytes(model) -> int:
    """Bytes of every layer's float32 output for one image."""
    return 4 * sum(math.prod(layer.output.shape[1:]) for layer in model.layers)


def largest_layer_bytes(model) -> int:
    return 4 * max(math.prod(layer.output.shape[1:]) for layer in model.layers)


def training_peak(model, batch_size: int, train_images: int, val_images: int, batch_norm_images: int,
                  image_bytes: int, resident: int) -> int:  # fmt: skip
    """Estimated peak resident bytes of training, from what the process holds now (`resident`: TensorFlow, the
    arrays and the model) plus: a batch's activations and what backpropagation keeps of them; the copies tf.data
    makes of the arrays; and the batch norm statistics, which hold one layer's outputs for every image they use."""
    batch = min(batch_size, train_images)
    step = TRAINING_BYTES_PER_ACTIVATION_BYTE * batch * activation_bytes(model)
    copies = (train_images + val_images) * image_bytes
    statistics = 2 * min(batch_norm_images, train_images) * largest_layer_bytes(model)
    return int(resident + FIXED_TRAINING_BYTES + step + copies + statistics)


def check_training(model, config, train_images: int, val_images: int, image_bytes: int) -> tuple[int, int]:
    """Refuse, in one line naming train.batch_size, a run whose estimated peak exceeds what the process may use;
    else print both. Returns (the estimate, what the process may use), in bytes."""
    resident = psutil.Process(os.getpid()).memory_info().rss
    need = training_peak(model, config.batch_size, train_images, val_images, config.batch_norm_images,
                         image_bytes, resident)  # fmt: skip
    free, limit = room()
    if need <= resident + free:
        print(f"train: memory: peak at most about {need / GIB:.2f} GiB, {(resident + free) / GIB:.1f} GiB usable")
        return need, resident + free
    per_image = TRAINING_BYTES_PER_ACTIVATION_BYTE * activation_bytes(model)
    fits = int((resident + free - training_peak(model, 0, train_images, val_images, config.batch_norm_images,
                                                image_bytes, resident)) // per_image)  # fmt: skip
    advice = f"the largest batch that fits is about {fits:,}" if fits >= 1 else "no batch fits: free some memory"
    raise StageError(
        f"train.batch_size = {config.batch_size}: training would need about {need / GIB:.1f} GiB of memory, and this"
        f" process may use {(resident + free) / GIB:.1f} GiB ({limit}); {advice}"
    )
