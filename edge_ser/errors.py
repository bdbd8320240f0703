"""Exceptions raised by edge-ser.

Every error a user can cause (a bad file, a wrong model, a missing device) is an
:class:`EdgeSerError`, so front ends (CLI, daemon, HTTP) can report it in one line
and keep going, while programming errors still surface as ordinary tracebacks.
"""

from __future__ import annotations


class EdgeSerError(Exception):
    """Base class of all errors that are the input's fault, not the code's."""


class AudioError(EdgeSerError):
    """Audio could not be decoded: not a WAV, corrupt header, unsupported codec, ..."""

    def __init__(self, reason: str, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


class FeatureConfigError(EdgeSerError):
    """A feature configuration is invalid or does not match what a model expects."""


class ModelError(EdgeSerError):
    """A model file is missing, unreadable, or inconsistent with its metadata."""


class BackendError(EdgeSerError):
    """No usable TFLite interpreter backend could be loaded."""
