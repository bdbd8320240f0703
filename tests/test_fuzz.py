"""The fuzz targets (fuzz/) run briefly in the suite: a fixed number of generated inputs each.

Each target runs in its own process (``python -m fuzz.worker``) because the load_audio
target caps the address space of the process it runs in. The inputs are the same on
every run (hypothesis with a fixed seed) so the suite stays deterministic; ``make fuzz``
is the long, exploring campaign. A finding fails the test with its report: what broke,
the input as hex and the traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime_fixtures import ROOT

pytest.importorskip("hypothesis", reason="the fuzz targets need hypothesis (requirements-dev.txt); make test installs it")

#: generated inputs per target (after its seed corpus): about a minute for the three together
EXAMPLES = {"wav": 3000, "load_audio": 5000, "classify": 3000, "http": 5000}
#: kinds that depend on timing, which a test must not judge (campaigns report them): a slow input,
#: and an answer lost to the RST of a close with unread request bytes (see fuzz/targets.py)
IGNORED_KINDS = ("slow input", "connection reset before a response")


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(EXAMPLES))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    env.pop("EDGE_SER_MODEL", None)
    proc = subprocess.run([sys.executable, "-m", "fuzz.worker", target, "--engine", "hypothesis",
                           "--examples", str(EXAMPLES[target]), "--seed", "0", "--findings", str(tmp_path)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)
    stats_path = tmp_path / target / "stats.json"
    assert stats_path.is_file(), proc.stdout + proc.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["executions"] >= EXAMPLES[target], stats
    findings = {k: v for k, v in stats["findings"].items() if k not in IGNORED_KINDS}
    reports = "\n\n".join(Path(v["report"]).read_text()[:3000] for v in findings.values())
    assert not findings, f"{target}: {sorted(findings)}\n\n{reports}"
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wav_target_catches_sources_that_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agreement check itself: a reader that loses data on non-seekable streams is caught."""
    from edge_ser import wav
    from edge_ser.wav import wav_bytes
    from fuzz.generate import ISSUE_HEADERS
    from fuzz.targets import Finding, WavTarget

    target = WavTarget()
    target.setup()
    try:
        for data in ISSUE_HEADERS:
            target.check(data)  # one answer for every source (issue 11)
        good = wav_bytes(np.linspace(-0.5, 0.5, 64, dtype=np.float32), 16000)
        target.check(good)
        real = wav.read_wav_channels

        def loses_the_last_frame_on_pipes(source, **kw):
            audio = real(source, **kw)
            seekable = getattr(source, "seekable", lambda: True)()
            return audio if seekable else wav.WavAudio(audio.samples[:-1], audio.sample_rate, audio.channels,
                                                       audio.format)

        monkeypatch.setattr(wav, "read_wav_channels", loses_the_last_frame_on_pipes)
        with pytest.raises(Finding, match="sources disagree"):
            target.check(good)
    finally:
        target.close()


def test_the_classify_target_on_a_full_scale_step_at_8_khz() -> None:
    """Found by the campaign: resampling overshoots a full-scale step (to -1.18); a WAV was
    clipped back to [-1, 1] and the same samples given to classify_signal were not, so the
    answers differed by up to 0.1. One answer for every source."""
    from edge_ser.wav import wav_bytes
    from fuzz.targets import ClassifyTarget

    target = ClassifyTarget()
    target.setup()
    try:
        target.check(wav_bytes(np.r_[np.zeros(4000), -np.ones(4000)].astype(np.float32), 8000))
    finally:
        target.close()


def test_the_http_target_reads_a_request_head_as_the_server_does() -> None:
    """Found by a campaign: the judge read a request differently from RFC 9112 and the server.
    One empty line before the request line is skipped (a dashboard 401 for ``/`` was taken for
    an error on no path), and a bare-LF blank line ends the header block (a ``Host`` after it,
    in the body, was counted as a second ``Host``). Framing after a bare-LF head is still judged."""
    from fuzz.targets import HttpTarget, _framing_violation, _request_path

    skipped_blank_line = b"\nGET /?t0yes HTTP/1.0\r\nHt: */*\r\n\r\n"
    host_in_the_body = (b"GET /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea;rer x\n\n"
                        b"Host: 127.0.0.1\r\n\r\n")
    two_hosts_bare_lf = b"GET / HTTP/1.1\nHost: 127.0.0.1\nHost: example.com\n\n"
    assert _request_path(skipped_blank_line) == "/"
    assert _framing_violation(host_in_the_body) is None
    assert _framing_violation(two_hosts_bare_lf) == "two Host headers"
    assert _framing_violation(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == "two Host headers"
    target = HttpTarget()
    target.setup()
    try:
        for data in (skipped_blank_line, host_in_the_body, two_hosts_bare_lf):
            target.check(data)  # a Finding fails the test with what it saw
        answer, _ = target._exchange(two_hosts_bare_lf)
        assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.0 400 "), answer[:80]
    finally:
        target.close()
