"""The Raspberry Pi deployment: installer, systemd unit, arm64 check script.

The installer is run for real: ``--dry-run`` for the plan on a (faked) Bookworm/Trixie
aarch64 and the refusals, and ``--root DIR`` to install into a scratch root offline
(``--wheels``), again to prove it is idempotent and keeps a user's configuration, and
``--uninstall``/``--purge`` to prove what they keep. apt, useradd and systemctl are the
only steps ``--root`` skips. The unit is checked with ``systemd-analyze`` when it runs
here.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEVICE = ROOT / "device"
INSTALL = DEVICE / "install.sh"
UNIT = DEVICE / "edge-ser.service"
CONFIG = DEVICE / "edge-ser.toml"

BOOKWORM = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
TRIXIE_PI = """PRETTY_NAME="Raspbian GNU/Linux 13 (trixie)"
NAME="Raspbian GNU/Linux"
VERSION_ID="13"
VERSION_CODENAME=trixie
ID=raspbian
ID_LIKE=debian
"""
FEDORA = """NAME="Fedora Linux"
ID=fedora
VERSION_ID=40
"""


def run_install(*args: str, env: Dict[str, str] = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("EDGE_SER_OS_RELEASE", None)
    full_env.pop("EDGE_SER_ARCH", None)
    full_env.update(env or {})
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)


@pytest.fixture
def os_release(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / f"os-release-{abs(hash(text))}"
        path.write_text(text)
        return path
    return write


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    """Bytes standing in for the model: the installer copies files, it does not read them."""
    path = tmp_path / "some-model.tflite"
    path.write_bytes(b"TFL3" + bytes(range(256)) * 8)
    return path


def fake_python(tmp_path: Path, version: str) -> Path:
    """An interpreter that only answers the installer's version question."""
    path = tmp_path / f"python{version}"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def plan_lines(output: str) -> List[str]:
    return [line for line in output.splitlines() if line.startswith("plan ")]


# ---------------------------------------------------------------------------------------
# Static checks


@pytest.mark.parametrize("script", ["install.sh", "check-arm64.sh"])
def test_shellcheck_clean(script: str) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed; make test installs it")
    proc = subprocess.run(["shellcheck", "-x", str(DEVICE / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_strict_and_executable() -> None:
    for script in ("install.sh", "check-arm64.sh"):
        path = DEVICE / script
        assert "set -euo pipefail" in path.read_text()
        assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


def unit_sections() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keep key case
    # systemd allows repeated keys (SystemCallFilter twice): keep the last for lookups.
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_is_a_watched_notify_service() -> None:
    service = unit_sections()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["User"] == "edge-ser"
    assert "audio" in service["SupplementaryGroups"].split()
    assert service["ExecStart"] == "/opt/edge-ser/venv/bin/edge-ser listen --config /etc/edge-ser/edge-ser.toml"
    assert service["StateDirectory"] == "edge-ser"


def test_unit_hardening() -> None:
    service = unit_sections()["Service"]
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "DevicePolicy": "closed", "DeviceAllow": "char-alsa rw", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
        "ProtectClock": "yes", "ProtectHostname": "yes", "ProtectProc": "invisible",
        "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "", "UMask": "0077", "RestrictAddressFamilies": "AF_UNIX",
    }
    for key, value in expected.items():
        assert key in service, f"{key} missing"
        assert service[key] == value, f"{key}={service[key]!r}, expected {value!r}"
    assert "@system-service" in UNIT.read_text()
    assert "MemoryMax" in service and "CPUQuota" in service
    # PrivateDevices would hide /dev/snd: the microphone would vanish.
    assert "PrivateDevices" not in service


def _unit_with_existing_binary(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at /bin/true, so verify checks everything else."""
    text = UNIT.read_text().replace("ExecStart=/opt/edge-ser/venv/bin/edge-ser", "ExecStart=/bin/true")
    path = tmp_path / "edge-ser.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    proc = subprocess.run(["systemd-analyze", "verify", str(_unit_with_existing_binary(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "edge-ser.service" not in proc.stderr, proc.stderr  # no warnings about our unit


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("this systemd-analyze has no offline security mode")
    match = re.search(r"Overall exposure level for edge-ser\.service: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout[-2000:] + proc.stderr
    assert float(match.group(1)) <= 2.5, proc.stdout[-400:]


# ---------------------------------------------------------------------------------------
# Plans and refusals


def test_dry_run_plan_on_bookworm_aarch64(os_release, fake_model: Path, tmp_path: Path) -> None:
    proc = run_install("--dry-run", "--os-release", str(os_release(BOOKWORM)), "--arch", "aarch64",
                       "--model", str(fake_model), "--python", str(fake_python(tmp_path, "3.11")))
    assert proc.returncode == 0, proc.stderr
    plan = plan_lines(proc.stdout)
    text = "\n".join(plan)
    assert plan[0].startswith("plan  1: check:") and "bookworm" in plan[0] and "aarch64" in plan[0]
    for expected in ("apt: install", "portaudio19-dev", "python3-venv", "user: create system user edge-ser",
                     "group audio", "venv: create /opt/edge-ser/venv", "tflite-runtime 2.14",
                     "pip: build and install edge-ser", "model: copy", "/opt/edge-ser/models/edge-ser-int8.tflite",
                     "config: install /etc/edge-ser/edge-ser.toml", "events to /var/lib/edge-ser/events.jsonl",
                     "state: /var/lib/edge-ser",
                     "unit: install /etc/systemd/system/edge-ser.service",
                     "systemd: daemon-reload, enable and (re)start edge-ser"):
        assert expected in text, f"{expected!r} not in plan:\n{text}"
    # One line per step, numbered in order, and nothing changed.
    numbers = [int(re.match(r"plan +(\d+):", line).group(1)) for line in plan]
    assert numbers == list(range(1, len(plan) + 1))
    assert "nothing was changed" in proc.stdout


def test_dry_run_on_trixie_picks_litert(os_release, fake_model: Path, tmp_path: Path) -> None:
    proc = run_install("--dry-run", "--os-release", str(os_release(TRIXIE_PI)), "--arch", "aarch64",
                       "--model", str(fake_model), "--python", str(fake_python(tmp_path, "3.13")),
                       "--no-start", "--wheels", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = "\n".join(plan_lines(proc.stdout))
    assert "trixie" in text and "ai-edge-litert" in text and "Python 3.13" in text
    assert "offline from" in text
    assert "not started: --no-start" in text


@pytest.mark.parametrize("release, python, interpreter", [
    (TRIXIE_PI, "3.13", "ai-edge-litert 2.3.0 (LiteRT) + numpy 2 (Python 3.13)"),
    (BOOKWORM, "3.11", "tflite-runtime 2.14.0 + numpy 1.26 (Python 3.11)"),
])
def test_dry_run_before_python3_is_installed_plans_the_generations_python(
        release: str, python: str, interpreter: str, os_release, fake_model: Path, tmp_path: Path) -> None:
    """A fresh Pi OS Lite may lack python3 until the apt step: the plan must still name the
    venv's Python and interpreter, from the generation (Trixie: 3.13 and LiteRT)."""
    proc = run_install("--dry-run", "--os-release", str(os_release(release)), "--arch", "aarch64",
                       "--model", str(fake_model), "--python", str(tmp_path / "no-such-python3"))
    assert proc.returncode == 0, proc.stderr
    plan = plan_lines(proc.stdout)
    assert f"Python {python} (not installed yet: apt installs" in plan[0]
    venv = [line for line in plan if "venv: create /opt/edge-ser/venv" in line]
    assert len(venv) == 1
    pip = [line for line in plan if line.split(": ", 1)[1].startswith("pip: install requirements-edge.txt")]
    assert len(pip) == 1 and pip[0].endswith(interpreter), plan


def test_dry_run_warns_when_python_is_not_the_generations(os_release, fake_model: Path, tmp_path: Path) -> None:
    """Trixie with a Python 3.11 (someone else's build): the plan follows the interpreter that
    really makes the venv (tflite-runtime), and says it is not Trixie's own."""
    proc = run_install("--dry-run", "--os-release", str(os_release(TRIXIE_PI)), "--arch", "aarch64",
                       "--model", str(fake_model), "--python", str(fake_python(tmp_path, "3.11")))
    assert proc.returncode == 0, proc.stderr
    assert "tflite-runtime 2.14.0" in proc.stdout
    assert "trixie's python3 is 3.13" in proc.stderr and "Python 3.11" in proc.stderr


@pytest.mark.parametrize("arch", ["armv7l", "armv6l"])
def test_refuses_32_bit_arm(arch: str, os_release, fake_model: Path) -> None:
    proc = run_install("--dry-run", "--os-release", str(os_release(BOOKWORM)), "--arch", arch,
                       "--model", str(fake_model))
    assert proc.returncode != 0
    assert "32-bit ARM" in proc.stderr and "64-bit" in proc.stderr
    assert "plan " not in proc.stdout


def test_refuses_non_debian(os_release, fake_model: Path) -> None:
    proc = run_install("--dry-run", "--os-release", str(os_release(FEDORA)), "--arch", "x86_64",
                       "--model", str(fake_model))
    assert proc.returncode != 0
    assert "unsupported OS" in proc.stderr


def test_needs_root_without_root_or_dry_run(os_release, fake_model: Path) -> None:
    if os.geteuid() == 0:
        # As root, prove the check by asking a non-root shell.
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv is missing")
        # The checkout and pytest's tmp_path may be private to root (a clone under `mktemp -d`),
        # so the unprivileged shell gets its own world-readable copies.
        with tempfile.TemporaryDirectory(dir="/tmp") as shared:
            os.chmod(shared, 0o755)
            repo = INSTALL.parent.parent
            shutil.copytree(INSTALL.parent, Path(shared) / "device")
            shutil.copytree(repo / "models", Path(shared) / "models")
            for requirements in repo.glob("requirements-*.txt"):
                shutil.copy(requirements, shared)
            release = Path(shared) / "os-release"
            shutil.copy(os_release(BOOKWORM), release)
            for path in Path(shared).rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            script = Path(shared) / "device" / INSTALL.name
            proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash",
                                   str(script), "--yes", "--os-release", str(release)],
                                  capture_output=True, text=True, timeout=60)
    else:
        proc = run_install("--yes", "--os-release", str(os_release(BOOKWORM)))
    assert proc.returncode != 0
    assert "run as root" in proc.stderr


def test_unknown_option_and_help() -> None:
    proc = run_install("--frobnicate")
    assert proc.returncode != 0 and "unknown option" in proc.stderr
    proc = run_install("--help")
    assert proc.returncode == 0 and "--uninstall" in proc.stdout and "--wheels" in proc.stdout


# ---------------------------------------------------------------------------------------
# A real install into a scratch root, offline


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheelhouse holding the edge-ser wheel, built offline from a copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("edge-ser\n")
    shutil.copytree(ROOT / "edge_ser", src / "edge_ser", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert list(out.glob("edge_ser-*.whl")), list(out.iterdir())
    return out


def _system_python() -> str:
    """A Python with the venv module for the installer's venv (the system one on a Pi)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and subprocess.run([candidate, "-c", "import venv, ensurepip"],
                                        capture_output=True).returncode == 0:
            return candidate
    pytest.skip("no python3 with venv/ensurepip for the installer")


def test_install_into_root_offline_idempotent_and_keeps_config(
        tmp_path: Path, os_release, fake_model: Path, wheelhouse: Path) -> None:
    assert CONFIG.is_file(), "device/edge-ser.toml (the default configuration) is missing"
    root = tmp_path / "root"
    requirements = tmp_path / "requirements-none.txt"
    requirements.write_text("# the dependencies are not installed in this test (no network)\n")
    args = ["--root", str(root), "--yes", "--no-start", "--wheels", str(wheelhouse),
            "--os-release", str(os_release(BOOKWORM)), "--arch", "aarch64", "--model", str(fake_model),
            "--python", _system_python(), "--requirements", str(requirements)]
    first = run_install(*args)
    assert first.returncode == 0, first.stdout + first.stderr

    unit = root / "etc/systemd/system/edge-ser.service"
    config = root / "etc/edge-ser/edge-ser.toml"
    model = root / "opt/edge-ser/models/edge-ser-int8.tflite"
    state = root / "var/lib/edge-ser"
    venv_python = root / "opt/edge-ser/venv/bin/python"
    assert unit.read_bytes() == UNIT.read_bytes()
    # The shipped default, with the events file pointed into the state directory.
    expected_config = CONFIG.read_text().replace('\nevents = ""\n', '\nevents = "/var/lib/edge-ser/events.jsonl"\n', 1)
    assert expected_config != CONFIG.read_text(), "the default config no longer has an empty events line"
    assert config.read_text() == expected_config
    assert model.read_bytes() == fake_model.read_bytes()
    assert state.is_dir() and stat.S_IMODE(state.stat().st_mode) == 0o750
    assert (root / "opt/edge-ser/venv/bin/edge-ser").is_file()
    # The package really is in the venv (its dependencies are not: no network here).
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(venv_python), "-c", "import edge_ser, sys; print(edge_ser.__file__)"],
                          capture_output=True, text=True, cwd=tmp_path, env=clean_env)
    assert proc.returncode == 0 and str(root) in proc.stdout, proc.stderr
    assert "journalctl -u edge-ser -f" in first.stdout and "edge-ser devices" in first.stdout
    assert "tail -f /var/lib/edge-ser/events.jsonl" in first.stdout
    assert "systemd: skipped (--root)" in first.stdout and "apt: skipped" in first.stdout

    # Again, unchanged: nothing is replaced needlessly.
    stamps = {p: p.stat().st_mtime_ns for p in (unit, config, model)}
    second = run_install(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "venv: reuse" in second.stdout
    assert "is up to date" in second.stdout and "is the default already" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # The user edits the config and a new model arrives: the config stays, the model is replaced.
    config.write_text(config.read_text() + "\n# chosen by the user\n")
    fake_model.write_bytes(fake_model.read_bytes() + b"v2")
    third = run_install(*args)
    assert third.returncode == 0, third.stdout + third.stderr
    assert config.read_text().endswith("# chosen by the user\n")
    assert (config.parent / "edge-ser.toml.dist").read_text() == expected_config
    assert model.read_bytes() == fake_model.read_bytes()
    assert "keep " in third.stdout

    # Uninstall keeps the configuration and events; purge removes them.
    (state / "events.jsonl").write_text('{"label": "calm"}\n')
    proc = run_install("--uninstall", "--root", str(root), "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not unit.exists() and not (root / "opt/edge-ser").exists()
    assert config.is_file() and (state / "events.jsonl").is_file()
    proc = run_install("--purge", "--root", str(root), "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not config.exists() and not state.exists()


def test_install_needs_the_model(tmp_path: Path, os_release) -> None:
    proc = run_install("--dry-run", "--os-release", str(os_release(BOOKWORM)), "--arch", "aarch64",
                       "--model", str(tmp_path / "missing.tflite"))
    assert proc.returncode != 0 and "model not found" in proc.stderr


def test_check_arm64_rejects_bad_arguments() -> None:
    """The arm64 check itself takes minutes (run by hand); its argument handling is cheap."""
    script = DEVICE / "check-arm64.sh"
    proc = subprocess.run(["bash", str(script), "--clips", "many"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "--clips must be a positive integer" in proc.stderr
    proc = subprocess.run(["bash", str(script), "--root", str(ROOT / "arm64")], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0 and "outside the repository" in proc.stderr
    proc = subprocess.run(["bash", str(script), "--cache", str(ROOT / "arm64")], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0 and "outside the repository" in proc.stderr
    proc = subprocess.run(["bash", str(script), "--suite", "buster"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "--suite must be both, bookworm or trixie" in proc.stderr
    proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for expected in ("qemu 10", "bookworm", "trixie", "tflite-runtime", "LiteRT"):
        assert expected in proc.stdout, expected


def test_check_arm64_refuses_qemu_7(tmp_path: Path) -> None:
    """qemu 7.2 makes LiteRT crash and XNNPACK compute wrong outputs: refused, saying why."""
    fake = tmp_path / "qemu-aarch64"
    fake.write_text("#!/bin/sh\necho 'qemu-aarch64 version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)'\n")
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(DEVICE / "check-arm64.sh"), "--qemu", str(fake), "--cache", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "qemu 7.x" in proc.stderr and "needs qemu 10 or newer" in proc.stderr and "LiteRT" in proc.stderr
    assert not (tmp_path / "bookworm").exists()  # refused before any download


def _litert_python() -> Path:
    python = ROOT / ".venv-litert" / "bin" / "python"
    if not python.exists():
        pytest.skip("no .venv-litert (LiteRT on numpy 2); make test installs it")
    return python


def test_arm64_compare_rule_follows_the_interpreter(tmp_path: Path) -> None:
    """The verdict holds aarch64 against x86_64 BUILTIN_REF for tflite-runtime but against
    x86_64 default for LiteRT. Real runs of the shipped model on this machine's LiteRT stand in
    for both machines: an "aarch64" run equal to x86_64 default (what LiteRT gives under qemu)
    passes as LiteRT and fails when it claims to be tflite-runtime, since LiteRT's default and
    reference kernels differ on this model."""
    python = _litert_python()
    script = DEVICE / "arm64_check.py"
    env = dict(os.environ, EDGE_SER_BACKEND="litert", PYTHONPATH=str(ROOT))
    clips = tmp_path / "clips"
    subprocess.run([str(python), str(script), "make-clips", "--count", "8", "--dir", str(clips)],
                   check=True, capture_output=True, env=env, timeout=300)
    runs = {}
    for kernels in ("default", "reference"):
        runs[kernels] = tmp_path / f"x86-{kernels}.json"
        subprocess.run([str(python), str(script), "classify", "--model", str(ROOT / "models" / "edge-ser-int8.tflite"),
                        "--clips", str(clips), "--json", str(runs[kernels]), "--kernels", kernels],
                       check=True, capture_output=True, env=env, timeout=300)
    default = json.loads(runs["default"].read_text())
    reference = json.loads(runs["reference"].read_text())
    assert [r["probabilities"] for r in default["results"]] != [r["probabilities"] for r in reference["results"]]
    assert default["kernel_outputs"].keys() == {"AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "BUILTIN_REF"}

    def verdict(backend: str) -> subprocess.CompletedProcess:
        arm = tmp_path / f"arm-{backend}.json"
        arm.write_text(json.dumps(dict(default, backend=backend)))
        return subprocess.run([str(python), str(script), "compare", "--x86-default", str(runs["default"]),
                               "--x86-reference", str(runs["reference"]), "--aarch64", str(arm),
                               "--suite", "trixie", "--report", str(tmp_path / f"report-{backend}.txt")],
                              capture_output=True, text=True, env=env, timeout=120)

    litert = verdict("litert")
    assert litert.returncode == 0, litert.stdout + litert.stderr
    assert "PASS (trixie): 8/8 clips" in litert.stdout and "against x86_64\nwith its default kernels" in litert.stdout
    assert "AUTO                               bit-identical" in litert.stdout
    tflite = verdict("tflite-runtime")
    assert tflite.returncode == 1
    assert "FAIL (trixie)" in tflite.stdout and "reference kernels (BUILTIN_REF)" in tflite.stdout


@pytest.mark.parametrize("table", ["mqtt", "http"])
def test_network_output_gets_network_drop_in(table: str, tmp_path: Path, os_release, fake_model: Path) -> None:
    """The unit has no network; an [mqtt] or [http] table in the config must bring the drop-in."""
    config = tmp_path / f"{table}.toml"
    config.write_text(f'[{table}]\nhost = "broker.local"\n' if table == "mqtt" else '[http]\nlisten = "0.0.0.0:8080"\n')
    proc = run_install("--dry-run", "--os-release", str(os_release(BOOKWORM)), "--arch", "aarch64",
                       "--model", str(fake_model), "--config", str(config),
                       "--python", str(fake_python(tmp_path, "3.11")))
    assert proc.returncode == 0, proc.stderr
    text = "\n".join(plan_lines(proc.stdout))
    assert (table == "mqtt") == ("mqtt: [mqtt] configured: pip install paho-mqtt" in text)
    assert f"network: [{table}] configured: network drop-in /etc/systemd/system/edge-ser.service.d/network.conf" in text
    dropin = configparser.ConfigParser(strict=False, interpolation=None)
    dropin.optionxform = str
    dropin.read_string((DEVICE / "edge-ser-network.conf").read_text())
    assert dropin["Service"]["PrivateNetwork"] == "no"
    assert "AF_INET" in dropin["Service"]["RestrictAddressFamilies"]


def test_default_config_gets_no_network(tmp_path: Path, os_release, fake_model: Path) -> None:
    """The shipped default has no network output, so the sandbox keeps PrivateNetwork=yes."""
    proc = run_install("--dry-run", "--os-release", str(os_release(BOOKWORM)), "--arch", "aarch64",
                       "--model", str(fake_model), "--python", str(fake_python(tmp_path, "3.11")))
    assert proc.returncode == 0, proc.stderr
    assert "network:" not in proc.stdout and "mqtt:" not in proc.stdout


def test_default_interpreter_is_debians(tmp_path: Path, os_release, fake_model: Path) -> None:
    """Not whatever python3 is first on root's PATH (a pyenv build under /root, say):
    the service user could not execute a venv made from it."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 here")
    env = {"PATH": f"{tmp_path}:{os.environ.get('PATH', '')}"}
    fake_python(tmp_path, "3.11").rename(tmp_path / "python3")  # a decoy first on PATH
    proc = run_install("--dry-run", "--os-release", str(os_release(BOOKWORM)), "--arch", "aarch64",
                       "--model", str(fake_model), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "venv: create /opt/edge-ser/venv (/usr/bin/python3 -m venv)" in proc.stdout
