"""The WAV decoder/encoder (edge_ser.wav) on every format and every kind of bad file.

Test files are built byte by byte by ``wavgen`` (not by the code under test), and
real corpus files are compared with the stdlib ``wave`` module, soundfile and
scipy.io.wavfile where those are installed.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_ser.errors import AudioError
from edge_ser.wav import SAMPLE_FORMATS, WavAudio, read_wav, read_wav_channels, wav_bytes, write_wav

from wavgen import (EXTENSIBLE, FORMATS, IEEE_FLOAT, PCM, chunk, fmt_payload, known_samples,
                    pack_samples, riff, wav_file)

ALL_FORMATS = sorted(FORMATS)


class Unseekable(io.RawIOBase):
    """A pipe-like stream: no seek, no tell, no size; reads return at most 1000 bytes."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.name = "<pipe>"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), 1000))
        buffer[: len(data)] = data
        return len(data)


def _write(tmp_path: Path, blob: bytes, name: str = "case.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("sample_format", ALL_FORMATS)
def test_every_format_decodes_to_known_samples(sample_format, channels, extensible):
    values, expected = known_samples(sample_format, frames=257, channels=channels, seed=channels)
    blob = wav_file(values, sample_format, sample_rate=22050, extensible=extensible)
    audio = read_wav_channels(blob)
    assert audio.format == sample_format
    assert (audio.sample_rate, audio.channels) == (22050, channels)
    assert audio.samples.dtype == np.float32 and audio.samples.shape == (257, channels)
    np.testing.assert_array_equal(audio.samples, expected)
    mono = read_wav(blob)
    assert mono.samples.shape == (257,) and mono.channels == channels
    np.testing.assert_allclose(mono.samples, expected.astype(np.float64).mean(axis=1), atol=1e-6)
    assert mono.duration == pytest.approx(257 / 22050)


def test_pcm_extremes_map_to_documented_floats():
    cases = {"pcm8": ([0, 128, 255], [-1.0, 0.0, 127 / 128]),
             "pcm16": ([-32768, 0, 32767], [-1.0, 0.0, 32767 / 32768]),
             "pcm24": ([-(1 << 23), -1, (1 << 23) - 1], [-1.0, -1 / (1 << 23), 1 - 1 / (1 << 23)]),
             "pcm32": ([-(1 << 31), 0, (1 << 31) - 1], [-1.0, 0.0, 1.0])}
    for fmt, (stored, floats) in cases.items():
        audio = read_wav(wav_file(np.array(stored), fmt))
        np.testing.assert_allclose(audio.samples, floats, rtol=0, atol=1e-9, err_msg=fmt)
        assert audio.samples.min() >= -1.0 and audio.samples.max() <= 1.0


def test_float_overs_and_non_finite_values_are_clipped_to_range():
    stored = np.array([0.5, 1.5, -3.0, np.nan, np.inf, -np.inf])
    audio = read_wav(wav_file(stored, "float32"))
    np.testing.assert_array_equal(audio.samples, np.float32([0.5, 1.0, -1.0, 0.0, 1.0, -1.0]))


def test_downmix_averages_channels():
    values = np.array([[32767, -32768], [16384, 16384], [0, 8192]])
    audio = read_wav(wav_file(values, "pcm16"))
    np.testing.assert_allclose(audio.samples, [(32767 - 32768) / 65536, 0.5, 0.125], atol=1e-7)


@pytest.mark.parametrize("sample_format", sorted(SAMPLE_FORMATS))
def test_write_wav_round_trips_through_decoder_and_is_lossless(tmp_path, sample_format):
    values, expected = known_samples(sample_format, frames=300, channels=2, seed=7)
    if sample_format == "float64":  # the decoder returns float32: start from float32 values
        values = expected.astype(np.float64)
    if sample_format == "pcm32":  # float32 holds 24 significant bits: use 24-bit values
        values = (values >> 8) << 8
        expected = (values / 2.0**31).astype(np.float32)
    original = wav_file(values, sample_format, sample_rate=8000)
    decoded = read_wav_channels(original)
    path = tmp_path / "out.wav"
    write_wav(path, decoded.samples, 8000, sample_format=sample_format)
    assert path.read_bytes() == original  # decode -> encode gives back the same bytes
    again = read_wav_channels(path)
    np.testing.assert_array_equal(again.samples, expected)
    assert not [p for p in os.listdir(tmp_path) if p != "out.wav"], "temporary file left behind"
    stream = io.BytesIO()
    write_wav(stream, decoded.samples, 8000, sample_format=sample_format)
    assert stream.getvalue() == original


def test_write_wav_clips_and_rejects_bad_arguments(tmp_path):
    audio = read_wav(wav_bytes(np.array([2.0, -2.0, 0.25]), 16000))
    np.testing.assert_array_equal(audio.samples, np.float32([32767 / 32768, -1.0, 0.25]))
    with pytest.raises(ValueError, match="sample_format"):
        wav_bytes(np.zeros(3), 16000, sample_format="mp3")
    with pytest.raises(ValueError, match="sample_rate"):
        wav_bytes(np.zeros(3), 0)
    with pytest.raises(ValueError, match="shape"):
        wav_bytes(np.zeros((2, 2, 2)), 16000)


def test_write_wav_pcm16_is_readable_by_stdlib_wave(tmp_path):
    x = np.sin(np.linspace(0, 100, 1601)) * 0.9
    path = tmp_path / "tone.wav"
    write_wav(path, x, 16000)
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        stored = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(stored, np.round(x * 32768).astype(np.int16))


def test_silence_and_empty_data_are_valid(tmp_path):
    silent = read_wav(wav_file(np.zeros((1600, 2), dtype=np.int64), "pcm16"))
    assert silent.samples.shape == (1600,) and not silent.samples.any()
    for fmt in ALL_FORMATS:
        empty = read_wav(_write(tmp_path, wav_file(np.zeros((0, 1)), fmt)))
        assert empty.samples.shape == (0,) and empty.samples.dtype == np.float32
        assert empty.duration == 0.0 and empty.format == fmt
    assert read_wav_channels(wav_file(np.zeros((0, 3)), "pcm24")).samples.shape == (0, 3)


# --------------------------------------------------------------------------- sources


def test_every_kind_of_source_gives_the_same_audio(tmp_path):
    values, expected = known_samples("pcm16", frames=5000, channels=2)
    blob = wav_file(values, "pcm16")
    path = _write(tmp_path, blob)
    sources = [str(path), path, blob, bytearray(blob), memoryview(blob), io.BytesIO(blob),
               Unseekable(blob), io.BufferedReader(Unseekable(blob))]
    for source in sources:
        audio = read_wav_channels(source)
        np.testing.assert_array_equal(audio.samples, expected, err_msg=type(source).__name__)


def test_real_pipe_from_a_subprocess(tmp_path):
    values, expected = known_samples("pcm24", frames=40000, channels=1)
    path = _write(tmp_path, wav_file(values, "pcm24", data_size=0xFFFFFFFF))
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as proc:
        audio = read_wav(proc.stdout)
    np.testing.assert_array_equal(audio.samples, expected[:, 0])


def test_stream_starting_mid_file_is_read_from_its_position():
    values, expected = known_samples("pcm16", frames=100)
    stream = io.BytesIO(b"garbage!" + wav_file(values))
    stream.seek(8)
    np.testing.assert_array_equal(read_wav(stream).samples, expected[:, 0])


# --------------------------------------------------------------------------- real corpus


def _corpus_files(ravdess_dir: Path, count: int = 4):
    files = sorted(ravdess_dir.glob("Actor_*/*.wav"))
    return files[:: max(1, len(files) // count)][:count]


def test_corpus_files_match_stdlib_wave(ravdess_dir):
    for path in _corpus_files(ravdess_dir):
        audio = read_wav(path)
        with wave.open(str(path)) as reader:
            assert reader.getsampwidth() == 2
            assert (audio.sample_rate, audio.channels) == (reader.getframerate(), reader.getnchannels())
            ints = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
        ints = ints.reshape(-1, audio.channels).mean(axis=1)
        np.testing.assert_allclose(audio.samples, ints / 32768.0, rtol=0, atol=1e-7, err_msg=str(path))
        assert audio.format == "pcm16"


def test_corpus_files_match_soundfile_and_scipy(ravdess_dir):
    soundfile = pytest.importorskip("soundfile", reason="soundfile (requirements-dev.txt); make test installs it")
    wavfile = pytest.importorskip("scipy.io.wavfile", reason="scipy (requirements-dev.txt); make test installs it")
    for path in _corpus_files(ravdess_dir):
        ours = read_wav_channels(path).samples
        theirs, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(ours, theirs)
        rate2, ints = wavfile.read(str(path))
        assert rate == rate2 == read_wav(path).sample_rate
        np.testing.assert_array_equal(ours, (ints.reshape(len(ints), -1) / 32768.0).astype(np.float32))


def test_edge_cases_match_soundfile(tmp_path):
    """Formats soundfile knows too, including extensible 24-bit 6-channel and float64."""
    soundfile = pytest.importorskip("soundfile", reason="soundfile (requirements-dev.txt); make test installs it")
    for fmt, channels, ext in [("pcm8", 1, False), ("pcm24", 6, True), ("pcm32", 2, False),
                               ("float64", 2, False), ("float32", 6, True)]:
        values, _ = known_samples(fmt, frames=1000, channels=channels)
        path = _write(tmp_path, wav_file(values, fmt, extensible=ext), f"{fmt}.wav")
        theirs, _ = soundfile.read(str(path), dtype="float64", always_2d=True)
        np.testing.assert_allclose(read_wav_channels(path).samples, theirs, rtol=0, atol=1e-7, err_msg=fmt)


# --------------------------------------------------------------------------- tolerated oddities


def test_unknown_and_odd_sized_chunks_are_skipped():
    values, expected = known_samples("pcm16", frames=64)
    junk = [chunk(b"JUNK", b"\x00" * 28), chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00odd!\x00"),
            chunk(b"fact", struct.pack("<I", 64)), chunk(b"cue ", b"\x01" * 7), chunk(b"bext", b"x" * 3)]
    blob = wav_file(values, before=junk[:2], between=junk[2:], after=[chunk(b"LIST", b"abc")])
    np.testing.assert_array_equal(read_wav(blob).samples, expected[:, 0])


def test_odd_sized_chunk_without_its_pad_byte_is_tolerated():
    values, expected = known_samples("pcm16", frames=64)
    blob = wav_file(values, between=[chunk(b"cue ", b"\x01" * 7, pad=False),
                                     chunk(b"note", b"abcde", pad=False)])
    np.testing.assert_array_equal(read_wav(blob).samples, expected[:, 0])


@pytest.mark.parametrize("riff_size", [0, 4, 0xFFFFFFFF, 123456789])
def test_wrong_riff_size_is_tolerated(riff_size):
    values, expected = known_samples("pcm16", frames=50)
    np.testing.assert_array_equal(read_wav(wav_file(values, riff_size=riff_size)).samples, expected[:, 0])


@pytest.mark.parametrize("source_kind", ["bytes", "path", "pipe"])
@pytest.mark.parametrize("data_size", [0xFFFFFFFF, 0, 0x7FFFFFFF, 10**6])
def test_streamed_or_oversized_data_chunk_reads_to_end_of_file(tmp_path, source_kind, data_size):
    values, expected = known_samples("pcm16", frames=1001, channels=2)
    # a trailing partial frame (2 of 4 bytes) as a killed recorder leaves it
    blob = wav_file(values, "pcm16", data_size=data_size, extra_data=b"\x01\x02")
    source = {"bytes": blob, "path": _write(tmp_path, blob), "pipe": Unseekable(blob)}[source_kind]
    audio = read_wav_channels(source)
    np.testing.assert_array_equal(audio.samples, expected)


def test_zero_data_size_followed_by_a_chunk_means_empty_data():
    values, _ = known_samples("pcm16", frames=0)
    blob = wav_file(values, data_size=0, after=[chunk(b"LIST", b"INFOxxxx")])
    assert read_wav(blob).samples.size == 0


def test_data_size_smaller_than_file_reads_only_declared_frames():
    values, expected = known_samples("pcm16", frames=100)
    blob = wav_file(values, data_size=2 * 60 + 1, after=[b"trailing garbage"])
    np.testing.assert_array_equal(read_wav(blob).samples, expected[:60, 0])


def test_rf64_with_placeholder_sizes_is_read():
    values, expected = known_samples("float32", frames=500, channels=2)
    fmt = chunk(b"fmt ", fmt_payload(IEEE_FLOAT, 2, 48000, 32))
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 0, 4000, 500, 0))
    data = chunk(b"data", pack_samples(values, "float32"), size=0xFFFFFFFF)
    blob = riff([ds64, fmt, data], riff_size=0xFFFFFFFF, magic=b"RF64")
    np.testing.assert_array_equal(read_wav_channels(blob).samples, expected)


@pytest.mark.parametrize("source_kind", ["bytes", "path", "pipe"])
def test_lying_data_size_does_not_allocate(tmp_path, source_kind):
    blob = wav_file(np.arange(28), "pcm16", data_size=0x7FFFFFF0)  # 100-byte file
    assert len(blob) == 100
    source = {"bytes": blob, "path": _write(tmp_path, blob), "pipe": Unseekable(blob)}[source_kind]
    tracemalloc.start()
    try:
        audio = read_wav(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert audio.samples.size == 28
    assert peak < 4 << 20, f"peak allocation {peak} bytes for a 100-byte file"


def test_lying_chunk_sizes_of_unknown_chunks_end_cleanly():
    blob = riff([chunk(b"fmt ", fmt_payload(PCM, 1, 16000, 16)), chunk(b"JUNK", b"", size=0xFFFFFFF0)])
    with pytest.raises(AudioError, match="no data chunk"):
        read_wav(Unseekable(blob), name="junk.wav")


# --------------------------------------------------------------------------- bad input


def _fmt_blob(**fields) -> bytes:
    defaults = dict(tag=PCM, channels=1, sample_rate=16000, bits=16)
    defaults.update(fields)
    body = fmt_payload(defaults.pop("tag"), defaults.pop("channels"), defaults.pop("sample_rate"),
                       defaults.pop("bits"), **defaults)
    return riff([chunk(b"fmt ", body), chunk(b"data", b"\x00" * 64)])


BAD_FILES = {
    "empty": (b"", "empty file"),
    "mp3": (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 50, "not a RIFF/WAVE file (looks like MP3)"),
    "mp3_frame": (b"\xff\xfb\x90\x64" * 50, "looks like MP3"),
    "text": (b"hello, this is not audio\n" * 4, "not a RIFF/WAVE file (looks like text)"),
    "flac": (b"fLaC\x00\x00\x00\x22" + b"\x00" * 40, "looks like FLAC"),
    "ogg": (b"OggS\x00\x02" + b"\x00" * 40, "looks like Ogg"),
    "riff_avi": (b"RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00", "not a RIFF/WAVE file"),
    "short_header": (b"RIFF\x00\x00", "not a RIFF/WAVE file"),
    "header_only": (riff([]), "no fmt chunk"),
    "no_fmt": (riff([chunk(b"LIST", b"abcd"), chunk(b"data", b"\x00" * 10)]), "no fmt chunk"),
    "no_data": (riff([chunk(b"fmt ", fmt_payload(PCM, 1, 16000, 16)), chunk(b"LIST", b"ab")]),
                "no data chunk"),
    "truncated_fmt": (riff([b"fmt " + struct.pack("<I", 16) + b"\x01\x00\x01\x00\x80"]),
                      "truncated fmt chunk"),
    "short_fmt": (riff([chunk(b"fmt ", b"\x01\x00\x01\x00\x80\x3e\x00\x00"), chunk(b"data", b"")]),
                  "truncated fmt chunk"),
    "fmt_4gb": (riff([b"fmt " + struct.pack("<I", 0xFFFFFFF0) + fmt_payload(PCM, 1, 16000, 16)]),
                "fmt chunk size 4294967280 is implausible"),
    "zero_channels": (_fmt_blob(channels=0), "zero channels"),
    "channels_65535": (_fmt_blob(channels=65535, bits=8, block_align=65535), "implausible channel count 65535"),
    "zero_rate": (_fmt_blob(sample_rate=0), "zero sample rate"),
    "huge_rate": (_fmt_blob(sample_rate=0xFFFFFFFF), "implausible sample rate"),
    "block_align": (_fmt_blob(channels=2, block_align=3), "block align 3 inconsistent"),
    "block_align_zero": (_fmt_blob(block_align=0), "block align 0 inconsistent"),
    "alaw": (_fmt_blob(tag=6, bits=8), "unsupported codec A-law"),
    "mulaw": (_fmt_blob(tag=7, bits=8), "unsupported codec mu-law"),
    "mp3_in_wav": (_fmt_blob(tag=0x55, bits=0), "unsupported codec MPEG Layer 3 (MP3)"),
    "ms_adpcm": (_fmt_blob(tag=2, bits=4), "unsupported codec Microsoft ADPCM"),
    "ima_adpcm": (_fmt_blob(tag=0x11, bits=4), "unsupported codec IMA ADPCM"),
    "gsm": (_fmt_blob(tag=0x31, bits=0), "GSM 6.10"),
    "mystery_codec": (_fmt_blob(tag=0x1234), "format tag 0x1234"),
    "extensible_mulaw": (_fmt_blob(tag=7, bits=8, extensible=True), "unsupported extensible codec mu-law"),
    "extensible_truncated": (riff([chunk(b"fmt ", struct.pack("<HHIIHHH", EXTENSIBLE, 1, 16000, 32000, 2, 16, 0)),
                                   chunk(b"data", b"")]), "truncated WAVE_FORMAT_EXTENSIBLE"),
    "extensible_valid_bits": (_fmt_blob(bits=16, extensible=True, valid_bits=24), "valid bits per sample 24"),
    "pcm12": (_fmt_blob(bits=12, block_align=2), "unsupported bits per sample 12 for PCM"),
    "pcm0": (_fmt_blob(bits=0, block_align=0), "unsupported bits per sample 0 for PCM"),
    "float16": (_fmt_blob(tag=IEEE_FLOAT, bits=16), "unsupported bits per sample 16 for IEEE float"),
    "data_before_fmt": (riff([chunk(b"data", b"\x00" * 4), chunk(b"fmt ", fmt_payload(PCM, 1, 16000, 16))]),
                        "no fmt chunk before the data chunk"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_raises_audio_error_naming_file_and_reason(tmp_path, case):
    blob, reason = BAD_FILES[case]
    path = _write(tmp_path, blob, f"{case}.wav")
    with pytest.raises(AudioError) as info:
        read_wav(path)
    assert reason in info.value.reason
    assert info.value.source == str(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    # the same bytes from memory and from a pipe fail the same way, under the given name
    for source in (blob, Unseekable(blob)):
        with pytest.raises(AudioError) as again:
            read_wav(source, name="upload.wav")
        assert again.value.reason == info.value.reason and str(again.value).startswith("upload.wav: ")


def test_unreadable_paths_raise_audio_error(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav: cannot read: No such file"):
        read_wav(missing)
    with pytest.raises(AudioError, match="cannot read"):
        read_wav(tmp_path)  # a directory


def test_random_corruption_only_ever_raises_audio_error():
    """Fuzz: flip bytes of valid headers; decoding either works or raises AudioError."""
    rng = np.random.default_rng(1234)
    seeds = [wav_file(known_samples(f, 40, c)[0], f, extensible=e, between=[chunk(b"LIST", b"abc")])
             for f in ALL_FORMATS for c in (1, 2) for e in (False, True)]
    outcomes = {"ok": 0, "error": 0}
    for i in range(1500):
        blob = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(0, min(len(blob), 80)))
            blob[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            del blob[int(rng.integers(0, len(blob))):]
        try:
            audio = read_wav(bytes(blob))
        except AudioError:
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
            assert audio.samples.dtype == np.float32 and np.isfinite(audio.samples).all()
            assert np.abs(audio.samples).max(initial=0.0) <= 1.0
    assert outcomes["ok"] > 100 and outcomes["error"] > 100, outcomes


def test_wav_audio_is_frozen():
    audio = read_wav(wav_file(np.zeros(10, dtype=np.int64)))
    assert isinstance(audio, WavAudio)
    with pytest.raises(AttributeError):
        audio.sample_rate = 8000  # type: ignore[misc]


# --------------------------------------------------------------------------- device-path imports


def test_audio_and_feature_modules_import_no_heavy_packages(repo_root):
    code = (
        "import sys\n"
        "import edge_ser.wav, edge_ser.resample, edge_ser.audio, edge_ser.features\n"
        "heavy = ('scipy', 'librosa', 'tensorflow', 'numba', 'sklearn', 'keras', 'soundfile')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "", f"heavy modules imported: {result.stdout.strip()}"


# --------------------------------------------------------------------------- one answer, bounded blocks

# The header from issue 11: a data chunk of size 0 followed by 9 bytes that start like a
# chunk ("Efmt"). In memory it used to decode to 2 frames, from a pipe to 0.
ISSUE_11_HEADER = bytes.fromhex(
    "52494646a407000057415645666d74201000000001000200803e0500fa00000004001000646174610000000045666d742010005200")


@pytest.mark.parametrize("blob", [ISSUE_11_HEADER, wav_file(np.arange(40), "pcm16", data_size=0),
                                  wav_file(np.arange(40), "pcm16", data_size=0, after=[chunk(b"LIST", b"abcd")])],
                         ids=["issue11", "size0_to_end", "size0_then_chunk"])
def test_bytes_path_and_pipe_decode_one_header_the_same_way(tmp_path, blob):
    path = _write(tmp_path, blob)
    results = [read_wav_channels(source).samples
               for source in (blob, path, io.BytesIO(blob), Unseekable(blob), io.BufferedReader(Unseekable(blob)))]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("rate", [1, 8, 2000, 3999, 384001, 10_000_000])
def test_sample_rates_outside_the_plausible_range_are_refused(rate):
    from edge_ser.wav import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    blob = _fmt_blob(sample_rate=rate)
    for source in (blob, Unseekable(blob)):
        with pytest.raises(AudioError, match=f"implausible sample rate {rate} Hz .*{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}"):
            read_wav(source, name="x.wav")
    for rate in (MIN_SAMPLE_RATE, 8000, 65521, MAX_SAMPLE_RATE):  # the edges and odd rates inside are fine
        assert read_wav(_fmt_blob(sample_rate=rate)).sample_rate == rate


def test_wav_reader_reads_bounded_blocks_and_rewinds(tmp_path):
    from edge_ser.wav import WavReader

    values, expected = known_samples("pcm24", frames=10_001, channels=3)
    blob = wav_file(values, "pcm24")
    path = _write(tmp_path, blob)
    for source in (path, blob):
        with WavReader(source) as reader:
            assert reader.seekable and reader.frames_hint() == 10_001
            first = list(reader.blocks(4096, mono=False))
            assert [len(b) for b in first] == [4096, 4096, 1809]
            reader.rewind()
            np.testing.assert_array_equal(np.concatenate(list(reader.blocks(999, mono=False))), expected)
            reader.rewind()
            np.testing.assert_array_equal(np.concatenate(list(reader.blocks(5000))), read_wav(blob).samples)
    with WavReader(Unseekable(blob)) as pipe:
        assert not pipe.seekable and pipe.frames_hint() is None
        np.testing.assert_array_equal(np.concatenate(list(pipe.blocks(mono=False))), expected)
        with pytest.raises(io.UnsupportedOperation):
            pipe.rewind()


def test_a_block_stays_small_whatever_the_channel_count():
    from edge_ser.wav import WavReader

    blob = wav_file(np.zeros((3000, 256), dtype=np.int64), "float64")  # 6 MB of 256-channel float64
    with WavReader(blob) as reader:
        sizes = [b.nbytes for b in reader.blocks(1 << 20, mono=False)]
    assert sum(sizes) == 3000 * 256 * 4 and max(sizes) <= 2 << 20


def test_non_wav_sources_are_audio_errors():
    from edge_ser.wav import WavReader

    for bad in (None, 12, np.zeros(10)):
        with pytest.raises(AudioError, match="not a WAV source"):
            WavReader(bad)
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):  # /dev/zero: refused from its first bytes
        with open("/dev/zero", "rb") as zero:
            read_wav(zero)


def test_a_text_mode_file_is_an_audio_error_with_a_hint(tmp_path):
    path = _write(tmp_path, wav_file(np.arange(10), "pcm16"))
    with open(path, "r", errors="strict") as text:
        with pytest.raises(AudioError, match=r"text mode.*'rb'"):
            read_wav(text)
