#!/usr/bin/env bash
# Run the device path on aarch64 without a Raspberry Pi, and compare it with this machine.
#
# Why: the shipped model and edge_ser must give the same answers on a Pi (aarch64, Python
# 3.11, tflite-runtime 2.14, numpy 1.26) as on the x86_64 workstation that made them. We run
# the same Python check under qemu-user inside a Debian bookworm arm64 root (the base of
# Raspberry Pi OS Bookworm) and natively, end to end (decode -> features -> windows ->
# int8 model), then require the same top-1 label and probabilities within 1e-5 for every
# clip between aarch64 with its default kernels (what a Pi runs) and x86_64 with TFLite's
# portable reference kernels (BUILTIN_REF). Why the reference kernels: they are
# bit-identical across machines and aarch64's optimized kernels equal them, whereas
# x86_64's optimized int8 kernels round differently; that comparison (x86_64 default vs
# aarch64) is reported too, as information, with a kernel analysis explaining it.
#
# How (see shared notes on arm64 emulation): binfmt_misc is not available here, so
# qemu-aarch64-static is called directly; a process started by the emulated Python would
# run natively and fail, so the whole check is ONE Python process (device/arm64_check.py).
# ai-edge-litert crashes inside Interpreter() under qemu, so the arm64 side uses
# tflite-runtime (the backend Bookworm installs anyway). Timings under emulation mean
# nothing: only outputs are compared.
#
# Takes minutes (debootstrap + emulated pip the first time, emulated inference always);
# not part of the default test run. The arm64 root is cached (default
# /var/tmp/edge-ser-arm64, outside the repository) and reused.
#
# Usage: device/check-arm64.sh [--root DIR] [--model FILE] [--clips N] [--out FILE]
#                              [--cpu cortex-a72|cortex-a53|cortex-a76] [--python PY]
#                              [--prepare-only]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

arm_root="${EDGE_SER_ARM64_ROOT:-/var/tmp/edge-ser-arm64}"
model="$repo/models/edge-ser-int8.tflite"
clips=24
out="$here/results/arm64-check.txt"
host_python="${EDGE_SER_HOST_PYTHON:-$repo/.venv-dev/bin/python}"
prepare_only=0
suite=bookworm
# cortex-a72: Pi 4 / Pi 400 / CM4; cortex-a53: Pi 3 / Zero 2 W; cortex-a76: Pi 5 (has the
# dot-product instructions, so the interpreter may pick other int8 kernels).
cpu=cortex-a72

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

die() {
    echo "check-arm64: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) arm_root="${2:?--root needs a directory}"; shift 2 ;;
        --model) model="${2:?--model needs a file}"; shift 2 ;;
        --clips) clips="${2:?--clips needs a number}"; shift 2 ;;
        --out) out="${2:?--out needs a file}"; shift 2 ;;
        --cpu) cpu="${2:?--cpu needs a qemu CPU model}"; shift 2 ;;
        --python) host_python="${2:?--python needs an interpreter}"; shift 2 ;;
        --prepare-only) prepare_only=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

case "$clips" in
    '' | *[!0-9]*) die "--clips must be a positive integer, got '$clips'" ;;
esac
case "$arm_root" in
    /*) ;;
    *) arm_root="$(pwd)/$arm_root" ;;
esac
case "$arm_root" in
    "$repo" | "$repo"/*) die "keep the arm64 root outside the repository ($arm_root)" ;;
esac

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found; install it: apt-get install -y $2"
}
need qemu-aarch64-static qemu-user-static
need debootstrap debootstrap
need dpkg-deb dpkg

qemu() {
    # -L makes the arm64 root the library prefix.
    qemu-aarch64-static -cpu "$cpu" -L "$arm_root" "$@"
}

arm_python="$arm_root/usr/bin/python3.11"
site="$arm_root/opt/site"

bootstrap_root() {
    if [ -x "$arm_python" ] && [ -f "$arm_root/.edge-ser-unpacked" ]; then
        echo "arm64 root: reusing $arm_root"
        return
    fi
    echo "arm64 root: debootstrap $suite into $arm_root (first run only, a few minutes)"
    mkdir -p "$arm_root"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip "$suite" "$arm_root" >"$arm_root.debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $arm_root.debootstrap.log"
    # --foreign leaves packages only partly unpacked and the second stage cannot run
    # without binfmt_misc: unpack every downloaded package by hand instead.
    local deb
    for deb in "$arm_root"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$arm_root"
    done
    [ -x "$arm_python" ] || die "no $arm_python after unpacking; see $arm_root.debootstrap.log"
    touch "$arm_root/.edge-ser-unpacked"
}

device_requirements() {
    # requirements-edge.txt minus pyaudio (microphone only; it would need portaudio headers
    # in the arm64 root and a compiler under emulation, and the check never opens a device).
    grep -v -i -E '^[[:space:]]*pyaudio' "$repo/requirements-edge.txt"
}

install_packages() {
    local reqs stamp
    reqs="$(device_requirements)"
    stamp="$site/.edge-ser-requirements"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ]; then
        echo "arm64 packages: up to date in $site"
        return
    fi
    echo "arm64 packages: pip install (emulated, evaluates the markers for Python 3.11/aarch64)"
    rm -rf "$site"
    mkdir -p "$site"
    local req_file="$arm_root/tmp/edge-ser-requirements.txt"
    mkdir -p "$arm_root/tmp"
    printf '%s\n' "$reqs" >"$req_file"
    # Packages published only as source (python_speech_features) are built by pip in a
    # subprocess, which cannot run under qemu-user without binfmt_misc. They are pure
    # Python, so build their wheels natively first and let the emulated pip take wheels only.
    local wheelhouse="$arm_root/tmp/edge-ser-wheelhouse" sdist_only
    rm -rf "$wheelhouse"
    mkdir -p "$wheelhouse"
    sdist_only="$(printf '%s\n' "$reqs" | grep -i -E '^[[:space:]]*python[_-]speech[_-]features' || true)"
    if [ -n "$sdist_only" ]; then
        "$host_python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
            -w "$wheelhouse" "$sdist_only" || die "cannot build a wheel for: $sdist_only"
    fi
    qemu "$arm_python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        --break-system-packages --target "$site" --only-binary=:all: \
        --find-links "$wheelhouse" -r "$req_file" || die "emulated pip install failed"
    printf '%s\n' "$reqs" >"$stamp"
}

bootstrap_root
install_packages
[ "$prepare_only" = 1 ] && { echo "prepared $arm_root"; exit 0; }

[ -f "$model" ] || die "model not found: $model (train/convert it first, or pass --model)"
[ -x "$host_python" ] || die "host Python not found: $host_python (set --python)"

work="$(mktemp -d "${TMPDIR:-/tmp}/edge-ser-arm64-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "clips: choosing $clips into $work/clips"
"$host_python" "$here/arm64_check.py" make-clips --count "$clips" --dir "$work/clips"

echo "x86_64: classifying natively with tflite-runtime, default kernels"
EDGE_SER_BACKEND=tflite-runtime PYTHONPATH="$repo" \
    "$host_python" "$here/arm64_check.py" classify --model "$model" --clips "$work/clips" \
    --json "$work/x86_64.json"

echo "x86_64: classifying natively with tflite-runtime, reference kernels (BUILTIN_REF)"
EDGE_SER_BACKEND=tflite-runtime PYTHONPATH="$repo" \
    "$host_python" "$here/arm64_check.py" classify --model "$model" --clips "$work/clips" \
    --json "$work/x86_64-ref.json" --kernels reference

echo "aarch64: classifying under qemu-aarch64-static ($cpu), tflite-runtime"
EDGE_SER_BACKEND=tflite-runtime PYTHONPATH="$site:$repo" PYTHONNOUSERSITE=1 \
    qemu "$arm_python" "$here/arm64_check.py" classify --model "$model" --clips "$work/clips" \
    --json "$work/aarch64.json" --reference-features "$work/x86_64.npz"

mkdir -p "$(dirname "$out")"
"$host_python" "$here/arm64_check.py" compare "$work/x86_64-ref.json" "$work/aarch64.json" \
    --informative "$work/x86_64.json" --tolerance 1e-5 --cpu "$cpu" --report "$out"
