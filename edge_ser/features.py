"""The one feature frontend: log-mel (and MFCC) features in NumPy.

Training, quantization, evaluation and the device all call this module, driven by a
:class:`FeatureConfig` that travels inside the model file. The pipeline has two stages:

1. **Frame stage** (:func:`frame_features`): pre-emphasis -> framing -> window -> |FFT|^p
   -> mel filterbank -> log, PCEN, or both side by side (-> DCT for MFCC). A log frame depends only on the
   samples under it; a PCEN frame also on the frames before it, through a running
   per-band smoother (causal, so a stream carries it along). Either way it runs on a
   stream (:class:`StreamingFeatures`) and gives the same frames as on the whole signal.
2. **Utterance stage** (:func:`utterance_stage`): whatever needs the whole clip:
   a reference taken from the clip (``db_ref="max"``/``"min"``), ``top_db`` clipping,
   and per-utterance normalization.

:func:`log_mel` runs both. Conventions follow librosa where it has one (periodic
windows, ``center`` padding by ``n_fft // 2``, Slaney mel scale and area-normalized
filters, ``power_to_db``), and python_speech_features for its bin-snapped filterbank,
``1/n_fft`` power normalization and end padding (``center=False``, ``pad_end=True``).
With ``center=False`` a frame is the ``win_length`` samples under the window (the
Kaldi / TFLite-Micro convention), zero-padded to ``n_fft`` for the FFT.

Only NumPy is imported: this module is on the device path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional, Union

import numpy as np

from .errors import FeatureConfigError

__all__ = [
    "FeatureConfig",
    "PRESETS",
    "preset",
    "preset_name",
    "frame_features",
    "utterance_stage",
    "normalize_utterance",
    "log_mel",
    "mel_db_config",
    "clip_features_from_mel_db",
    "mel_filterbank",
    "mel_band_centres",
    "StreamingFeatures",
    "num_frames",
    "UtteranceStats",
]

_WINDOWS = ("hann", "hamming", "rect")
_MEL_SCALES = ("slaney", "htk")
_FILTERBANKS = ("triangular", "bin_snapped")
_LOGS = ("db", "ln", "none", "pcen", "db+pcen")
#: Compressions that run PCEN (``"db+pcen"``: two blocks of columns, power dB then PCEN).
_PCEN_LOGS = ("pcen", "db+pcen")
#: Fields that shape the features only when PCEN runs: left out of :meth:`FeatureConfig.hash`
#: otherwise, so configs written before PCEN existed keep their hash (models, cache entries).
_PCEN_FIELDS = ("pcen_time_constant", "pcen_gain", "pcen_bias", "pcen_power", "pcen_eps")
_NORMALIZE = ("none", "mean_var", "min_max")
_NORM_SCOPES = ("global", "band")
_PAD_MODES = ("constant", "reflect")


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that shapes the features a model sees.

    Two configs with equal fields produce bit-identical features; :meth:`hash` is a
    stable digest of the fields, stored in the model so the device can refuse to
    feed a model features it was not trained on.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: Optional[int] = 400
    hop_length: int = 160
    window: str = "hann"
    center: bool = False
    pad_mode: str = "constant"
    pad_end: bool = False
    preemphasis: float = 0.0
    spectrum_norm: str = "none"  # "none" or "n_fft" (python_speech_features' 1/NFFT)
    power: float = 2.0  # 1.0 magnitude, 2.0 power
    n_mels: int = 64
    fmin: float = 0.0
    fmax: Optional[float] = None
    mel_scale: str = "slaney"
    mel_norm: Optional[str] = "slaney"  # area normalization of each triangle, or None
    filterbank: str = "triangular"  # librosa-style, or "bin_snapped" (python_speech_features)
    # "db", "ln", "none", "pcen" (per-channel energy normalization, below) or "db+pcen": both
    # compressions of the same mel energies side by side, n_mels dB columns then n_mels PCEN
    # columns, each block normalized on its own (a model, or each member of an ensemble, hears
    # the view it was trained on: the two fail differently in rooms).
    log: str = "db"
    db_factor: float = 10.0  # 10 for power_to_db, 20 for amplitude_to_db on magnitudes
    db_ref: Union[float, str] = 1.0  # a number, or "max"/"min" of the clip (utterance stage)
    amin: float = 1e-10
    top_db: Optional[float] = None
    n_mfcc: int = 0  # 0: log-mel output; > 0: DCT-II (ortho) cepstra
    mfcc_lifter: int = 0
    mfcc_energy: bool = False  # replace c0 with the log frame energy (python_speech_features)
    normalize: str = "none"  # per-utterance: "none", "mean_var" or "min_max"
    normalize_scope: str = "global"  # "global" (one mean/std per clip) or "band"
    normalize_eps: float = 1e-5
    # PCEN (log="pcen"): each mel band divided by a running average of itself raised to
    # ``pcen_gain`` (automatic gain control: stationary noise and reverberant tails flatten
    # out, onsets stand out), then root-compressed: (E / (eps + M)^gain + bias)^power - bias^power,
    # M a first-order smoother with this time constant, starting at the first frame.
    pcen_time_constant: float = 0.4  # seconds
    pcen_gain: float = 0.98
    pcen_bias: float = 2.0
    pcen_power: float = 0.5
    pcen_eps: float = 1e-10

    def __post_init__(self) -> None:
        self.validate()

    # -- validation -----------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`FeatureConfigError` naming the first field that is wrong."""

        def bad(field: str, why: str) -> None:
            raise FeatureConfigError(f"feature config: {field}={getattr(self, field)!r}: {why}")

        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            bad("sample_rate", "must be a positive integer")
        if not isinstance(self.n_fft, int) or self.n_fft < 2:
            bad("n_fft", "must be an integer >= 2")
        if self.win_length is not None and not (0 < self.win_length <= self.n_fft):
            bad("win_length", "must be in 1..n_fft")
        if not isinstance(self.hop_length, int) or self.hop_length <= 0:
            bad("hop_length", "must be a positive integer")
        if self.window not in _WINDOWS:
            bad("window", f"must be one of {_WINDOWS}")
        if self.pad_mode not in _PAD_MODES:
            bad("pad_mode", f"must be one of {_PAD_MODES}")
        if self.center and self.pad_end:
            bad("pad_end", "only applies with center=False")
        if not 0.0 <= self.preemphasis < 1.0:
            bad("preemphasis", "must be in [0, 1)")
        if self.spectrum_norm not in ("none", "n_fft"):
            bad("spectrum_norm", "must be 'none' or 'n_fft'")
        if self.power <= 0:
            bad("power", "must be > 0")
        if not isinstance(self.n_mels, int) or self.n_mels <= 0:
            bad("n_mels", "must be a positive integer")
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.fmin < self.fmax_hz:
            bad("fmin", "must be >= 0 and below fmax")
        if self.fmax is not None and self.fmax > nyquist:
            bad("fmax", f"must not exceed the Nyquist frequency {nyquist:g} Hz")
        if self.mel_scale not in _MEL_SCALES:
            bad("mel_scale", f"must be one of {_MEL_SCALES}")
        if self.mel_norm not in (None, "slaney"):
            bad("mel_norm", "must be None or 'slaney'")
        if self.filterbank not in _FILTERBANKS:
            bad("filterbank", f"must be one of {_FILTERBANKS}")
        if self.log not in _LOGS:
            bad("log", f"must be one of {_LOGS}")
        if isinstance(self.db_ref, str):
            if self.db_ref not in ("max", "min"):
                bad("db_ref", "must be a positive number, 'max' or 'min'")
        elif not self.db_ref > 0:
            bad("db_ref", "must be a positive number, 'max' or 'min'")
        if not self.amin > 0:
            bad("amin", "must be > 0")
        if self.top_db is not None and not self.top_db >= 0:
            bad("top_db", "must be >= 0 or None")
        if self.n_mfcc < 0 or self.n_mfcc > self.n_mels:
            bad("n_mfcc", "must be in 0..n_mels")
        if self.n_mfcc and self.log == "none":
            bad("n_mfcc", "MFCC needs a log (log='db' or 'ln')")
        if self.normalize not in _NORMALIZE:
            bad("normalize", f"must be one of {_NORMALIZE}")
        if self.normalize_scope not in _NORM_SCOPES:
            bad("normalize_scope", f"must be one of {_NORM_SCOPES}")
        if self.log == "db+pcen":
            # the clip-level dB steps and min-max would need per-block extremes: not built
            if isinstance(self.db_ref, str):
                bad("db_ref", "must be a number with log='db+pcen'")
            if self.top_db is not None:
                bad("top_db", "must be None with log='db+pcen'")
            if self.normalize == "min_max":
                bad("normalize", "must be 'none' or 'mean_var' with log='db+pcen'")
        if self.log in _PCEN_LOGS:
            if self.n_mfcc:
                bad("n_mfcc", "MFCC needs a log (log='db' or 'ln'), not PCEN")
            if not self.pcen_time_constant > 0:
                bad("pcen_time_constant", "must be > 0 seconds")
            if not 0.0 <= self.pcen_gain <= 1.0:
                bad("pcen_gain", "must be in [0, 1]")
            if not self.pcen_bias > 0:
                bad("pcen_bias", "must be > 0")
            if not 0.0 < self.pcen_power <= 1.0:
                bad("pcen_power", "must be in (0, 1]")
            if not self.pcen_eps > 0:
                bad("pcen_eps", "must be > 0")

    # -- derived values -------------------------------------------------------------
    @property
    def frame_length(self) -> int:
        """Samples under the window (``win_length``, or ``n_fft`` when unset)."""
        return self.win_length if self.win_length is not None else self.n_fft

    @property
    def fmax_hz(self) -> float:
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2

    @property
    def n_blocks(self) -> int:
        """Blocks of ``n_mels`` columns side by side: 2 for ``log="db+pcen"``, else 1."""
        return 2 if self.log == "db+pcen" else 1

    @property
    def n_features(self) -> int:
        """Columns of the feature matrix."""
        return self.n_mfcc if self.n_mfcc else self.n_mels * self.n_blocks

    def blocks(self) -> "list[FeatureConfig]":
        """One single-block config per block, in column order (``[self]`` for one block).

        Block ``i`` occupies columns ``i * n_mels`` to ``(i + 1) * n_mels`` and equals, bit
        for bit, what its config computes alone: how an ensemble hands each member its view.
        """
        if self.log == "db+pcen":
            return [self.replace(log="db"), self.replace(log="pcen")]
        return [self]

    def block_columns(self) -> "list[slice]":
        """The columns of each block (:meth:`blocks`), in order: per-block statistics and views."""
        width = self.n_features // self.n_blocks
        return [slice(i * width, (i + 1) * width) for i in range(self.n_blocks)]

    @property
    def kind(self) -> str:
        """What the columns are, in a word or two: ``MFCC``, ``PCEN mel`` or ``log-mel``."""
        if self.n_mfcc:
            return "MFCC"
        return {"pcen": "PCEN mel", "db+pcen": "log-mel + PCEN mel"}.get(self.log, "log-mel")

    @property
    def frame_local(self) -> bool:
        """True when the utterance stage is the identity (streaming equals batch)."""
        return self.normalize == "none" and self.top_db is None and not isinstance(self.db_ref, str)

    def seconds_to_frames(self, seconds: float) -> int:
        return int(round(seconds * self.sample_rate / self.hop_length))

    # -- serialization --------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "FeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureConfigError(f"feature config: unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FeatureConfigError(f"feature config: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise FeatureConfigError("feature config: JSON must be an object")
        return cls.from_dict(data)

    @property
    def pcen_smoothing(self) -> float:
        """The PCEN smoother's weight of a new frame, from its time constant in frames.

        The coefficient whose one-pole smoother has the given time constant (the same
        formula librosa's ``pcen`` uses), so the parameter means the same in both.
        """
        t_frames = self.pcen_time_constant * self.sample_rate / self.hop_length
        return float((np.sqrt(1.0 + 4.0 * t_frames ** 2) - 1.0) / (2.0 * t_frames ** 2))

    def hash(self) -> str:
        """Stable content hash (first 16 hex digits of SHA-256 over canonical JSON).

        The PCEN parameters count only when PCEN runs: they change nothing else,
        and leaving them out keeps the hashes of the configs written before them.
        """
        canonical = {k: _canonical(v) for k, v in self.to_dict().items()
                     if self.log in _PCEN_LOGS or k not in _PCEN_FIELDS}
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def replace(self, **changes: Any) -> "FeatureConfig":
        return dataclasses.replace(self, **changes)


def _canonical(value: Any) -> Any:
    """Make ints and floats that are equal hash equally (``16000`` vs ``16000.0``)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(float(value))
    return value


#: Named configurations. ``edge`` is what the shipped model uses.
PRESETS: Dict[str, FeatureConfig] = {
    # 25 ms Hann windows every 10 ms, 64 Slaney mels up to 8 kHz, power in dB,
    # per-utterance mean/variance normalization over the whole clip (gain invariant,
    # keeps the spectral tilt that carries arousal).
    "edge": FeatureConfig(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, window="hann",
        center=False, n_mels=64, fmin=50.0, fmax=8000.0, power=2.0, log="db",
        amin=1e-10, normalize="mean_var", normalize_scope="global",
    ),
    # The edge preset with PCEN in place of the log (librosa's / Wang et al.'s defaults: 0.4 s
    # smoother, gain 0.98, bias 2, root 1/2), its floor at the edge preset's amin (-100 dB) so
    # quiet, distant speech is never cut; per-utterance mean/variance normalization as in edge.
    "edge-pcen": FeatureConfig(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, window="hann",
        center=False, n_mels=64, fmin=50.0, fmax=8000.0, power=2.0, log="pcen",
        amin=1e-10, normalize="mean_var", normalize_scope="global",
    ),
    # edge and edge-pcen side by side from one mel spectrogram (128 columns: 64 dB, then 64
    # PCEN), each block normalized as its preset does: equal, column for column, to the two
    # presets' features (the input of a log-mel + PCEN ensemble).
    "edge-db-pcen": FeatureConfig(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, window="hann",
        center=False, n_mels=64, fmin=50.0, fmax=8000.0, power=2.0, log="db+pcen",
        amin=1e-10, normalize="mean_var", normalize_scope="global",
    ),
    # librosa.feature.melspectrogram(sr=16000) defaults + power_to_db(ref=1.0, top_db=80).
    "librosa": FeatureConfig(
        sample_rate=16000, n_fft=2048, win_length=None, hop_length=512, window="hann",
        center=True, pad_mode="constant", n_mels=128, power=2.0, log="db",
        db_ref=1.0, amin=1e-10, top_db=80.0,
    ),
    # python_speech_features.logfbank with its defaults at 16 kHz.
    "psf": FeatureConfig(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, window="rect",
        center=False, pad_end=True, preemphasis=0.97, spectrum_norm="n_fft", power=2.0,
        n_mels=26, mel_scale="htk", mel_norm=None, filterbank="bin_snapped", log="ln",
        amin=float(np.finfo(float).eps),
    ),
    # python_speech_features.mfcc with its defaults at 16 kHz.
    "psf_mfcc": FeatureConfig(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, window="rect",
        center=False, pad_end=True, preemphasis=0.97, spectrum_norm="n_fft", power=2.0,
        n_mels=26, mel_scale="htk", mel_norm=None, filterbank="bin_snapped", log="ln",
        amin=float(np.finfo(float).eps), n_mfcc=13, mfcc_lifter=22, mfcc_energy=True,
    ),
    # The ancestor's recipe: librosa mel of the magnitude spectrogram (16 kHz, n_fft 2048,
    # hop 512, 128 mels), amplitude_to_db(ref=np.min), per-clip min-max scaling.
    # Notebook-era librosa (< 0.10) padded with "reflect" when centering.
    "seed": FeatureConfig(
        sample_rate=16000, n_fft=2048, win_length=None, hop_length=512, window="hann",
        center=True, pad_mode="reflect", n_mels=128, power=1.0, log="db", db_factor=20.0,
        db_ref="min", amin=1e-5, top_db=80.0, normalize="min_max",
    ),
}


def preset_name(config: FeatureConfig) -> Optional[str]:
    """The :data:`PRESETS` name of ``config``, or None for a config of its own."""
    return next((name for name, known in PRESETS.items() if known == config), None)


def preset(name: str) -> FeatureConfig:
    """Return a named :data:`PRESETS` entry, with a clear error for unknown names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise FeatureConfigError(
            f"unknown feature preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None


# ---------------------------------------------------------------------------------------
# Building blocks (cached per config: they depend on the config only)


def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    linear = hz / f_sp
    log_part = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, linear)


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    linear = mel * f_sp
    log_part = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, linear)


def mel_band_centres(config: FeatureConfig) -> np.ndarray:
    """The centre frequency in Hz of each of ``config``'s mel bands, lowest first.

    The peaks of the triangles :func:`mel_filterbank` builds: equally spaced in mel between
    ``fmin`` and ``fmax``. Training uses them to move a spectrogram along its frequency axis
    by a factor in Hz (a vocal-tract-length perturbation) without recomputing features.
    """
    return _mel_edges_hz(config)[1:-1]


def _mel_edges_hz(config: FeatureConfig) -> np.ndarray:
    """``n_mels + 2`` frequencies equally spaced in mel from ``fmin`` to ``fmax``: each band's
    lower corner, peak and upper corner are three neighbours."""
    edges_mel = np.linspace(
        _hz_to_mel(config.fmin, config.mel_scale),
        _hz_to_mel(config.fmax_hz, config.mel_scale),
        config.n_mels + 2,
    )
    return _mel_to_hz(edges_mel, config.mel_scale)


def _triangular_filterbank(config: FeatureConfig) -> np.ndarray:
    """Triangles on a continuous frequency axis, peaks equally spaced in mel."""
    n_bins = config.n_fft // 2 + 1
    bin_hz = np.linspace(0.0, config.sample_rate / 2, n_bins)
    edges_hz = _mel_edges_hz(config)
    widths = np.diff(edges_hz)
    # distance of every FFT bin from every edge: (n_mels + 2, n_bins)
    offsets = edges_hz[:, None] - bin_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if config.mel_norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


def _bin_snapped_filterbank(config: FeatureConfig) -> np.ndarray:
    """Triangles whose corners are snapped to FFT bins (the classic HTK/psf recipe)."""
    n_bins = config.n_fft // 2 + 1
    edges_hz = _mel_edges_hz(config)
    corners = np.floor((config.n_fft + 1) * edges_hz / config.sample_rate).astype(np.int64)
    weights = np.zeros((config.n_mels, n_bins))
    k = np.arange(n_bins)
    for m in range(config.n_mels):
        lo, peak, hi = corners[m], corners[m + 1], corners[m + 2]
        if peak > lo:
            up = (k >= lo) & (k < peak)
            weights[m, up] = (k[up] - lo) / (peak - lo)
        if hi > peak:
            down = (k >= peak) & (k < hi)
            weights[m, down] = (hi - k[down]) / (hi - peak)
    if config.mel_norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


@lru_cache(maxsize=32)
def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Filterbank matrix ``(n_bins, n_mels)`` float32, ready for ``spectrum @ fb``."""
    if config.filterbank == "bin_snapped":
        weights = _bin_snapped_filterbank(config)
    else:
        weights = _triangular_filterbank(config)
    out = np.ascontiguousarray(weights.T, dtype=np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=32)
def _analysis_window(config: FeatureConfig) -> np.ndarray:
    """Periodic window over the frame (``win_length`` samples)."""
    n = config.frame_length
    phase = 2.0 * np.pi * np.arange(n) / n
    if config.window == "hann":
        w = 0.5 - 0.5 * np.cos(phase)
    elif config.window == "hamming":
        w = 0.54 - 0.46 * np.cos(phase)
    else:
        w = np.ones(n)
    out = w.astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=32)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix ``(n_in, n_out)``."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[:, 0] = np.sqrt(1.0 / n_in)
    out = basis.astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=32)
def _lifter(n_ceps: int, lifter: int) -> np.ndarray:
    lift = 1.0 + (lifter / 2.0) * np.sin(np.pi * np.arange(n_ceps) / lifter)
    return lift.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Frame stage


def _frame_offset(config: FeatureConfig) -> int:
    """Where the window starts inside an ``n_fft`` frame when centering (librosa)."""
    return (config.n_fft - config.frame_length) // 2 if config.center else 0


def num_frames(n_samples: int, config: FeatureConfig) -> int:
    """Number of frames :func:`frame_features` returns for ``n_samples`` samples."""
    if config.center:
        return 1 + (n_samples + 2 * (config.n_fft // 2) - config.n_fft) // config.hop_length
    if n_samples < config.frame_length:
        return 1 if (config.pad_end and n_samples > 0) else 0
    full = 1 + (n_samples - config.frame_length) // config.hop_length
    if config.pad_end:
        return 1 + -(-(n_samples - config.frame_length) // config.hop_length)
    return full


def _preemphasize(signal: np.ndarray, coeff: float, previous: float = 0.0) -> np.ndarray:
    """``y[n] = x[n] - coeff * x[n-1]``; the first sample sees ``previous``.

    python_speech_features keeps the first sample as is, which is the same as a
    ``previous`` of 0.
    """
    out = np.empty_like(signal)
    if signal.size:
        # float32 scalars throughout, as the array expression below computes: a Python
        # float would make this one sample float64 (NumPy 1.x) and differ in the last bit
        out[0] = np.float32(signal[0]) - np.float32(coeff) * np.float32(previous)
        out[1:] = signal[1:] - coeff * signal[:-1]
    return out


@lru_cache(maxsize=32)
def _mel_filterbank64(config: FeatureConfig) -> np.ndarray:
    """:func:`mel_filterbank` as float64, for :func:`_rowwise_product`."""
    out = mel_filterbank(config).astype(np.float64)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=32)
def _dct_matrix64(n_in: int, n_out: int) -> np.ndarray:
    out = _dct_matrix(n_in, n_out).astype(np.float64)
    out.setflags(write=False)
    return out


def _rowwise_product(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix`` as float32, the same for a row whatever rows come with it.

    A float32 BLAS product rounds a row differently depending on how many rows are
    multiplied at once (kernels for the tail rows accumulate in another order), so
    frames computed a chunk at a time differed from the whole clip's in the last bit,
    and an int8 model's input could tip over a quantization step. Accumulating in
    float64 and rounding once to float32 makes every row's result independent of the
    batch (the float64 differences, relative 1e-16 for these non-negative weights, are
    far below float32's resolution): streaming and batch features are bit-identical
    but in the rarest ties. The values are the same product as before, to float32
    rounding.
    """
    return (x.astype(np.float64) @ matrix).astype(np.float32)


def _rowwise_sequential_product(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix`` (float32) summed term by term in a fixed order: exactly the same
    for a row whatever rows come with it, even where terms cancel (the DCT of a flat
    spectrum is zeros but for rounding, and the float64 BLAS rounding differs by row
    position there). One NumPy operation per input column: for small matrices only."""
    acc = np.zeros((x.shape[0], matrix.shape[1]), dtype=np.float64)
    for j in range(matrix.shape[0]):
        acc += x[:, j, None].astype(np.float64) * matrix[j]
    return acc.astype(np.float32)


class PcenState:
    """What PCEN carries from one frame to the next: the running per-band smoother.

    A whole signal starts with a fresh state; a stream keeps one across its chunks, so
    its frames equal the whole signal's.
    """

    def __init__(self) -> None:
        self.smooth: Optional[np.ndarray] = None  # (n_mels,) float64, after the last frame


def _pcen(mel: np.ndarray, config: FeatureConfig, state: PcenState) -> np.ndarray:
    """Per-channel energy normalization of mel energies ``(n, n_mels)``, continuing ``state``.

    M[t] = (1 - s) M[t-1] + s E[t], starting from M[0] = E[0] (as if the first frame had
    lasted forever), then ((E / (eps + M)^gain + bias)^power - bias^power, written with
    log1p/expm1 so small ratios keep their precision. The smoother runs frame by frame in
    float64: the same operations whatever the chunking, so streamed frames are identical.
    """
    energy = mel.astype(np.float64)
    s = config.pcen_smoothing
    smooth = np.empty_like(energy)
    m = energy[0].copy() if state.smooth is None else state.smooth.copy()
    keep, incoming = 1.0 - s, s * energy
    for t in range(energy.shape[0]):
        np.multiply(m, keep, out=m)
        np.add(m, incoming[t], out=m)
        smooth[t] = m
    state.smooth = m
    ratio = energy * (config.pcen_eps + smooth) ** -config.pcen_gain
    bias, power = config.pcen_bias, config.pcen_power
    return (bias ** power * np.expm1(power * np.log1p(ratio / bias))).astype(np.float32)


def _power_db(mel: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``db_factor * log10(max(mel, amin) / ref)`` in float32 (a clip reference comes later)."""
    ref = config.db_ref if not isinstance(config.db_ref, str) else 1.0
    factor = np.float32(config.db_factor)
    feats = factor * np.log10(np.maximum(mel, np.float32(config.amin)))
    feats -= factor * np.float32(np.log10(max(config.amin, ref)))
    return feats


def _mel_to_frames(mel: np.ndarray, config: FeatureConfig, pcen: Optional[PcenState] = None) -> np.ndarray:
    """Mel energies ``(n, n_mels)`` -> the frame stage's log, PCEN or both (before any DCT).

    ``pcen`` is the state a stream carries (when PCEN runs); ``None`` starts afresh.
    """
    if config.log == "db":
        return _power_db(mel, config)
    if config.log == "ln":
        return np.log(np.maximum(mel, np.float32(config.amin)))
    if config.log == "pcen":
        return _pcen(mel, config, pcen if pcen is not None else PcenState())
    if config.log == "db+pcen":
        return np.concatenate([_power_db(mel, config),
                               _pcen(mel, config, pcen if pcen is not None else PcenState())], axis=1)
    return mel


def _frames_to_features(frames: np.ndarray, config: FeatureConfig,
                        pcen: Optional[PcenState] = None) -> np.ndarray:
    """``(n, frame_length)`` windowed-or-not samples -> ``(n, n_features)`` float32.

    ``pcen`` is the state a stream carries (when PCEN runs); ``None`` starts afresh.
    """
    if frames.shape[0] == 0:
        return np.zeros((0, config.n_features), dtype=np.float32)
    windowed = frames * _analysis_window(config)
    spectrum = np.fft.rfft(windowed, n=config.n_fft, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    if config.power != 2.0:
        power = np.sqrt(power) if config.power == 1.0 else power ** np.float32(config.power / 2.0)
    if config.spectrum_norm == "n_fft":
        power *= np.float32(1.0 / config.n_fft)
    mel = _rowwise_product(power, _mel_filterbank64(config))
    feats = _mel_to_frames(mel, config, pcen)
    if config.n_mfcc:
        feats = _rowwise_sequential_product(feats, _dct_matrix64(config.n_mels, config.n_mfcc))
        if config.mfcc_lifter:
            feats = feats * _lifter(config.n_mfcc, config.mfcc_lifter)
        if config.mfcc_energy:
            energy = power.sum(axis=1)
            feats[:, 0] = np.log(np.maximum(energy, np.float32(config.amin)))
    return np.ascontiguousarray(feats, dtype=np.float32)


def _as_signal(signal: np.ndarray) -> np.ndarray:
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {signal.shape}")
    return signal.astype(np.float32, copy=False)


def frame_features(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Frame stage on a whole mono signal at ``config.sample_rate``: ``(frames, n_features)``."""
    x = _as_signal(signal)
    if config.preemphasis:
        x = _preemphasize(x, np.float32(config.preemphasis))
    n = x.size
    n_out = num_frames(n, config)
    if n_out <= 0:
        return np.zeros((0, config.n_features), dtype=np.float32)
    if config.center:
        half = config.n_fft // 2
        if config.pad_mode == "reflect" and n > half:
            x = np.pad(x, half, mode="reflect")
        else:
            # librosa falls back to zeros too when the clip is too short to reflect
            x = np.pad(x, half, mode="constant")
        start = _frame_offset(config)
        x = x[start:]
    needed = (n_out - 1) * config.hop_length + config.frame_length
    if x.size < needed:
        x = np.pad(x, (0, needed - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x[:needed], config.frame_length)[:: config.hop_length]
    return _frames_to_features(frames, config)


# ---------------------------------------------------------------------------------------
# Utterance stage


def utterance_stage(frames: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Clip-level steps: clip reference, ``top_db`` and per-utterance normalization.

    An empty or constant clip (silence) is valid: normalization then yields zeros
    instead of dividing by zero.
    """
    feats = np.array(frames, dtype=np.float32, copy=True)
    if feats.shape[0] == 0:
        return feats
    if config.log == "db" and not config.n_mfcc:
        if isinstance(config.db_ref, str):
            # The reference is a value of the spectrogram (librosa's ref=np.max/np.min),
            # floored at amin like every other value.
            ref_db = feats.max() if config.db_ref == "max" else feats.min()
            feats -= ref_db
        if config.top_db is not None:
            np.maximum(feats, feats.max() - np.float32(config.top_db), out=feats)
    return normalize_utterance(feats, config)


def normalize_utterance(feats: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The utterance stage's last step alone: per-utterance normalization of ``feats`` as one clip.

    Why it stands alone: training shortens some crops to the length of a short utterance, and
    the device normalizes a short utterance over itself, not over the longer recording it was
    cut from. Both normalizations are affine per block (``mean_var``, ``min_max``), so applying
    this to a stretch of *already normalized* features gives that stretch's own normalization
    (up to ``normalize_eps``): training can cut its cached features and still hear a short clip
    the way the device computes it. (A clip reference or ``top_db`` is not redone; no shipped
    preset uses them.)
    """
    feats = np.asarray(feats, dtype=np.float32)
    if feats.shape[0] == 0:
        return feats
    if config.normalize == "mean_var":
        axis = 0 if config.normalize_scope == "band" else None
        parts = []
        for block in config.block_columns():  # global statistics are per block
            # one block at a time, contiguous, so each equals its single-block config's result
            part = np.ascontiguousarray(feats[:, block])
            # Statistics in float64: a float32 mean of a constant clip (silence) is off by
            # rounding, and dividing that by normalize_eps blew it up to a nonzero constant.
            mean = part.mean(axis=axis, keepdims=True, dtype=np.float64)
            std = part.std(axis=axis, keepdims=True, dtype=np.float64)
            parts.append(((part - mean) / np.maximum(std, config.normalize_eps)).astype(np.float32))
        feats = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    elif config.normalize == "min_max":
        axis = 0 if config.normalize_scope == "band" else None
        lo = feats.min(axis=axis, keepdims=True)
        span = feats.max(axis=axis, keepdims=True) - lo
        feats = (feats - lo) / np.maximum(span, np.float32(config.normalize_eps))
    return feats.astype(np.float32, copy=False)


def log_mel(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features of a whole clip: frame stage then utterance stage. ``(frames, n_features)``."""
    return utterance_stage(frame_features(signal, config), config)


def mel_db_config(config: FeatureConfig) -> FeatureConfig:
    """``config``'s frame stage stopped at the mel spectrogram, in dB and unnormalized.

    What training keeps of a clip to compute a stretch of it as the device computes a clip of
    that stretch alone (:func:`clip_features_from_mel_db`): the mel spectrogram of a frame
    depends only on the samples under it, while PCEN and the utterance stage depend on where
    the clip starts and ends. dB, not energies, so it keeps its precision in float16.
    """
    return config.replace(log="db", db_factor=10.0, db_ref=1.0, top_db=None, n_mfcc=0, mfcc_lifter=0,
                          mfcc_energy=False, normalize="none")


def clip_features_from_mel_db(mel_db: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The features of a clip from its mel spectrogram in dB (:func:`mel_db_config`'s frames).

    The device's own steps after the mel filterbank, with a fresh PCEN smoother, then the
    utterance stage: for a stretch of a longer clip's ``mel_db`` rows this is what
    :func:`log_mel` gives for the audio of that stretch alone (to float rounding; a band
    below ``amin``, digital silence, comes back at ``amin``) when a frame depends only on the
    samples under it: ``center=False`` and no pre-emphasis, as in the edge presets. Why: the daemon classifies
    utterances from 0.4 s on, and a short utterance is scaled and PCEN-smoothed from its own
    first frame, not from the longer recording training cut it from.
    """
    if config.n_mfcc:
        raise ValueError("clip_features_from_mel_db computes mel features, not MFCC")
    mel_db = np.asarray(mel_db, dtype=np.float32)
    mel = np.power(np.float32(10.0), mel_db / np.float32(10.0)).astype(np.float32)
    return utterance_stage(_mel_to_frames(mel, config), config)


# ---------------------------------------------------------------------------------------
# Streaming


class StreamingFeatures:
    """Frame stage on a stream: feed chunks of any size, get the newly completed frames.

    Concatenating everything :meth:`push` and :meth:`flush` return equals
    :func:`frame_features` on the concatenated audio. Apply :func:`utterance_stage`
    to a stretch of frames when the config needs it (``config.frame_local`` is False).
    Memory is bounded by one frame of pending samples (and, for PCEN, one smoother vector).
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._pending = np.zeros(0, dtype=np.float32)
        self._started = False
        self._head = np.zeros(0, dtype=np.float32)  # first samples, for reflect padding
        self._last_sample = np.float32(0.0)
        self._recent = np.zeros(0, dtype=np.float32)  # last n_fft input samples, for reflect at the end
        self._consumed = 0  # input samples seen
        self._emitted = 0  # frames returned
        self._pcen = PcenState()  # the running smoother of log="pcen", carried across chunks

    @property
    def frames_emitted(self) -> int:
        return self._emitted

    def _take_frames(self, buffer: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
        cfg = self.config
        length, hop = cfg.frame_length, cfg.hop_length
        if buffer.size < length:
            return np.zeros((0, cfg.n_features), dtype=np.float32), buffer
        n = 1 + (buffer.size - length) // hop
        frames = np.lib.stride_tricks.sliding_window_view(buffer[: (n - 1) * hop + length], length)[::hop]
        out = _frames_to_features(frames, cfg, self._pcen)
        return out, buffer[n * hop:]

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; return the frames they complete, ``(k, n_features)`` float32."""
        cfg = self.config
        x = _as_signal(chunk)
        if cfg.preemphasis and x.size:
            prev = self._last_sample
            self._last_sample = x[-1]
            x = _preemphasize(x, np.float32(cfg.preemphasis), float(prev))
        self._consumed += x.size
        if cfg.center and cfg.pad_mode == "reflect":
            self._recent = np.concatenate([self._recent, x])[-(cfg.n_fft // 2 + 1):]
        if cfg.center and not self._started:
            half = cfg.n_fft // 2
            self._head = np.concatenate([self._head, x])
            if cfg.pad_mode == "reflect" and self._head.size <= half:
                return np.zeros((0, cfg.n_features), dtype=np.float32)
            if cfg.pad_mode == "reflect":
                left = self._head[1: half + 1][::-1]
            else:
                left = np.zeros(half, dtype=np.float32)
            x = np.concatenate([left, self._head])[_frame_offset(cfg):]
            self._head = np.zeros(0, dtype=np.float32)
            self._started = True
        elif not cfg.center:
            self._started = True
        buffer = np.concatenate([self._pending, x]) if self._pending.size else x
        out, self._pending = self._take_frames(buffer)
        self._emitted += out.shape[0]
        return out

    def flush(self) -> np.ndarray:
        """End of stream: return the frames that need the end padding, then reset."""
        cfg = self.config
        total = num_frames(self._consumed, cfg)
        missing = total - self._emitted
        out = np.zeros((0, cfg.n_features), dtype=np.float32)
        if missing > 0:
            if cfg.center and not self._started:
                # too short to have started (reflect): the batch path handles it exactly
                head = self._head  # already pre-emphasized
                self.reset()
                return frame_features(head, cfg.replace(preemphasis=0.0))
            tail = self._pending
            if cfg.center:
                half = cfg.n_fft // 2
                if cfg.pad_mode == "reflect" and self._consumed > half:
                    right = self._recent[-half - 1: -1][::-1]
                else:
                    right = np.zeros(half, dtype=np.float32)
                tail = np.concatenate([tail, right])
            needed = (missing - 1) * cfg.hop_length + cfg.frame_length
            if tail.size < needed:
                tail = np.pad(tail, (0, needed - tail.size))
            frames = np.lib.stride_tricks.sliding_window_view(tail[:needed], cfg.frame_length)[:: cfg.hop_length]
            out = _frames_to_features(frames, cfg, self._pcen)
        self.reset()
        return out

    def reset(self) -> None:
        self.__init__(self.config)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------
# Utterance stage over passes (bounded memory)


class UtteranceStats:
    """:func:`utterance_stage` for a clip too long to hold: statistics first, then apply.

    Feed the clip's frame-stage frames (chunk by chunk, in order) with :meth:`update`
    and close each pass with :meth:`end_pass`, as many passes as :attr:`done` asks for
    (one, or two when ``mean_var`` follows a clip reference or ``top_db``: those
    change the values the moments are taken of). Then :meth:`apply` to each chunk of a
    last pass gives exactly the rows :func:`utterance_stage` gives on the whole matrix:

    * clip extremes (``db_ref="max"/"min"``, ``top_db``, ``min_max``) are gathered per
      band and are exact, because the steps before them are monotone;
    * ``mean_var`` moments are merged chunk by chunk in float64 (Chan et al.), equal to
      NumPy's whole-matrix mean and standard deviation within float64 rounding, which
      the cast back to float32 absorbs.

    Memory is a few vectors of ``n_features``, whatever the clip's length.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        cfg = config
        self._uses_db_steps = cfg.log == "db" and not cfg.n_mfcc
        self._needs_extremes = cfg.normalize == "min_max" or (
            self._uses_db_steps and (isinstance(cfg.db_ref, str) or cfg.top_db is not None))
        self._needs_moments = cfg.normalize == "mean_var"
        # moments need the transformed values, known once the extremes are
        self._moments_in_pass = 0 if not (self._uses_db_steps and (isinstance(cfg.db_ref, str)
                                                                   or cfg.top_db is not None)) else 1
        self.passes_done = 0
        self.frames = 0
        n = cfg.n_features
        self._lo = np.full(n, np.inf, dtype=np.float32)
        self._hi = np.full(n, -np.inf, dtype=np.float32)
        band = cfg.normalize_scope == "band"
        shape = (1, n) if band else (1, cfg.n_blocks)
        self._count = 0
        self._mean = np.zeros(shape, dtype=np.float64)
        self._m2 = np.zeros(shape, dtype=np.float64)
        self._ref = np.float32(0.0)
        self._floor: Optional[np.float32] = None

    @property
    def done(self) -> bool:
        """True once every statistic :meth:`apply` needs has been gathered."""
        if self.config.frame_local:
            return True
        if self._needs_moments:
            return self.passes_done > self._moments_in_pass
        return self.passes_done >= 1

    def update(self, frames: np.ndarray) -> None:
        """Account for the next chunk of frame-stage frames ``(k, n_features)``."""
        feats = np.asarray(frames, dtype=np.float32)
        if feats.shape[0] == 0:
            return
        if self.passes_done == 0:
            self.frames += feats.shape[0]
            if self._needs_extremes:
                np.minimum(self._lo, feats.min(axis=0), out=self._lo)
                np.maximum(self._hi, feats.max(axis=0), out=self._hi)
        if self._needs_moments and self.passes_done == self._moments_in_pass:
            self._add_moments(self._db_steps(feats))

    def _add_moments(self, feats: np.ndarray) -> None:
        if self.config.normalize_scope == "band":
            n = feats.shape[0]
            mean = feats.mean(axis=0, keepdims=True, dtype=np.float64)
            m2 = np.square(feats - mean).sum(axis=0, keepdims=True, dtype=np.float64)
        else:  # one mean and spread per block (each as its single-block config takes them)
            blocks = [np.ascontiguousarray(feats[:, cols]) for cols in self.config.block_columns()]
            n = blocks[0].size
            means = [b.mean(keepdims=True, dtype=np.float64) for b in blocks]
            m2s = [np.square(b - m).sum(keepdims=True, dtype=np.float64) for b, m in zip(blocks, means)]
            mean, m2 = np.concatenate(means, axis=1), np.concatenate(m2s, axis=1)
        total = self._count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta * delta * (self._count * n / total)
        self._count = total

    def end_pass(self) -> None:
        """The current pass has seen every frame of the clip."""
        if self.passes_done == 0 and self._uses_db_steps and self.frames:
            cfg = self.config
            if isinstance(cfg.db_ref, str):
                self._ref = self._hi.max() if cfg.db_ref == "max" else self._lo.min()
            if cfg.top_db is not None:
                top = self._hi.max()
                if isinstance(cfg.db_ref, str):
                    top = np.float32(top - self._ref)
                self._floor = np.float32(top - np.float32(cfg.top_db))
        self.passes_done += 1

    def _db_steps(self, feats: np.ndarray) -> np.ndarray:
        """Clip reference and ``top_db``, as :func:`utterance_stage` does them (float32)."""
        if not self._uses_db_steps:
            return feats
        cfg = self.config
        if isinstance(cfg.db_ref, str):
            feats = feats - self._ref
        if cfg.top_db is not None and self._floor is not None:
            feats = np.maximum(feats, self._floor)
        return feats

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """The utterance stage of these frames, with the whole clip's statistics."""
        if not self.done:
            raise RuntimeError("UtteranceStats.apply before the statistics are complete")
        cfg = self.config
        feats = np.array(frames, dtype=np.float32, copy=True)
        if feats.shape[0] == 0 or cfg.frame_local:
            return feats
        feats = self._db_steps(feats)
        if cfg.normalize == "mean_var":
            mean, std = self._mean, np.sqrt(self._m2 / max(self._count, 1))
            if cfg.n_blocks > 1 and cfg.normalize_scope != "band":  # one value per block -> per column
                widths = [cols.stop - cols.start for cols in cfg.block_columns()]
                mean, std = np.repeat(mean, widths, axis=1), np.repeat(std, widths, axis=1)
            feats = ((feats - mean) / np.maximum(std, cfg.normalize_eps)).astype(np.float32)
        elif cfg.normalize == "min_max":
            lo, hi = self._db_steps(self._lo[None, :]), self._db_steps(self._hi[None, :])
            if cfg.normalize_scope != "band":
                lo, hi = lo.min(keepdims=True), hi.max(keepdims=True)
            span = hi - lo
            feats = (feats - lo) / np.maximum(span, np.float32(cfg.normalize_eps))
        return feats.astype(np.float32, copy=False)
