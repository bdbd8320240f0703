"""Load on loopback: 50 stream clients and 20 ``/api/status`` requests a second for a minute.

While the daemon's part (this test's emitter thread) publishes 20 utterance events and
5 level events a second, every well-behaved stream client must receive every event id,
in order, and nobody may be dropped; every status request must succeed; and the memory
of the process (server, clients, emitter) must stay flat once the bounded history is
full. The history is set to 200 events so it wraps several times during the run. Asserts behaviour, never speed.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List

import pytest

from edge_ser.outputs.http import DashboardServer
from edge_ser.outputs.http_config import HttpConfig
from tests.test_http import SseReader, request, utterance, wait_until

CLIENTS = 50
DURATION_S = 60.0
STATUS_PER_S = 20
EVENTS_PER_S = 20
LEVELS_PER_S = 5
RSS_GROWTH_LIMIT_KB = 32 * 1024  # generous: Python's allocator keeps arenas; a leak of 500 events x 50 clients would exceed it


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.slow
def test_fifty_stream_clients_and_status_polling() -> None:
    server = DashboardServer(HttpConfig(listen="127.0.0.1:0", history_size=200, max_stream_clients=64,
                                       max_connections=128)).start()
    readers = [SseReader(server) for _ in range(CLIENTS)]
    assert all(r.status == 200 for r in readers)
    wait_until(lambda: server.hub.client_count == CLIENTS, f"{CLIENTS} stream clients")
    received: List[List[int]] = [[] for _ in readers]
    levels = [0] * CLIENTS
    stop_reading = threading.Event()

    def read(index: int) -> None:
        reader = readers[index]
        while True:
            frame = reader.next()
            if frame is None:
                return
            if frame["event"] == "level":
                levels[index] += 1
            elif frame["data"].get("final"):
                return
            else:
                received[index].append(int(frame["id"]))

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()

    statuses: Dict[int, int] = {}
    stop = threading.Event()

    def poll_status() -> None:
        period = 1.0 / STATUS_PER_S
        next_at = time.monotonic()
        while not stop.is_set():
            status, _, body = request(server, "GET", "/api/status")
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                json.loads(body)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    poller = threading.Thread(target=poll_status, daemon=True)
    poller.start()

    emitted = 0
    levels_emitted = 0
    start = time.monotonic()
    rss_warm = None
    tick = 1.0 / (EVENTS_PER_S + LEVELS_PER_S)
    step = 0
    while time.monotonic() - start < DURATION_S:
        step += 1
        if step % (EVENTS_PER_S + LEVELS_PER_S) < LEVELS_PER_S:
            server.emit({"type": "level", "level_db": -40.0, "speech": False, "stream_time": step * tick})
            levels_emitted += 1
        else:
            emitted += 1
            server.emit(utterance(emitted, latency_ms=600.0 + emitted % 300))
        if rss_warm is None and time.monotonic() - start >= DURATION_S / 3:
            rss_warm = rss_kb()  # history full (200 events) and every thread running
        time.sleep(tick)
    stop.set()
    poller.join(30)
    server.emit(utterance(emitted + 1, final=True))
    for thread in threads:
        thread.join(60)
    rss_end = rss_kb()

    expected = list(range(1, emitted + 1))
    for index, ids in enumerate(received):
        assert ids == expected, f"client {index}: got {len(ids)} of {emitted} events (first gap near " \
                                f"{next((a for a, b in zip(ids, expected) if a != b), None)})"
    assert all(n > 0 for n in levels)
    assert server.hub.dropped_clients == 0
    assert set(statuses) == {200} and statuses[200] >= STATUS_PER_S * DURATION_S / 4
    assert len(server.hub) == 200  # the history stayed bounded
    assert rss_warm is not None and rss_end - rss_warm < RSS_GROWTH_LIMIT_KB, (rss_warm, rss_end)
    print(f"\nload: {CLIENTS} stream clients x {emitted} events + {levels_emitted} level events in "
          f"{DURATION_S:.0f} s, {statuses[200]} status requests; RSS {rss_warm} kB after warm-up, "
          f"{rss_end} kB at the end ({rss_end - rss_warm:+d} kB)")
    for reader in readers:
        reader.close()
    server.close()
