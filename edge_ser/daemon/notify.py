"""systemd notifications (``sd_notify``) with the standard library only.

With ``Type=notify`` systemd waits for ``READY=1`` before it considers the service
started, and with ``WatchdogSec=`` it restarts the service when ``WATCHDOG=1`` stops
arriving. Pinging from the worker loop (not a timer thread) means a hung worker is
noticed. ``$NOTIFY_SOCKET`` may name an abstract socket (leading ``@``).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; does nothing when it is not set."""

    def __init__(self, environ: Optional[dict] = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = address or None
        self._sock: Optional[socket.socket] = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: Optional[float] = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2.0  # ping at half the timeout
        self._last_ping = 0.0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), target)
            return True
        except OSError:
            self.errors += 1  # systemd gone or socket misconfigured: never fatal
            return False

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self, now: Optional[float] = None) -> None:
        """Ping if half the watchdog timeout has passed since the last ping."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
