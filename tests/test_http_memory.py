"""Memory of the dashboard server under uploads, measured in a server subprocess (issue 11).

The criterion is the server process's peak RSS (``VmHWM``, reset through
``/proc/PID/clear_refs`` once the server is warm) relative to its RSS at rest: a relative
bound, never a time. Two rows of the issue's table:

* a 5-minute upload (9.6 MB, under the 10 MiB limit) must cost what a 3 s clip costs plus
  the body itself (held once, as it arrived) plus ~20 MB, like the CLI's bound;
* 20 clients each starting a 10 MiB upload and stalling may hold at most ``upload_slots``
  bodies (the others get 503 before their body is read).
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import wave
from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import pytest

from tests.test_http import wait_until

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

# The server as the daemon starts it (create_dashboard: its own upload classifier of the
# shipped model, loaded on the first upload), on an ephemeral loopback port.
SERVER = r"""
import sys, time
from edge_ser.outputs.http import create_dashboard
from edge_ser.outputs.http_config import HttpConfig
server = create_dashboard(HttpConfig(listen="127.0.0.1:0"), labels=[])
print(server.address[1], flush=True)
sys.stdin.read()
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


@pytest.fixture
def server_process() -> Iterator[Tuple[subprocess.Popen, int]]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc, int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(30)


def proc_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def reset_peak(pid: int) -> int:
    """Reset the peak (VmHWM) to the current RSS; returns that RSS in KiB."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    return proc_kb(pid, "VmRSS")


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    noise = np.random.default_rng(7).normal(0.0, 3000.0, int(seconds * rate))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(noise, -32768, 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def post(port: int, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(b"POST /api/classify?windows=0 HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200"), reply[:300]
    return reply


def test_five_minute_upload_costs_what_a_short_clip_costs_plus_its_body(
        server_process: Tuple[subprocess.Popen, int]) -> None:
    proc, port = server_process
    short, long = wav_bytes(3.0), wav_bytes(300.0)
    assert len(long) < 10 * MIB
    post(port, short)  # loads the model and warms the allocator
    post(port, short)
    idle = reset_peak(proc.pid)
    post(port, short)
    short_peak = proc_kb(proc.pid, "VmHWM") - idle
    idle = reset_peak(proc.pid)
    post(port, long)
    long_peak = proc_kb(proc.pid, "VmHWM") - idle
    bound_kb = len(long) // 1024 + 20 * 1024
    assert long_peak - short_peak <= bound_kb, (
        f"a 5-minute upload peaked {long_peak} KiB above rest, a 3 s clip {short_peak} KiB: "
        f"more than the body ({len(long) // 1024} KiB) + 20 MiB")


def _server_sockets_with_unread_input(port: int) -> int:
    """Established server-side sockets on ``port`` whose received bytes the server has not read yet."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            rx_queue = int(fields[4].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and rx_queue > 0:
                count += 1
    return count


def test_twenty_stalled_ten_mib_uploads_hold_at_most_the_slots(server_process: Tuple[subprocess.Popen, int]) -> None:
    proc, port = server_process
    slots = 3  # HttpConfig defaults: classify_workers 1 + classify_queue 2
    length = 10 * MIB
    idle = reset_peak(proc.pid)
    head = b"POST /api/classify HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % length
    body = b"\x01" * (length - 1)  # all but the last byte: then the client stalls
    sockets: List[socket.socket] = []
    done: List[threading.Thread] = []

    def upload() -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        sockets.append(sock)
        try:
            sock.sendall(head + body)
        except OSError:
            pass  # refused (503) and closed by the server: it stopped reading

    for _ in range(20):
        thread = threading.Thread(target=upload)
        thread.start()
        done.append(thread)
    try:
        for thread in done:
            thread.join(300)
        # every byte the clients sent is in the server's hands (read, or dropped with its connection)
        wait_until(lambda: _server_sockets_with_unread_input(port) == 0, "the server to read what was sent", 120)
        peak = proc_kb(proc.pid, "VmHWM") - idle
    finally:
        for sock in sockets:
            sock.close()
    assert peak <= (slots + 2) * length // 1024, (
        f"20 stalled 10 MiB uploads took the server {peak} KiB above rest; {slots} slots allow ~{slots * 10} MiB")
