"""Write a file so that it is either absent, its old self, or complete: never half written.

Several files mark work as done by existing (a results row, a cached feature, a trained member,
a checkpoint) or are read by another process while being replaced (the shipped model, a WAV).
A crash, a full disk or a kill in the middle of writing one in place leaves a truncated file
that then passes for finished. Writing to a temporary name in the same folder and renaming it
onto the target (``os.replace``, atomic on one filesystem) avoids that, and a temporary name
unique to each writer lets several processes that share a folder fill the same entry at once.

Standard library only: the device path (``write_wav``) uses it too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def _replacing(target: PathLike, suffix: str) -> Iterator[Path]:
    """A temporary path beside ``target`` ending in ``suffix``, renamed onto ``target`` when the
    block ends normally and removed when it raises.

    The name is one no other writer uses (the process id and random bits), so processes sharing a
    folder can fill the same entry at once.
    """
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_path(target: PathLike) -> "contextlib.AbstractContextManager[Path]":
    """Yield a temporary path to write ``target``'s new content to; rename it onto ``target``
    when the block ends normally, remove it when the block raises.

    The temporary path keeps ``target``'s suffix, because writers such as ``numpy.save`` and
    ``keras.Model.save`` choose their format by it or append their own.
    """
    return _replacing(target, f".tmp{Path(target).suffix}")


def write_bytes_atomically(target: PathLike, data: Union[bytes, str]) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``target`` through a temporary file and a rename.

    The temporary name ends in ``.partial``, so a leftover from a killed process never matches a
    reader's ``*.json`` or ``*.tflite`` pattern.
    """
    with _replacing(target, ".partial") as tmp, open(tmp, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
