#!/usr/bin/env bash
# Install edge-ser as a systemd service on Raspberry Pi OS (64-bit) or Debian.
#
# Supported: Raspberry Pi OS / Debian Bookworm (Python 3.11: tflite-runtime 2.14 with
# numpy<2) and Trixie (Python 3.13: ai-edge-litert with numpy 2), on aarch64 (Pi 5, Pi 4,
# Pi 3, Zero 2 W with the 64-bit OS) and x86_64. 32-bit Raspberry Pi OS (armv7l/armv6l)
# is refused: no TFLite interpreter wheels exist for armv7 on current Pythons.
#
# Safe to run again: it upgrades the code and the model, keeps an existing
# /etc/edge-ser/edge-ser.toml (the new default goes beside it as edge-ser.toml.dist)
# and never touches the events already recorded.
#
# Usage: sudo device/install.sh [options]
#   --yes              do not ask for confirmation (needed when stdin is not a terminal)
#   --dry-run          print the plan, one line per step, and change nothing
#   --no-start         install and enable the service but do not (re)start it
#   --wheels DIR       offline: pip install --no-index --find-links DIR (a wheelhouse
#                      made on a machine of the same kind: see the README)
#   --root DIR         install into DIR instead of / (staging, tests): no apt, no user,
#                      no systemctl, no chown; --prefix DIR is the same
#   --model FILE       model to install (default: models/edge-ser-int8.tflite)
#   --requirements F   pinned dependencies to install (default: requirements-edge.txt)
#   --config FILE      configuration to install when none exists (default:
#                      device/edge-ser.toml)
#   --python PY        interpreter for the venv (default: /usr/bin/python3, Debian's)
#   --os-release FILE  read the OS identity from FILE instead of /etc/os-release
#   --arch ARCH        take ARCH as the machine type instead of `uname -m`
#   --uninstall        remove the service, venv, program files and user; keep the
#                      configuration and the events
#   --purge            --uninstall, and remove /etc/edge-ser and /var/lib/edge-ser too
#   -h, --help         this text
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

# --- options --------------------------------------------------------------------------
assume_yes=0
dry_run=0
start_service=1
wheels=""
root=""
model="$repo/models/edge-ser-int8.tflite"
requirements="$repo/requirements-edge.txt"
default_config="$here/edge-ser.toml"
# Debian's own interpreter (apt installs it): a python3 found first on root's PATH may be a
# pyenv/conda build under /root, which the edge-ser user cannot even execute.
python="${EDGE_SER_PYTHON:-/usr/bin/python3}"
os_release="${EDGE_SER_OS_RELEASE:-/etc/os-release}"
arch="${EDGE_SER_ARCH:-}"
action=install

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

warn() {
    echo "install.sh: warning: $*" >&2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --yes | -y) assume_yes=1; shift ;;
        --dry-run | -n) dry_run=1; shift ;;
        --no-start) start_service=0; shift ;;
        --wheels) wheels="${2:?--wheels needs a directory}"; shift 2 ;;
        --root | --prefix) root="${2:?$1 needs a directory}"; shift 2 ;;
        --model) model="${2:?--model needs a file}"; shift 2 ;;
        --requirements) requirements="${2:?--requirements needs a file}"; shift 2 ;;
        --config) default_config="${2:?--config needs a file}"; shift 2 ;;
        --python) python="${2:?--python needs an interpreter}"; shift 2 ;;
        --os-release) os_release="${2:?--os-release needs a file}"; shift 2 ;;
        --arch) arch="${2:?--arch needs a machine type}"; shift 2 ;;
        --uninstall) action=uninstall; shift ;;
        --purge) action=purge; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

if [ -n "$root" ]; then
    case "$root" in
        /*) ;;
        *) root="$(pwd)/$root" ;;
    esac
    root="${root%/}"
    [ -n "$root" ] || die "--root / is the real system: leave --root out instead"
fi
[ -f "$requirements" ] || die "--requirements: no such file: $requirements"
if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || die "--wheels: no such directory: $wheels"
    wheels="$(cd "$wheels" && pwd)"
fi

# --- where things go (the same paths as edge-ser.service) -----------------------------
SERVICE=edge-ser
SERVICE_USER=edge-ser
APP_DIR=/opt/edge-ser
VENV_DIR=$APP_DIR/venv
MODEL_DIR=$APP_DIR/models
CONF_DIR=/etc/edge-ser
CONF_FILE=$CONF_DIR/edge-ser.toml
STATE_DIR=/var/lib/edge-ser
UNIT_FILE=/etc/systemd/system/edge-ser.service
NETWORK_DROPIN=/etc/systemd/system/edge-ser.service.d/network.conf
MQTT_PACKAGE='paho-mqtt>=2,<3'
APT_PACKAGES=(python3 python3-venv python3-pip python3-dev gcc libc6-dev portaudio19-dev alsa-utils)

# $root + path: where a file really goes (the same as path without --root).
r() {
    printf '%s%s' "$root" "$1"
}

# --- plan/run helpers -----------------------------------------------------------------
step_no=0

# step "what": announce one step; in --dry-run this line is the whole plan entry.
step() {
    step_no=$((step_no + 1))
    if [ "$dry_run" = 1 ]; then
        printf 'plan %2d: %s\n' "$step_no" "$*"
    else
        printf '==> [%d] %s\n' "$step_no" "$*"
    fi
}

# run CMD...: execute unless --dry-run.
run() {
    if [ "$dry_run" = 0 ]; then
        "$@"
    fi
}

# --- checks ---------------------------------------------------------------------------
os_id=""
os_like=""
os_codename=""
os_version=""
os_pretty=""

read_os_release() {
    [ -r "$os_release" ] || die "cannot read $os_release: is this Raspberry Pi OS or Debian?"
    local key value
    while IFS='=' read -r key value; do
        value="${value#\"}"
        value="${value%\"}"
        case "$key" in
            ID) os_id="$value" ;;
            ID_LIKE) os_like="$value" ;;
            VERSION_CODENAME) os_codename="$value" ;;
            VERSION_ID) os_version="$value" ;;
            PRETTY_NAME) os_pretty="$value" ;;
        esac
    done <"$os_release"
}

check_os() {
    read_os_release
    case " $os_id $os_like " in
        *" debian "* | *" raspbian "*) ;;
        *) die "unsupported OS '${os_pretty:-$os_id}': this installer needs Raspberry Pi OS or Debian (apt, systemd)" ;;
    esac
    case "$os_codename" in
        bookworm | trixie) ;;
        "") warn "$os_release has no VERSION_CODENAME; continuing, but only Bookworm and Trixie are tested" ;;
        *) warn "'$os_codename' is not tested (supported: bookworm, trixie); continuing" ;;
    esac
}

check_arch() {
    [ -n "$arch" ] || arch="$(uname -m)"
    case "$arch" in
        aarch64 | arm64) arch=aarch64 ;;
        x86_64 | amd64) arch=x86_64 ;;
        armv7l | armv6l | armhf | armel | arm)
            die "32-bit ARM ($arch) is not supported: no TFLite interpreter (tflite-runtime or ai-edge-litert) is published for armv7/armv6 on current Pythons. Install Raspberry Pi OS (64-bit) on a Pi 3/4/5 or Zero 2 W; a Pi Zero/1 (armv6) cannot run it" ;;
        *) die "unsupported machine type '$arch' (supported: aarch64, x86_64)" ;;
    esac
}

python_version=""
backend_note=""

debian_python() {
    # The python3 each supported generation's apt installs (empty when unknown).
    case "$os_codename" in
        bookworm) echo 3.11 ;;
        trixie) echo 3.13 ;;
    esac
}

pinned() {
    # The version requirements-edge.txt pins for package $1 (empty when not pinned).
    sed -n -E "s/^[[:space:]]*$1[[:space:]]*==[[:space:]]*([^ ;]+).*/\1/p" "$requirements" | head -n 1
}

interpreter_for() {
    # What requirements-edge.txt's markers install on Python $1: tflite-runtime up to 3.11
    # (its last release has no newer wheels), LiteRT from 3.12.
    local v
    case "$1" in
        3.9 | 3.10 | 3.11) v="$(pinned tflite-runtime)"; echo "tflite-runtime ${v:-2.14} + numpy 1.26 (Python $1)" ;;
        3.1[2-9]) v="$(pinned ai-edge-litert)"; echo "ai-edge-litert${v:+ $v} (LiteRT) + numpy 2 (Python $1)" ;;
        *) return 1 ;;
    esac
}

check_python() {
    local expected
    expected="$(debian_python)"
    if ! command -v "$python" >/dev/null 2>&1; then
        if [ -z "$root" ] && [ "$dry_run" = 0 ]; then
            return # apt installs python3 first; checked again after that
        fi
        if [ -n "$expected" ]; then
            # Plan for the python3 this generation's apt will install.
            python_version="$expected (not installed yet: apt installs $os_codename's python3)"
            backend_note="$(interpreter_for "$expected")"
        else
            python_version="(not installed yet: apt installs python3)"
            backend_note="interpreter chosen by requirements-edge.txt for that Python"
        fi
        return
    fi
    python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    backend_note="$(interpreter_for "$python_version")" ||
        die "Python $python_version is too old (edge-ser needs 3.9 or newer)"
    if [ -n "$expected" ] && [ "$python_version" != "$expected" ]; then
        warn "$os_codename's python3 is $expected, but $python is Python $python_version: the venv is made from $python, so it gets $backend_note"
    fi
}

check_privileges() {
    if [ -z "$root" ] && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root (sudo $0 ...), or use --dry-run to see the plan"
    fi
}

confirm() {
    if [ "$assume_yes" = 1 ] || [ "$dry_run" = 1 ]; then
        return 0
    fi
    if [ ! -t 0 ]; then
        die "stdin is not a terminal: pass --yes to $action without asking"
    fi
    local answer
    read -r -p "Proceed with $action into ${root:-/}? [y/N] " answer
    case "$answer" in
        y | Y | yes | YES) ;;
        *) die "cancelled" ;;
    esac
}

# --- install steps --------------------------------------------------------------------
install_apt_packages() {
    if [ -n "$root" ]; then
        step "apt: skipped (--root $root): needs ${APT_PACKAGES[*]}"
        return
    fi
    step "apt: install ${APT_PACKAGES[*]}"
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        [ "$dry_run" = 1 ] || echo "    all present"
        return
    fi
    run env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

create_user() {
    if [ -n "$root" ]; then
        step "user: skipped (--root): would create system user $SERVICE_USER in group audio"
        return
    fi
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        step "user: $SERVICE_USER exists; make sure it is in group audio"
        run usermod -a -G audio "$SERVICE_USER"
    else
        step "user: create system user $SERVICE_USER (no login, home $STATE_DIR) in group audio"
        run useradd --system --user-group --groups audio --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "edge-ser daemon" "$SERVICE_USER"
    fi
}

pip_source_args=()

create_venv() {
    local venv
    venv="$(r "$VENV_DIR")"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        step "venv: reuse $venv"
    else
        step "venv: create $venv ($python -m venv)"
        run mkdir -p "$(dirname "$venv")"
        run "$python" -m venv --clear "$venv"
    fi
}

install_requirements() {
    local venv pip
    venv="$(r "$VENV_DIR")"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    if [ -n "$wheels" ]; then
        pip_source_args=(--no-index --find-links "$wheels")
        step "pip: install $(basename "$requirements") offline from $wheels: $backend_note"
    else
        pip_source_args=()
        step "pip: install $(basename "$requirements"): $backend_note"
    fi
    run "${pip[@]}" install -q "${pip_source_args[@]}" -r "$requirements"
}

install_package() {
    local venv pip wheel=""
    venv="$(r "$VENV_DIR")"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    if [ -n "$wheels" ]; then
        wheel="$(find "$wheels" -maxdepth 1 -name 'edge_ser-*.whl' | sort -V | tail -n 1)"
    fi
    # --no-deps: requirements-edge.txt pinned every dependency already; the package's own
    # loose "numpy>=1.23" must not pull a different numpy. --force-reinstall: a re-run
    # after `git pull` installs the new code even when the version did not change.
    if [ -n "$wheel" ]; then
        step "pip: install edge-ser from $(basename "$wheel")"
        run "${pip[@]}" install -q --no-index --no-deps --force-reinstall "$wheel"
    elif [ -n "$wheels" ]; then
        step "pip: build and install edge-ser from $repo (offline, setuptools and wheel from $wheels)"
        run "${pip[@]}" install -q "${pip_source_args[@]}" 'setuptools>=61' wheel
        install_from_stage "${pip[@]}" install -q "${pip_source_args[@]}" --no-build-isolation --no-deps \
            --force-reinstall
    else
        step "pip: build and install edge-ser from $repo"
        install_from_stage "${pip[@]}" install -q --no-deps --force-reinstall
    fi
}

install_from_stage() {
    # Run "$@ STAGE" on a copy of the sources, then remove the copy.
    [ "$dry_run" = 1 ] && return 0
    local stage status=0
    stage="$(staged_source)"
    "$@" "$stage" || status=$?
    rm -rf "$stage"
    return "$status"
}

staged_source() {
    # A copy of what the package is built from, so setuptools' build/ and *.egg-info
    # (root-owned under sudo) never land in the user's checkout.
    local stage
    stage="$(mktemp -d "${TMPDIR:-/tmp}/edge-ser-src.XXXXXX")"
    cp "$repo/pyproject.toml" "$stage/"
    if [ -f "$repo/README.md" ]; then
        cp "$repo/README.md" "$stage/"
    else
        echo "edge-ser" >"$stage/README.md"
    fi
    cp -r "$repo/edge_ser" "$stage/"
    find "$stage" -name __pycache__ -type d -prune -exec rm -rf {} +
    printf '%s' "$stage"
}

install_if_changed() {
    # install_if_changed LABEL SOURCE TARGET ACTION: copy SOURCE to TARGET (mode 0644, parent
    # folder created) unless TARGET already has the same bytes, so re-runs change nothing.
    local label="$1" source="$2" target="$3" action="$4"
    if [ -f "$target" ] && cmp -s "$source" "$target"; then
        step "$label: $target is up to date"
        return
    fi
    step "$label: $action"
    run install -d -m 0755 "$(dirname "$target")"
    run install -m 0644 "$source" "$target"
}

install_model() {
    local target
    # Always the file name the runtime looks for (edge_ser/paths.py), whatever the source is called.
    target="$(r "$MODEL_DIR")/edge-ser-int8.tflite"
    [ -f "$model" ] || die "model not found: $model (pass --model FILE)"
    install_if_changed model "$model" "$target" "copy $model -> $target"
}

EVENTS_FILE=$STATE_DIR/events.jsonl

render_config() {
    # The default config as the service uses it: events also appended to the state
    # directory (the shipped default writes no file). Only an empty `events = ""` is
    # filled in; a config that names its own events file is left as it is.
    sed -e "s|^events = \"\"|events = \"$EVENTS_FILE\"|" "$default_config"
}

install_config() {
    local target rendered
    target="$(r "$CONF_FILE")"
    [ -f "$default_config" ] || die "default configuration missing: $default_config"
    rendered="$(render_config)"
    if [ -f "$target" ]; then
        if [ "$(cat "$target")" = "$rendered" ]; then
            step "config: $target is the default already"
        else
            step "config: keep $target (yours); new default -> $target.dist"
            if [ "$dry_run" = 0 ]; then
                printf '%s\n' "$rendered" >"$target.dist"
                chmod 0644 "$target.dist"
            fi
        fi
        return
    fi
    step "config: install $target (default, events to $EVENTS_FILE; edit it to choose the microphone)"
    run install -d -m 0755 "$(r "$CONF_DIR")"
    if [ "$dry_run" = 0 ]; then
        printf '%s\n' "$rendered" >"$target"
        chmod 0644 "$target"
    fi
}

create_state_dir() {
    local dir
    dir="$(r "$STATE_DIR")"
    step "state: $dir (events file; owner $SERVICE_USER, mode 0750)"
    run install -d -m 0750 "$dir"
    if [ -z "$root" ]; then
        run chown "$SERVICE_USER:$SERVICE_USER" "$dir"
    fi
}

install_unit() {
    local target
    target="$(r "$UNIT_FILE")"
    install_if_changed unit "$here/edge-ser.service" "$target" "install $target"
}

config_table() {
    # Does the config in force (the installed one, else the one about to be installed)
    # have the TOML table [$1]?
    local conf
    conf="$(r "$CONF_FILE")"
    [ -f "$conf" ] || conf="$default_config"
    grep -q -E "^[[:space:]]*\\[$1\\][[:space:]]*(#.*)?\$" "$conf"
}

configure_network() {
    # The unit has no network (PrivateNetwork=yes). A network output needs one: [mqtt]
    # (and paho-mqtt) or [http] (the dashboard). Install the drop-in for them, or take it
    # away when the config has neither.
    local dropin venv outputs=""
    dropin="$(r "$NETWORK_DROPIN")"
    venv="$(r "$VENV_DIR")"
    config_table mqtt && outputs="[mqtt]"
    config_table http && outputs="${outputs:+$outputs and }[http]"
    if config_table mqtt; then
        step "mqtt: [mqtt] configured: pip install $MQTT_PACKAGE"
        run "$venv/bin/python" -m pip --disable-pip-version-check install -q "${pip_source_args[@]}" "$MQTT_PACKAGE"
    fi
    if [ -n "$outputs" ]; then
        step "network: $outputs configured: network drop-in $dropin"
        run install -d -m 0755 "$(dirname "$dropin")"
        run install -m 0644 "$here/edge-ser-network.conf" "$dropin"
    elif [ -f "$dropin" ]; then
        step "network: no network output configured: remove the drop-in $dropin"
        run rm -f "$dropin"
        run rmdir --ignore-fail-on-non-empty "$(dirname "$dropin")"
    fi
}

systemd_running() {
    [ -d /run/systemd/system ]
}

enable_service() {
    if [ -n "$root" ]; then
        if [ "$start_service" = 1 ]; then
            step "systemd: skipped (--root): would run daemon-reload, enable and start $SERVICE"
        else
            step "systemd: skipped (--root): would run daemon-reload, enable $SERVICE"
        fi
        return
    fi
    if ! systemd_running && [ "$dry_run" = 0 ]; then
        step "systemd: not running here; enable $SERVICE by hand on the device"
        return
    fi
    if [ "$start_service" = 1 ]; then
        step "systemd: daemon-reload, enable and (re)start $SERVICE"
        run systemctl daemon-reload
        run systemctl enable "$SERVICE"
        run systemctl restart "$SERVICE"
    else
        step "systemd: daemon-reload, enable $SERVICE (not started: --no-start)"
        run systemctl daemon-reload
        run systemctl enable "$SERVICE"
    fi
}

events_file() {
    # The events file the installed config names ([output] events = "..."), if any.
    local conf="$1" line
    [ -f "$conf" ] || return 0
    line="$(grep -E '^[[:space:]]*events[[:space:]]*=' "$conf" | head -n 1 || true)"
    line="${line#*=}"
    line="${line//\"/}"
    line="${line//\'/}"
    printf '%s' "${line// /}"
}

print_next_steps() {
    local events
    events="$(events_file "$(r "$CONF_FILE")")"
    [ -n "$events" ] || events="(no events file: set [output] events in $CONF_FILE)"
    cat <<EOF

edge-ser is installed${root:+ into $root}.
  Pick the microphone:  sudo -u $SERVICE_USER $VENV_DIR/bin/edge-ser devices
                        then set it in $CONF_FILE and: sudo systemctl restart $SERVICE
  Follow the events:    journalctl -u $SERVICE -f
                        sudo tail -f $events
  Service state:        systemctl status $SERVICE
  Remove:               sudo $0 --uninstall   (keeps config and events; --purge removes them)
EOF
}

do_install() {
    step "check: OS ${os_pretty:-$os_id} [${os_codename:-no codename}, version ${os_version:-?}], $arch, Python ${python_version:-3 (after apt)}"
    install_apt_packages
    if [ -z "$python_version" ] && [ "$dry_run" = 0 ]; then
        check_python
    fi
    create_user
    create_venv
    install_requirements
    install_package
    install_model
    install_config
    create_state_dir
    install_unit
    configure_network
    enable_service
    if [ "$dry_run" = 1 ]; then
        echo "dry run: nothing was changed"
    else
        print_next_steps
    fi
}

# --- uninstall ------------------------------------------------------------------------
do_uninstall() {
    local purge=0
    [ "$action" = purge ] && purge=1
    if [ -z "$root" ] && { systemd_running || [ "$dry_run" = 1 ]; }; then
        step "systemd: stop and disable $SERVICE"
        run systemctl disable --now "$SERVICE" 2>/dev/null || true
    fi
    step "unit: remove $(r "$UNIT_FILE") and its network drop-in"
    run rm -f "$(r "$UNIT_FILE")" "$(r "$NETWORK_DROPIN")"
    if [ -d "$(r "$(dirname "$NETWORK_DROPIN")")" ]; then
        run rmdir --ignore-fail-on-non-empty "$(r "$(dirname "$NETWORK_DROPIN")")"
    fi
    if [ -z "$root" ] && { systemd_running || [ "$dry_run" = 1 ]; }; then
        step "systemd: daemon-reload"
        run systemctl daemon-reload
    fi
    step "files: remove $(r "$APP_DIR") (venv and model)"
    run rm -rf "$(r "$APP_DIR")"
    if [ -z "$root" ] && id "$SERVICE_USER" >/dev/null 2>&1; then
        step "user: remove $SERVICE_USER"
        run userdel "$SERVICE_USER"
    fi
    if [ "$purge" = 1 ]; then
        step "purge: remove $(r "$CONF_DIR") and $(r "$STATE_DIR") (configuration and events)"
        run rm -rf "$(r "$CONF_DIR")" "$(r "$STATE_DIR")"
    else
        step "keep: $(r "$CONF_DIR") and $(r "$STATE_DIR") (use --purge to remove them)"
    fi
    [ "$dry_run" = 1 ] && echo "dry run: nothing was changed"
    return 0
}

# --- main -----------------------------------------------------------------------------
check_privileges
if [ "$action" = install ]; then
    check_os
    check_arch
    check_python
fi
confirm
if [ "$action" = install ]; then
    do_install
else
    do_uninstall
fi
