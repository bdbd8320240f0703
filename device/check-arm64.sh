#!/usr/bin/env bash
# Run the device path on aarch64 without a Raspberry Pi, for both Raspberry Pi OS
# generations, and compare it with this machine.
#
# Why: the shipped model and edge_ser must give the same answers on a Pi as on the x86_64
# workstation that made them. A Pi runs one of two generations, and each has its own
# interpreter (requirements-edge.txt picks it by Python version):
#   bookworm  Debian 12, Python 3.11, tflite-runtime 2.14 + numpy 1.26
#   trixie    Debian 13, Python 3.13, ai-edge-litert (LiteRT) 2.3 + numpy 2
# For each, the same Python check runs under qemu-user in a Debian arm64 root of that
# generation (the base of Raspberry Pi OS) and natively, end to end (decode -> features ->
# windows -> int8 model), and every clip must give the same top-1 label and probabilities
# within 1e-5. What aarch64 (default kernels, what a Pi runs) is compared with depends on
# the interpreter, because each one's aarch64 default kernels equal a different x86_64 run:
#   tflite-runtime: x86_64 reference kernels (BUILTIN_REF); its x86_64 optimized int8
#                   kernels round differently, its aarch64 ones equal the reference.
#   LiteRT:         x86_64 LiteRT default kernels (XNNPACK); they give the same outputs on
#                   both machines, while LiteRT's builtin optimized kernels
#                   (BUILTIN_WITHOUT_DEFAULT_DELEGATES, i.e. --no-xnnpack) differ on aarch64
#                   by a few output steps.
# The other kernel choices are compared too, as information (device/arm64_check.py).
# The Trixie leg also installs edge-ser into the arm64 root the way device/install.sh
# does (venv in /opt/edge-ser/venv, model, default config) and runs the service's command
# line (`edge-ser listen --config /etc/edge-ser/edge-ser.toml`, on a WAV file instead of
# a microphone) and `edge-ser classify` from that venv, under qemu.
#
# How (see shared notes on arm64 emulation): binfmt_misc is not available here, so the
# emulator is called directly; a process started by the emulated Python would run natively
# and fail, so each run is ONE Python process (device/arm64_check.py). qemu 10 or newer
# is required: qemu 7.2 (bookworm's qemu-user-static) hands the guest the host's x86
# /proc/cpuinfo, on which LiteRT crashes inside Interpreter(), and with -cpu max it
# computes wrong XNNPACK outputs. When no such qemu is found, Debian trixie's qemu-user
# package is fetched into the cache through a private apt configuration (the machine's
# apt sources are not touched). Timings under emulation mean nothing: only outputs are
# compared.
#
# Takes minutes (debootstrap + emulated pip the first time, emulated inference always);
# not part of `make test`. Roots, packages and qemu are cached (default ../arm64-cache
# next to the repository, outside it) and reused, so a re-run (e.g. with a new model)
# only classifies. Writes the report (model sha256, one table per generation) to --out.
# Exit status 0 only when every generation checked passes. After replacing the model:
#   nice -n 10 device/check-arm64.sh --also-cpu cortex-a53,cortex-a76
# (11 minutes on a busy 2-core machine with the cache warm; about half without --also-cpu).
#
# Usage: device/check-arm64.sh [--suite both|bookworm|trixie] [--cache DIR] [--model FILE]
#                              [--clips N] [--out FILE] [--cpu cortex-a72|cortex-a53|cortex-a76]
#                              [--also-cpu cortex-a53,cortex-a76]
#                              [--qemu PATH] [--python PY] [--litert-python PY]
#                              [--prepare-only]
#   --cpu            the emulated core (default cortex-a72: Pi 4); --also-cpu runs the aarch64
#                    default-kernel classification again on other cores, each with its own
#                    verdict and whether its outputs equal the main core's
#   --python         x86_64 Python with tflite-runtime 2.14 + numpy 1.26 (default .venv-dev)
#   --litert-python  x86_64 Python with ai-edge-litert + numpy 2 (default .venv-litert)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

cache="${EDGE_SER_ARM64_CACHE:-$(dirname "$repo")/arm64-cache}"
model="$repo/models/edge-ser-int8.tflite"
clips=24
out="$here/results/arm64-check.txt"
host_python="${EDGE_SER_HOST_PYTHON:-$repo/.venv-dev/bin/python}"
litert_python="${EDGE_SER_LITERT_PYTHON:-$repo/.venv-litert/bin/python}"
qemu_bin="${EDGE_SER_QEMU:-}"
prepare_only=0
suites="bookworm trixie"
# cortex-a72: Pi 4 / Pi 400 / CM4; cortex-a53: Pi 3 / Zero 2 W; cortex-a76: Pi 5 (has the
# dot-product instructions, so the interpreter may pick other int8 kernels).
cpu=cortex-a72
also_cpus=""
QEMU_MIN_MAJOR=10

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

die() {
    echo "check-arm64: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --suite)
            case "${2:-}" in
                both) suites="bookworm trixie" ;;
                bookworm | trixie) suites="$2" ;;
                *) die "--suite must be both, bookworm or trixie, got '${2:-}'" ;;
            esac
            shift 2 ;;
        --cache | --root) cache="${2:?$1 needs a directory}"; shift 2 ;;
        --model) model="${2:?--model needs a file}"; shift 2 ;;
        --clips) clips="${2:?--clips needs a number}"; shift 2 ;;
        --out) out="${2:?--out needs a file}"; shift 2 ;;
        --cpu) cpu="${2:?--cpu needs a qemu CPU model}"; shift 2 ;;
        --also-cpu) also_cpus="${2:?--also-cpu needs qemu CPU models, comma-separated}"; shift 2 ;;
        --qemu) qemu_bin="${2:?--qemu needs the qemu-aarch64 binary}"; shift 2 ;;
        --python) host_python="${2:?--python needs an interpreter}"; shift 2 ;;
        --litert-python) litert_python="${2:?--litert-python needs an interpreter}"; shift 2 ;;
        --prepare-only) prepare_only=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

case "$clips" in
    '' | *[!0-9]* | 0) die "--clips must be a positive integer, got '$clips'" ;;
esac
case "$cpu,$also_cpus" in
    *[!a-z0-9,.-]*) die "--cpu/--also-cpu take qemu CPU model names (e.g. cortex-a76), got '$cpu' '$also_cpus'" ;;
esac
case "$cache" in
    /*) ;;
    *) cache="$(pwd)/$cache" ;;
esac
case "$cache" in
    "$repo" | "$repo"/*) die "keep the arm64 cache outside the repository ($cache)" ;;
esac
case "$model" in
    /*) ;;
    *) model="$(pwd)/$model" ;;
esac
case "$out" in
    /*) ;;
    *) out="$(pwd)/$out" ;;
esac

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found; install it: apt-get install -y $2"
}

# --- qemu 10 or newer -----------------------------------------------------------------
qemu_major() {
    # "qemu-aarch64 version 10.0.13 (Debian ...)" -> 10; empty when it does not run.
    "$1" --version 2>/dev/null | sed -n -E '1s/.*version ([0-9]+)\..*/\1/p'
}

fetch_qemu() {
    # Debian trixie's qemu-user (its qemu-user-static is only symlinks to it), unpacked
    # into the cache; apt runs with private sources, lists and cache directories.
    local dir="$cache/qemu" uri apt deb
    need apt-get apt
    need dpkg-deb dpkg
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] ||
        die "no Debian archive keyring to verify trixie's qemu-user; pass --qemu PATH to a qemu-aarch64 >= $QEMU_MIN_MAJOR"
    uri="$(grep -h -s '^URIs:.*/debian$' /etc/apt/sources.list.d/*.sources | head -n 1 | awk '{print $2}')"
    uri="${uri:-http://deb.debian.org/debian}"
    echo "qemu: fetching Debian trixie's qemu-user into $dir (private apt configuration)"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$dir/sources.list"
    apt=(apt-get -q -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache")
    "${apt[@]}" update >"$dir/apt.log" 2>&1 || die "apt-get update (trixie) failed; see $dir/apt.log"
    (cd "$dir" && "${apt[@]}" download qemu-user) >>"$dir/apt.log" 2>&1 ||
        die "cannot download qemu-user; see $dir/apt.log"
    deb="$(find "$dir" -maxdepth 1 -name 'qemu-user_*.deb' | sort -V | tail -n 1)"
    rm -rf "$dir/root"
    dpkg-deb -x "$deb" "$dir/root"
}

choose_qemu() {
    local candidate major
    if [ -n "$qemu_bin" ]; then
        [ -x "$qemu_bin" ] || die "--qemu: not an executable: $qemu_bin"
        major="$(qemu_major "$qemu_bin")"
        [ -n "$major" ] || die "--qemu: $qemu_bin does not answer --version"
        [ "$major" -ge "$QEMU_MIN_MAJOR" ] || die "$qemu_bin is qemu $major.x; this check needs qemu $QEMU_MIN_MAJOR or newer: qemu 7.x hands the guest the host's x86 /proc/cpuinfo, on which LiteRT crashes inside Interpreter(), and computes wrong XNNPACK outputs with -cpu max, so no comparison under it means anything (leave --qemu out to fetch Debian trixie's qemu-user into the cache)"
        return
    fi
    for candidate in "$cache/qemu/root/usr/bin/qemu-aarch64" "$(command -v qemu-aarch64 || true)" \
        "$(command -v qemu-aarch64-static || true)"; do
        if [ -z "$candidate" ] || [ ! -x "$candidate" ]; then
            continue
        fi
        major="$(qemu_major "$candidate")"
        if [ -n "$major" ] && [ "$major" -ge "$QEMU_MIN_MAJOR" ]; then
            qemu_bin="$candidate"
            return
        fi
        [ -n "$major" ] && echo "qemu: $candidate is qemu $major.x, too old (needs $QEMU_MIN_MAJOR+), not used"
    done
    fetch_qemu
    qemu_bin="$cache/qemu/root/usr/bin/qemu-aarch64"
    major="$(qemu_major "$qemu_bin")"
    if [ -z "$major" ] || [ "$major" -lt "$QEMU_MIN_MAJOR" ]; then
        die "the fetched qemu-user is not qemu $QEMU_MIN_MAJOR+ ($qemu_bin); pass --qemu PATH"
    fi
}

# --- one arm64 root per generation ----------------------------------------------------
arm_root=""

qemu() {
    # -L makes the arm64 root the library prefix (and the guest's view of /etc, /opt...).
    "$qemu_bin" -cpu "$cpu" -L "$arm_root" "$@"
}

python_for() {
    case "$1" in
        bookworm) echo 3.11 ;;
        trixie) echo 3.13 ;;
    esac
}

bootstrap_root() {
    local suite="$1" arm_python deb
    arm_python="$arm_root/usr/bin/python$(python_for "$suite")"
    if [ -x "$arm_python" ] && [ -f "$arm_root/.edge-ser-unpacked" ]; then
        echo "$suite arm64 root: reusing $arm_root"
        return
    fi
    need debootstrap debootstrap
    need dpkg-deb dpkg
    echo "$suite arm64 root: debootstrap into $arm_root (first run only, a few minutes)"
    # A root without the stamp is a run that stopped halfway: debootstrap refuses to
    # extract over it, so start again.
    rm -rf "$arm_root"
    mkdir -p "$arm_root"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip "$suite" "$arm_root" >"$arm_root.debootstrap.log" 2>&1 ||
        die "debootstrap $suite failed; see $arm_root.debootstrap.log"
    # --foreign leaves packages only partly unpacked and the second stage cannot run
    # without binfmt_misc: unpack every downloaded package by hand instead.
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

wheelhouse="$cache/wheelhouse"

build_wheels() {
    # Packages published only as source (python_speech_features) and edge-ser itself are
    # built by pip in a subprocess, which cannot run under qemu-user without binfmt_misc.
    # They are pure Python, so build their wheels natively and let the emulated pip take
    # wheels only. edge-ser is rebuilt every run (the code may have changed).
    local sdist_only stage
    mkdir -p "$wheelhouse"
    sdist_only="$(device_requirements | grep -i -E '^[[:space:]]*python[_-]speech[_-]features' || true)"
    if [ -n "$sdist_only" ] && ! find "$wheelhouse" -maxdepth 1 -iname 'python_speech_features-*.whl' | grep -q .; then
        "$host_python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
            -w "$wheelhouse" "$sdist_only" || die "cannot build a wheel for: $sdist_only"
    fi
    rm -f "$wheelhouse"/edge_ser-*.whl
    # From a copy, so build/ and *.egg-info never land in the checkout (as install.sh does).
    stage="$(mktemp -d "${TMPDIR:-/tmp}/edge-ser-src.XXXXXX")"
    cp "$repo/pyproject.toml" "$stage/"
    if [ -f "$repo/README.md" ]; then cp "$repo/README.md" "$stage/"; else echo edge-ser >"$stage/README.md"; fi
    cp -r "$repo/edge_ser" "$stage/"
    find "$stage" -name __pycache__ -type d -prune -exec rm -rf {} +
    "$host_python" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
        -w "$wheelhouse" "$stage" || die "cannot build the edge-ser wheel"
    rm -rf "$stage"
}

install_packages() {
    # The device requirements, installed by the emulated pip (so the markers are evaluated
    # for this generation's Python on aarch64) into $arm_root/opt/site.
    local suite="$1" arm_python="$2" reqs stamp site="$arm_root/opt/site" req_file
    reqs="$(device_requirements)"
    stamp="$site/.edge-ser-requirements"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ]; then
        echo "$suite arm64 packages: up to date in $site"
        return
    fi
    echo "$suite arm64 packages: pip install (emulated, markers evaluated for Python $(python_for "$suite")/aarch64)"
    rm -rf "$site"
    mkdir -p "$site" "$arm_root/tmp"
    req_file="$arm_root/tmp/edge-ser-requirements.txt"
    printf '%s\n' "$reqs" >"$req_file"
    nice -n 10 "$qemu_bin" -cpu "$cpu" -L "$arm_root" "$arm_python" -m pip install --quiet \
        --disable-pip-version-check --no-cache-dir --root-user-action=ignore --break-system-packages --target "$site" \
        --only-binary=:all: --find-links "$wheelhouse" -r "$req_file" || die "emulated pip install failed ($suite)"
    printf '%s\n' "$reqs" >"$stamp"
}

# --- the comparison -------------------------------------------------------------------
check_suite() {
    # check_suite SUITE PYTHON BACKEND HOST_PYTHON: classify the clips natively (default and
    # reference kernels) and under qemu, and write this generation's report section.
    local suite="$1" arm_python="$2" backend="$3" native="$4" w
    w="$work/$suite"
    mkdir -p "$w"
    echo "$suite x86_64: classifying natively with $backend, default kernels"
    EDGE_SER_BACKEND="$backend" PYTHONPATH="$repo" \
        "$native" "$here/arm64_check.py" classify --model "$model" --clips "$work/clips" \
        --json "$w/x86_64.json"
    echo "$suite x86_64: classifying natively with $backend, reference kernels (BUILTIN_REF)"
    EDGE_SER_BACKEND="$backend" PYTHONPATH="$repo" \
        "$native" "$here/arm64_check.py" classify --model "$model" --clips "$work/clips" \
        --json "$w/x86_64-ref.json" --kernels reference
    echo "$suite aarch64: classifying under $(basename "$qemu_bin") $qemu_version ($cpu), $backend"
    EDGE_SER_BACKEND="$backend" PYTHONPATH="$arm_root/opt/site:$repo" PYTHONNOUSERSITE=1 \
        nice -n 10 "$qemu_bin" -cpu "$cpu" -L "$arm_root" "$arm_python" "$here/arm64_check.py" classify \
        --model "$model" --clips "$work/clips" --json "$w/aarch64.json" --reference-features "$w/x86_64.npz"
    local status=0 builtin=()
    if [ "$backend" = litert ]; then
        # LiteRT's builtin kernels (--no-xnnpack) round differently on aarch64: compare what
        # a Trixie Pi with --no-xnnpack computes, end to end, as information. (tflite-runtime's
        # builtin kernels are its default ones on both machines: the kernel table shows it.)
        echo "$suite x86_64: classifying natively with $backend, --no-xnnpack"
        EDGE_SER_BACKEND="$backend" PYTHONPATH="$repo" \
            "$native" "$here/arm64_check.py" classify --model "$model" --clips "$work/clips" \
            --json "$w/x86_64-builtin.json" --kernels builtin
        echo "$suite aarch64: classifying under qemu, $backend, --no-xnnpack"
        EDGE_SER_BACKEND="$backend" PYTHONPATH="$arm_root/opt/site:$repo" PYTHONNOUSERSITE=1 \
            nice -n 10 "$qemu_bin" -cpu "$cpu" -L "$arm_root" "$arm_python" "$here/arm64_check.py" classify \
            --model "$model" --clips "$work/clips" --json "$w/aarch64-builtin.json" --kernels builtin
        builtin=(--x86-builtin "$w/x86_64-builtin.json" --aarch64-builtin "$w/aarch64-builtin.json")
    fi
    "$native" "$here/arm64_check.py" compare --x86-default "$w/x86_64.json" --x86-reference "$w/x86_64-ref.json" \
        --aarch64 "$w/aarch64.json" "${builtin[@]}" --tolerance 1e-5 --suite "$suite" --cpu "$cpu" \
        --qemu "$(basename "$qemu_bin") $qemu_version" --report "$w/report.txt" || status=$?
    local other same verdict
    for other in ${also_cpus//,/ }; do
        echo "$suite aarch64: classifying under qemu ($other), $backend"
        EDGE_SER_BACKEND="$backend" PYTHONPATH="$arm_root/opt/site:$repo" PYTHONNOUSERSITE=1 \
            nice -n 10 "$qemu_bin" -cpu "$other" -L "$arm_root" "$arm_python" "$here/arm64_check.py" classify \
            --model "$model" --clips "$work/clips" --json "$w/aarch64-$other.json" --reference-features "$w/x86_64.npz"
        "$native" "$here/arm64_check.py" compare --x86-default "$w/x86_64.json" --x86-reference "$w/x86_64-ref.json" \
            --aarch64 "$w/aarch64-$other.json" --tolerance 1e-5 --suite "$suite" --cpu "$other" \
            --qemu "$(basename "$qemu_bin") $qemu_version" --report "$w/report-$other.txt" >/dev/null || status=1
        verdict="$(grep -E '^(PASS|FAIL) \(' "$w/report-$other.txt")"
        same="$("$native" "$here/arm64_check.py" same "$w/aarch64.json" "$w/aarch64-$other.json" || true)"
        printf '\nAlso -cpu %s: %s\n  vs -cpu %s: %s\n' "$other" "$verdict" "$cpu" "$same" >>"$w/report.txt"
    done
    return "$status"
}

service_check() {
    # Install edge-ser into the Trixie root the way device/install.sh lays it out, then run
    # the unit's ExecStart command line and `edge-ser classify` from that venv, under qemu.
    # install.sh itself cannot install here: `python -m venv` runs ensurepip and pip builds
    # edge-ser in subprocesses, which would run natively. So: its --dry-run plan with the
    # root's os-release and emulated python3, then venv --without-pip, the root's Debian
    # pip run by the venv's Python, wheels built natively. Not exercised: apt, useradd,
    # systemd (no init under qemu-user), the sandbox, pyaudio (needs a compiler).
    local suite="$1" arm_python="$2" venv="$arm_root/opt/edge-ser/venv" reqs stamp log="$work/service.txt"
    local pip=(nice -n 10 "$qemu_bin" -cpu "$cpu" -L "$arm_root" "$venv/bin/python" -m pip install --quiet
        --disable-pip-version-check --no-cache-dir --root-user-action=ignore --only-binary=:all:
        --find-links "$wheelhouse")
    local guest=(env -i PATH=/usr/bin:/bin PYTHONNOUSERSITE=1 PYTHONUNBUFFERED=1 nice -n 10 "$qemu_bin" -cpu "$cpu"
        -L "$arm_root" "$venv/bin/python" "$venv/bin/edge-ser")
    reqs="$(device_requirements)"
    stamp="$venv/.edge-ser-requirements"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$reqs" ]; then
        echo "$suite service: venv $venv (emulated python -m venv --without-pip) and requirements"
        rm -rf "$venv"
        qemu "$arm_python" -m venv --without-pip "$venv" || die "emulated venv creation failed"
        printf '%s\n' "$reqs" >"$arm_root/tmp/edge-ser-requirements.txt"
        PYTHONPATH="$arm_root/usr/lib/python3/dist-packages" "${pip[@]}" \
            -r "$arm_root/tmp/edge-ser-requirements.txt" || die "emulated pip install into the venv failed"
        printf '%s\n' "$reqs" >"$stamp"
    fi
    echo "$suite service: edge-ser wheel, model, default config into $arm_root"
    PYTHONPATH="$arm_root/usr/lib/python3/dist-packages" "${pip[@]}" --no-index --no-deps --force-reinstall \
        "$(find "$wheelhouse" -maxdepth 1 -name 'edge_ser-*.whl' | head -n 1)" || die "emulated pip install of edge-ser failed"
    install -d -m 0755 "$arm_root/opt/edge-ser/models" "$arm_root/etc/edge-ser"
    install -m 0644 "$model" "$arm_root/opt/edge-ser/models/edge-ser-int8.tflite"
    # install.sh's render_config: the default config with events appended to the state dir.
    sed -e 's|^events = ""|events = "/var/lib/edge-ser/events.jsonl"|' "$here/edge-ser.toml" \
        >"$arm_root/etc/edge-ser/edge-ser.toml"
    install -d -m 0750 "$arm_root/var/lib/edge-ser"
    : >"$arm_root/var/lib/edge-ser/events.jsonl" # qemu maps guest paths into the root only when they exist
    local examples="$arm_root/tmp/edge-ser-examples"
    rm -rf "$examples"
    mkdir -p "$examples"
    cp "$repo"/examples/*.wav "$examples/"
    # The emulated python3 answers install.sh's version question like the Pi's would.
    printf '#!/bin/sh\nexec %q -cpu %q -L %q %q "$@"\n' "$qemu_bin" "$cpu" "$arm_root" "$arm_python" >"$work/python3"
    chmod +x "$work/python3"
    local status=0 wav plan arm_classify x86_classify
    plan="$(bash "$here/install.sh" --dry-run --os-release "$arm_root/etc/os-release" \
        --arch "$(qemu "$arm_root/usr/bin/uname" -m)" --python "$work/python3" --model "$model" 2>&1)" || status=1
    # Relative paths, run from the examples folder: the guest sees the host's working
    # directory, so both tables name the files alike.
    arm_classify="$(cd "$examples" && "${guest[@]}" classify ./*.wav 2>&1 | grep -v '^INFO: ')" || status=1
    x86_classify="$(cd "$examples" && EDGE_SER_BACKEND=litert PYTHONPATH="$repo" "$litert_python" -m edge_ser classify \
        ./*.wav 2>&1 | grep -v '^INFO: ')" || status=1
    for wav in "$examples"/*.wav; do
        "${guest[@]}" listen --config /etc/edge-ser/edge-ser.toml --file "$wav" --no-stdout --quiet \
            >>"$work/listen.log" 2>&1 || status=1
    done
    {
        echo "== Trixie: the installed service under qemu ($(basename "$qemu_bin") $qemu_version, -cpu $cpu) =="
        echo "device/install.sh --dry-run with the root's /etc/os-release, its uname -m and its python3 (emulated):"
        printf '%s\n' "$plan" | grep -E '^plan +[0-9]+: (check|venv|pip: install requirements)' |
            sed -e "s|$work/python3|python3 (the root's, emulated)|" -e 's/^/  /'
        echo "Installed as install.sh lays it out: /opt/edge-ser/venv (Trixie's Python $(python_for "$suite")), the model"
        echo "in /opt/edge-ser/models, the default config in /etc/edge-ser (events to /var/lib/edge-ser/events.jsonl)."
        echo "\$ /opt/edge-ser/venv/bin/edge-ser classify examples/*.wav   (under qemu; no --model: the installed one)"
        printf '%s\n' "$arm_classify" | sed 's/^/  /'
        if [ "$arm_classify" = "$x86_classify" ]; then
            echo "  = the same table as x86_64 LiteRT (native, .venv-litert), character for character"
        else
            echo "  x86_64 LiteRT (native) gave instead:"
            printf '%s\n' "$x86_classify" | sed 's/^/  /'
            status=1
        fi
        echo "\$ /opt/edge-ser/venv/bin/edge-ser listen --config /etc/edge-ser/edge-ser.toml --file WAV  (the unit's"
        echo "  ExecStart, a WAV file instead of the microphone), for each example; events file afterwards:"
        "$litert_python" - "$arm_root/var/lib/edge-ser/events.jsonl" <<'PY' || status=1
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
for e in events:
    if e.get("type") == "utterance":
        print(f"  {e['device']:20s} utterance {e['stream_start']:.2f}-{e['stream_end']:.2f} s  {e['emotion']:9s} "
              f"{e['confidence']:.4f}  model {e['model']}")
starts = [e for e in events if e.get("type") == "status" and e.get("event") == "start"]
backends = sorted({e.get("backend", "?") for e in starts})
print(f"  {len(events)} events: {len(starts)} start (backend {', '.join(backends)}, model "
      f"{', '.join(sorted({e.get('model_path', '?') for e in starts}))}), "
      f"{sum(e.get('type') == 'utterance' for e in events)} utterances, "
      f"{sum(e.get('event') == 'stop' for e in events)} stop")
sys.exit(0 if starts and any(e.get("type") == "utterance" for e in events) else 1)
PY
        echo "Not exercised under qemu: apt-get, useradd, systemd (no init: Type=notify, the watchdog, the"
        echo "sandbox and its seccomp filter), pyaudio and a real microphone (ALSA), install.sh's own venv and pip"
        echo "steps (they start subprocesses, which run natively without binfmt_misc), a Pi 5's 16K-page kernel."
        if [ "$status" = 0 ]; then echo "service check: PASS"; else echo "service check: FAIL"; fi
    } | tee "$log"
    grep -q '^service check: PASS' "$log"
}

# --- main -----------------------------------------------------------------------------
choose_qemu
qemu_version="$("$qemu_bin" --version | sed -n -E '1s/.*version ([^ ]+).*/\1/p')"
echo "qemu: $qemu_bin ($qemu_version)"
[ -x "$host_python" ] || die "host Python not found: $host_python (set --python)"
[ -x "$litert_python" ] || die "host LiteRT Python not found: $litert_python (set --litert-python)"
build_wheels
for suite in $suites; do
    arm_root="$cache/$suite"
    bootstrap_root "$suite"
    install_packages "$suite" "$arm_root/usr/bin/python$(python_for "$suite")"
done
[ "$prepare_only" = 1 ] && { echo "prepared $cache ($suites)"; exit 0; }

[ -f "$model" ] || die "model not found: $model (train/convert it first, or pass --model)"

work="$(mktemp -d "${TMPDIR:-/tmp}/edge-ser-arm64-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "clips: choosing $clips into $work/clips"
"$host_python" "$here/arm64_check.py" make-clips --count "$clips" --dir "$work/clips"

overall=0
sections=()
for suite in $suites; do
    arm_root="$cache/$suite"
    arm_python="$arm_root/usr/bin/python$(python_for "$suite")"
    case "$suite" in
        bookworm) check_suite "$suite" "$arm_python" tflite-runtime "$host_python" || overall=1 ;;
        trixie) check_suite "$suite" "$arm_python" litert "$litert_python" || overall=1 ;;
    esac
    sections+=("$work/$suite/report.txt")
    if [ "$suite" = trixie ]; then
        service_check "$suite" "$arm_python" || overall=1
        sections+=("$work/service.txt")
    fi
done

mkdir -p "$(dirname "$out")"
{
    echo "edge-ser arm64 check (device/check-arm64.sh): the same clips classified end to end"
    echo "(decode -> features -> windows -> int8 model) natively on x86_64 and under qemu-user"
    echo "in a Debian arm64 root of each Raspberry Pi OS generation."
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "model: $model"
    echo "model sha256: $(sha256sum "$model" | cut -d' ' -f1)"
    echo "qemu: $(basename "$qemu_bin") $qemu_version, -cpu $cpu${also_cpus:+ (also: $also_cpus)}"
    echo "generations: $suites"
    if [ "$overall" = 0 ]; then echo "verdict: PASS"; else echo "verdict: FAIL"; fi
    for section in "${sections[@]}"; do
        echo
        cat "$section"
    done
} >"$out"
echo "report: $out"
exit "$overall"
