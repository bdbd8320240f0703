"""Files that mark work as done are whole or absent (edge_ser.atomic_write), on real files."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from edge_ser.atomic_write import atomic_path, write_bytes_atomically


def test_bytes_and_text_replace_a_file_and_leave_nothing_beside_it(tmp_path):
    target = tmp_path / "deep" / "row.json"
    write_bytes_atomically(target, b"first")
    write_bytes_atomically(target, json.dumps({"ua": 0.5}) + "\n")
    assert json.loads(target.read_text()) == {"ua": 0.5}
    assert [p.name for p in target.parent.iterdir()] == ["row.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old model")
    with pytest.raises(TypeError):
        write_bytes_atomically(target, 12345)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of a new mod")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_the_temporary_keeps_the_suffix_writers_choose_their_format_by(tmp_path):
    # numpy appends ".npy" / ".npz" to a name without it; the file must still land on the target
    for name, save in (("feats.npy", lambda p: np.save(p, np.arange(4))),
                       ("bank.npz", lambda p: np.savez(p, rir0=np.arange(3)))):
        target = tmp_path / name
        with atomic_path(target) as tmp:
            assert tmp.suffix == target.suffix and tmp.parent == target.parent
            save(tmp)
    assert np.load(tmp_path / "feats.npy").tolist() == [0, 1, 2, 3]
    with np.load(tmp_path / "bank.npz") as bank:
        assert bank["rir0"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.npz", "feats.npy"]


def _write_many(args) -> None:
    target, payload = args
    for _ in range(200):
        write_bytes_atomically(Path(target), payload)


def test_writers_in_several_processes_never_mix_their_contents(tmp_path):
    # two processes filling one shared cache entry at once: the file is always one whole version
    target = tmp_path / "entry.bin"
    payloads = [bytes([k]) * 200_000 for k in (1, 2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        waiting = pool.map_async(_write_many, [(str(target), p) for p in payloads])
        seen = set()
        while not waiting.ready():
            if target.exists():
                seen.add(target.read_bytes())
        waiting.get(timeout=120)
    seen.add(target.read_bytes())
    assert seen <= set(payloads)
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]
