#!/usr/bin/env bash
# Linux on ARM (aarch64) on an x86-64 Debian machine, under QEMU's user-mode emulation: a Debian arm64 root
# filesystem that debootstrap builds from Debian's archive, Python 3.11 there with the locked aarch64 wheels from
# PyPI, and this repository mounted in it at /repo.
#
#   bash tools/arm64.sh setup                         # once, into $ARM64_ROOT (default ~/.cache/fmnist-arm64)
#   bash tools/arm64.sh check [tests] [tiny] [real]   # what docs/platforms.md reports (default: all three)
#   bash tools/arm64.sh run 'python -m pytest tests/test_cpu.py'
#   QEMU_CPU=neoverse-n1 bash tools/arm64.sh run '...' # another CPU model; `qemu-aarch64-static -cpu help`
#
# Needs root (chroot, mounts, binfmt_misc) and Debian's qemu-user-static and debootstrap; it installs them when
# they are missing. Every aarch64 program, the children the tests start included, runs under qemu-aarch64-static
# through the kernel's binfmt_misc, about 100 times slower than the host. docs/platforms.md has what it ran.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 1 ] || usage
action=$1
shift
ROOT=$(realpath -m "${ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/fmnist-arm64}")

register_binfmt() {
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  # F: the kernel opens the interpreter now, so it works inside the chroot, where it is not on the path
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
}

setup() {
  if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq && apt-get install -y -qq qemu-user-static debootstrap
  fi
  register_binfmt
  if [ ! -x "$ROOT/usr/bin/python3" ]; then
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,git,ca-certificates \
      bookworm "$ROOT" "$MIRROR"
  fi
  mkdir -p "$ROOT/repo"
  inside 'python3 -m venv /venv && /venv/bin/pip install -q --require-hashes -r /repo/requirements-dev.txt'
}

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
  mounted=()
}
trap unmount_all EXIT

inside() {
  register_binfmt
  mount_bind() {
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounted+=("$2")
  }
  mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc")
  mount_bind /dev "$ROOT/dev"
  mount_bind /dev/shm "$ROOT/dev/shm"
  mount_bind "$REPO" "$ROOT/repo"
  [ -d /usr/share/datasets ] && mount_bind /usr/share/datasets "$ROOT/usr/share/datasets"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"  # with any CA the host adds (a proxy's)
  local status=0
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/venv/bin:/usr/bin:/bin \
    ${QEMU_CPU:+QEMU_CPU="$QEMU_CPU"} TMPDIR=/tmp bash -c "cd /repo && $1" || status=$?
  unmount_all
  return $status
}

# The fast tier's tests that touch the CPU, TensorFlow or memory; the tiny pipeline with tools.predict and
# tools.review --reproduce (tests/test_other_platforms.py); one epoch of the default model on the real data
# (Debian's copy, mounted from the host), in a scratch copy of the pipeline, with DVC.
# shellcheck disable=SC2016  # these run in the chroot's shell, which expands them
CHECK_TESTS='python -m pytest -m "not slow" -n 0 -p no:cacheprovider -q tests/test_cpu.py tests/test_runtime.py \
  tests/test_memory.py tests/test_train.py tests/test_distribute.py tests/test_evaluate.py tests/test_predict.py'
CHECK_TINY='python -m pytest -n 0 -p no:cacheprovider -q tests/test_other_platforms.py'
# shellcheck disable=SC2016
CHECK_REAL='work=$(mktemp -d) &&
  cp -r stages fmnist tools dvc.yaml params.yaml requirements.txt .dvcignore .gitignore "$work" && cd "$work" &&
  sed -i "s/^  epochs: [0-9]*/  epochs: 1/" params.yaml && git init -q && dvc init -q &&
  DVC_NO_ANALYTICS=1 dvc repro && cat reports/metrics.json reports/fingerprint.json logs/timing/*/*'

check() {
  [ $# -ge 1 ] || set -- tests tiny real
  local failed=()
  for part in "$@"; do
    echo "== $part ($(date -u +%H:%M:%S))"
    case $part in
      tests) inside "$CHECK_TESTS" || failed+=("$part") ;;
      tiny) inside "$CHECK_TINY" || failed+=("$part") ;;
      real) inside "$CHECK_REAL" || failed+=("$part") ;;
      *) usage ;;
    esac
  done
  echo "== done ($(date -u +%H:%M:%S)); failed: ${failed[*]:-none}"
  [ ${#failed[@]} -eq 0 ]
}

case $action in
  setup) setup ;;
  check) check "$@" ;;
  run)
    [ $# -ge 1 ] || usage
    inside "$*"
    ;;
  *) usage ;;
esac
