"""The resampler (edge_ser.resample) and the load_audio facade (edge_ser.audio).

Quality is checked three ways: against scipy.signal.resample_poly with its default
filter (same alignment, different filter: >= 60 dB), against resample_poly running
*our* filter (same maths: the polyphase bookkeeping must be exact, edges included),
and against the analytic signal at the new rate (absolute quality). Stopband and
passband are measured end to end with pure tones.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edge_ser.audio import StreamResampler, load_audio, read_wav, resample, write_wav
from edge_ser.errors import AudioError
from edge_ser.resample import PASSBAND, STOPBAND_DB, design_filter, output_length, resample_factors

from wavgen import known_samples, sine, wav_file

TO_16K = [(rate, 16000) for rate in (8000, 11025, 22050, 32000, 44100, 48000, 96000)]
PAIRS = TO_16K + [(16000, 48000)]
EDGE = 64  # output samples at each end left out when the two filters differ


def _snr_db(ours: np.ndarray, reference: np.ndarray) -> float:
    noise = np.sum((ours.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / max(noise, 1e-300)))


def _log_sweep(rate: int, seconds: float, f0: float, f1: float, amplitude: float = 0.5):
    """Exponential sine sweep and its phase function (to evaluate it at any time)."""
    k = np.log(f1 / f0) / seconds

    def at(t: np.ndarray) -> np.ndarray:
        return amplitude * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)

    return at(np.arange(int(seconds * rate)) / rate), at


def _own_filter(up: int, down: int) -> np.ndarray:
    """Our prototype filter as plain taps, to hand to scipy as a custom window.

    We normalize each polyphase branch to unit DC gain, scipy scales the whole filter
    once; for upsampling the branch gains differ by ~1e-5, hence ``atol=2e-5``.
    """
    cutoff, half, beta = design_filter(up, down)
    n = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(2 * half + 1, beta)
    return taps / taps.sum()


@pytest.mark.dev
@pytest.mark.parametrize("orig,target", PAIRS)
def test_sweep_matches_scipy_resample_poly(orig, target):
    signal = pytest.importorskip("scipy.signal", reason="scipy (requirements-dev.txt); make test installs it")
    up, down = resample_factors(orig, target)
    x, _ = _log_sweep(orig, 1.0, 50.0, 0.8 * min(orig, target) / 2)
    ours = resample(x, orig, target)
    reference = signal.resample_poly(x, up, down)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert _snr_db(ours[EDGE:-EDGE], reference[EDGE:-EDGE]) >= 60.0
    # With our filter, scipy computes the very same sums: equal to float32 precision,
    # edges included (alignment and zero padding are identical).
    exact = signal.resample_poly(x, up, down, window=_own_filter(up, down))
    assert _snr_db(ours, exact) >= 100.0
    np.testing.assert_allclose(ours, exact, rtol=0, atol=2e-5)


@pytest.mark.parametrize("orig,target", PAIRS)
def test_sweep_matches_the_analytic_signal_at_the_new_rate(orig, target):
    x, at = _log_sweep(orig, 1.0, 50.0, PASSBAND * 0.95 * min(orig, target) / 2)
    ours = resample(x, orig, target)
    truth = at(np.arange(ours.size) / target)
    edge = target // 50  # 20 ms: the signal starts and ends abruptly
    assert _snr_db(ours[edge:-edge], truth[edge:-edge]) >= 90.0


def _tone_gain_db(orig: int, target: int, frequency: float) -> float:
    x = sine(frequency, 0.5, orig, amplitude=0.5)
    y = resample(x, orig, target).astype(np.float64)
    edge = target // 20
    rms_in = 0.5 / np.sqrt(2)
    return float(20 * np.log10(max(np.sqrt(np.mean(y[edge:-edge] ** 2)), 1e-12) / rms_in))


@pytest.mark.parametrize("orig,target", [(48000, 16000), (44100, 16000), (96000, 16000), (22050, 16000)])
def test_passband_is_flat_and_everything_above_nyquist_is_suppressed(orig, target):
    nyquist = target / 2
    for frequency in np.linspace(100.0, PASSBAND * nyquist, 7):
        assert abs(_tone_gain_db(orig, target, frequency)) < 0.01, frequency
    # Tones that would alias: just above the new Nyquist frequency up to the old one.
    for frequency in np.linspace(1.01 * nyquist, 0.98 * orig / 2, 6):
        gain = _tone_gain_db(orig, target, frequency)
        assert gain <= -STOPBAND_DB, (frequency, gain)
        assert gain <= -60.0


def test_upsampling_leaves_no_images_above_the_old_nyquist():
    x = sine(7000.0, 1.0, 16000, amplitude=0.5)
    y = resample(x, 16000, 48000)[4800:-4800].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.kaiser(y.size, 16.0)))
    freqs = np.fft.rfftfreq(y.size, 1 / 48000)
    peak = spectrum.max()
    assert abs(freqs[spectrum.argmax()] - 7000.0) < 5.0
    images = spectrum[freqs > 8000.0].max()  # 16 kHz - 7 kHz = 9 kHz, 23 kHz, ...
    assert 20 * np.log10(images / peak) <= -STOPBAND_DB


def test_constant_input_gives_exactly_that_constant():
    for orig, target in PAIRS:
        y = resample(np.full(orig // 10, 0.25), orig, target)
        up, down = resample_factors(orig, target)
        edge = design_filter(up, down)[1] // down + 2
        np.testing.assert_allclose(y[edge:-edge], 0.25, rtol=0, atol=2e-6, err_msg=f"{orig}->{target}")


@pytest.mark.parametrize("orig,target", PAIRS + [(16000, 16000), (22254, 16000), (16000, 8000)])
def test_streaming_equals_whole_signal_for_any_chunking(orig, target):
    rng = np.random.default_rng(orig + target)
    x = rng.uniform(-1.0, 1.0, orig // 2 + 7).astype(np.float32)  # full scale
    whole = resample(x, orig, target)
    stream = StreamResampler(orig, target)
    for trial in range(3):
        pieces, i = [], 0
        while i < x.size:
            n = int(rng.choice([0, 1, 2, 3, 17, 160, 441, 1024, 4099])) if trial < 2 else x.size
            pieces.append(stream.process(x[i:i + n]))
            i += n
        pieces.append(stream.flush())  # also resets: the next trial is a fresh stream
        streamed = np.concatenate(pieces)
        assert streamed.dtype == np.float32 and streamed.shape == whole.shape
        np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)


def test_stream_state_stays_bounded():
    stream = StreamResampler(44100, 16000)
    rng = np.random.default_rng(5)
    produced = 0
    for _ in range(300):
        produced += stream.process(rng.standard_normal(int(rng.integers(1, 3000)))).size
        assert stream._buffer.size < 3000 + 2000  # last chunk + one row window at most
    assert produced > 0


@pytest.mark.dev
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 31, 64, 100])
@pytest.mark.parametrize("orig,target", [(48000, 16000), (44100, 16000), (8000, 16000), (16000, 48000)])
def test_short_inputs_have_scipy_lengths_and_values(n, orig, target):
    signal = pytest.importorskip("scipy.signal", reason="scipy (requirements-dev.txt); make test installs it")
    up, down = resample_factors(orig, target)
    x = np.random.default_rng(n).uniform(-1, 1, n)
    ours = resample(x, orig, target)
    assert ours.size == output_length(n, up, down) == -(-n * up // down)
    if n:
        exact = signal.resample_poly(x, up, down, window=_own_filter(up, down))
        assert ours.shape == exact.shape
        np.testing.assert_allclose(ours, exact, rtol=0, atol=2e-5)  # see _own_filter
        stream = StreamResampler(orig, target)
        streamed = np.concatenate([stream.process(x[i:i + 1]) for i in range(n)] + [stream.flush()])
        np.testing.assert_allclose(streamed, ours, rtol=0, atol=1e-6)


def test_empty_and_single_sample_inputs():
    assert resample(np.zeros(0), 44100, 16000).shape == (0,)
    assert resample(np.zeros(0), 44100, 16000).dtype == np.float32
    assert StreamResampler(48000, 16000).flush().shape == (0,)
    one = resample(np.ones(1), 48000, 16000)
    assert one.shape == (1,) and 0 < one[0] < 1  # the lone sample, low-pass filtered
    assert resample(np.ones(1), 16000, 48000).shape == (3,)


def test_equal_rates_are_the_identity():
    x = np.random.default_rng(0).standard_normal(1000)
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32 and y is not x
    np.testing.assert_array_equal(y, x.astype(np.float32))
    stream = StreamResampler(22050, 22050)
    np.testing.assert_array_equal(np.concatenate([stream.process(x[:10]), stream.process(x[10:]),
                                                  stream.flush()]), x.astype(np.float32))


def test_factors_and_invalid_arguments():
    assert resample_factors(44100, 16000) == (160, 441)
    assert resample_factors(48000, 16000) == (1, 3)
    assert resample_factors(11025, 16000) == (640, 441)
    up, down = resample_factors(9999991, 16000)  # prime rate: approximated, tiny error
    assert max(up, down) <= 1 << 16 and abs((up / down) / (16000 / 9999991) - 1) < 1e-5
    for bad in [(0, 16000), (16000, -1), (16000.0, 8000), (True, 8000), (1, 1 << 20)]:
        with pytest.raises(ValueError):
            resample_factors(*bad)
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((10, 2)), 48000, 16000)


def test_an_hour_sized_input_stays_within_bounded_memory():
    """10 minutes of 48 kHz in one call: peak memory is the signal, a padded copy,
    the output and bounded blocks, not anything proportional to filter x signal."""
    x = np.zeros(48000 * 600, dtype=np.float32)
    x[::997] = 0.5
    tracemalloc.start()
    try:
        y = resample(x, 48000, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.size == x.size // 3
    assert peak < x.nbytes + y.nbytes + (32 << 20), peak / 1e6


# --------------------------------------------------------------------------- load_audio


def test_load_audio_decodes_downmixes_and_resamples(tmp_path):
    left = sine(440.0, 0.5, 44100, 0.6)
    right = sine(1000.0, 0.5, 44100, 0.3)
    path = tmp_path / "stereo.wav"
    write_wav(path, np.stack([left, right], axis=1), 44100, sample_format="pcm24")
    native, rate = load_audio(path)
    assert rate == 44100 and native.shape == (left.size,)
    np.testing.assert_allclose(native, (left + right) / 2, atol=1e-6)
    samples, rate = load_audio(path, 16000)
    assert rate == 16000 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, np.clip(resample(read_wav(path).samples, 44100, 16000), -1, 1))
    same, rate = load_audio(str(path), 44100)
    assert rate == 44100 and np.array_equal(same, native)


def test_load_audio_keeps_the_unit_range_after_resampling():
    square = np.sign(sine(1000.0, 0.2, 48000, 1.0))  # full-scale square wave: Gibbs overshoot
    blob = wav_file(np.round(square * 32767).astype(np.int64), "pcm16", sample_rate=48000)
    raw = resample(read_wav(blob).samples, 48000, 16000)
    assert np.abs(raw).max() > 1.0  # the overshoot exists ...
    samples, _ = load_audio(blob, 16000)
    assert np.abs(samples).max() <= 1.0  # ... and load_audio keeps its promise


def test_load_audio_errors_name_the_source(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio at all")
    with pytest.raises(AudioError, match="notes.txt: not a RIFF/WAVE file"):
        load_audio(path, 16000)
    with pytest.raises(AudioError, match="^clip-7: "):
        load_audio(b"RIFF", 16000, name="clip-7")


def test_load_audio_on_real_corpus_file(ravdess_dir):
    path = sorted(ravdess_dir.glob("Actor_01/*.wav"))[0]
    samples, rate = load_audio(path, 16000)
    assert rate == 16000 and samples.ndim == 1 and samples.size > 16000
    up, _ = load_audio(path, 48000)
    assert up.size == 3 * samples.size
    back = resample(up, 48000, 16000)
    # 16 k -> 48 k -> 16 k loses only what lies between 0.9 x Nyquist and Nyquist
    edge = 200
    assert _snr_db(back[edge:-edge], samples[edge:-edge].astype(np.float64)) > 30.0
    values, _ = known_samples("pcm16", 10)
    assert load_audio(wav_file(values), None)[1] == 16000


# --------------------------------------------------------------------------- bounded plans


def test_common_rates_stay_exact_and_odd_ones_are_approximated_closely():
    from edge_ser.resample import MAX_FACTOR

    exact = {44100: (160, 441), 22050: (320, 441), 11025: (640, 441), 8000: (2, 1), 32000: (1, 2),
             48000: (1, 3), 96000: (1, 6), 88200: (80, 441), 192000: (1, 12), 384000: (1, 24)}
    for rate, factors in exact.items():
        assert resample_factors(rate, 16000) == factors
    assert MAX_FACTOR == 1024
    worst = 0.0
    for rate in [*range(4000, 384001, 997), 16001, 16199, 65521, 383999]:  # the range wav.py accepts
        up, down = resample_factors(rate, 16000)
        assert max(up, down) <= MAX_FACTOR
        worst = max(worst, abs((up / down) / (16000 / rate) - 1))
    assert worst < 5e-4  # under 1 cent of pitch
    assert resample_factors(16001, 16000) == (1, 1)


def test_plans_are_small_and_the_cache_is_bounded_by_bytes():
    """Issue 11: 200 tiny files at 16001..16200 Hz kept 16 plans of ~18 MB each."""
    from edge_ser import resample as rs

    rs._PLANS.clear()
    x = np.ones(100, dtype=np.float32)
    tracemalloc.start()
    try:
        for rate in range(16001, 16041):
            resample(x, rate, 16000)
            resample(x, 16000, rate)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rs._PLANS.nbytes <= rs.PLAN_CACHE_BYTES
    assert peak < rs.PLAN_CACHE_BYTES + (8 << 20), peak / 1e6
    for up, down in [(1021, 1024), (89, 1024), (1024, 1021)]:  # the largest plans the factor cap allows
        assert rs._Plan(up, down).nbytes < 2 << 20


def test_load_audio_holds_the_result_and_a_block_not_the_file_at_its_own_rate(tmp_path):
    path = tmp_path / "minute48k.wav"
    write_wav(path, sine(300.0, 60.0, 48000, 0.5), 48000)
    tracemalloc.start()
    try:
        samples, _ = load_audio(path, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert samples.size == 60 * 16000
    assert peak < samples.nbytes + (6 << 20), peak / 1e6  # the decoded 48 kHz clip alone is 11.5 MB
    # equal to resampling the whole clip up to float64 rounding of sums that cancel to ~0
    np.testing.assert_allclose(samples, np.clip(resample(read_wav(path).samples, 48000, 16000), -1, 1),
                               rtol=1e-6, atol=1e-12)
