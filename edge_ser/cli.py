"""The ``edge-ser`` command line (also ``python -m edge_ser``).

Subcommands: ``classify`` (files, folders, stdin), ``info`` (what a model is),
``bench`` (how fast this machine runs it), and -- when the daemon package is
installed -- ``listen``/``devices`` registered by :mod:`edge_ser.daemon.cli`.

Error policy, because this runs unattended on devices and in shell pipelines:
a user error (:class:`~edge_ser.errors.EdgeSerError`, :class:`OSError`) is one line,
never a traceback; one bad file does not stop a batch; the exit status is 0 when
everything succeeded, 1 when something failed, 2 for usage errors, 130 on Ctrl-C, and
141 (128 + SIGPIPE, what the shell reports for ``cat``, ``git`` or ``yes`` in the same
place) when the reader of stdout went away (``edge-ser info | head -3``): quietly, no
traceback and no "Exception ignored" at exit. The CLI does not restore the default
SIGPIPE action instead, because ``listen`` runs the daemon in this process and a client
hanging up its socket must not kill it.
Heavy modules (NumPy, the interpreter) are imported only by the subcommand that runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, TextIO, Tuple

from . import __version__
from .errors import EdgeSerError

__all__ = ["main", "build_parser", "expand_inputs"]

PROG = "edge-ser"
STDIN = "-"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE is 13 on every Linux/BSD/macOS; signal.SIGPIPE is absent on Windows


# ---------------------------------------------------------------------------------------
# Small output helpers


def _error_line(message: object, stream: Optional[TextIO] = None) -> None:
    print(f"{PROG}: error: {message}", file=stream or sys.stderr, flush=True)


def _describe_os_error(exc: OSError, source: Optional[str] = None) -> str:
    where = source or exc.filename
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def _kernels(xnnpack: bool) -> str:
    # "default": the backend may use XNNPACK (LiteRT does for int8; tflite-runtime 2.14 does not)
    return "default (XNNPACK allowed)" if xnnpack else "builtin only (--no-xnnpack)"


def _percent(p: float) -> str:
    return f"{100.0 * p:.1f}%"


def _format_table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)]
        lines.append("  ".join(cells).rstrip())
    return lines


# ---------------------------------------------------------------------------------------
# classify


def expand_inputs(inputs: Sequence[str]) -> Iterator[Tuple[str, Optional[str]]]:
    """``(input, problem)`` pairs: files as given, folders walked for ``*.wav``.

    Folders are walked recursively, matching ``.wav`` in any case, in path order;
    hidden entries are skipped. A folder without WAV files yields itself with a
    problem, so it is reported instead of silently doing nothing; so does a folder (or
    subfolder) that cannot be read, with the reason (e.g. permission denied) rather
    than "no .wav files". Non-existent paths are passed through: opening them gives the
    error message. Inputs named on the command line are never second-guessed (a FIFO
    given explicitly is read); what a folder walk finds is, see :func:`_walk_wavs`.
    """
    for item in inputs:
        if item == STDIN or not os.path.isdir(item):
            yield item, None
            continue
        found = _walk_wavs(item)
        if not found:
            yield item, "folder contains no .wav files"
        # sorted by path components, like 'find | sort': a.wav, b/z.wav, c.wav
        yield from sorted(found, key=lambda entry: Path(entry[0]).relative_to(item).parts)


#: Problem prefix of walked entries that are skipped (reported, not counted as failures).
SKIPPED = "skipped: "


def _walk_wavs(folder: str) -> List[Tuple[str, Optional[str]]]:
    """Every ``*.wav`` below ``folder`` as ``(path, problem)``, and the subfolders it could not read.

    Only regular files (or symlinks to them) are read: a FIFO, socket or device named
    ``x.wav`` would block ``open`` or ``read`` forever (a FIFO nobody writes to) or
    stream without end, so it is skipped with a problem starting with :data:`SKIPPED`.
    Broken symlinks are kept: opening them reports the error.
    """
    entries: List[Tuple[str, Optional[str]]] = []

    def unreadable(exc: OSError) -> None:
        # os.walk's default is to ignore these, which made a locked folder look empty
        entries.append((exc.filename or folder, f"cannot read folder: {exc.strerror or exc}"))

    for directory, subdirs, files in os.walk(folder, onerror=unreadable):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if name.lower().endswith(".wav") and not name.startswith("."):
                path = os.path.join(directory, name)
                entries.append((path, _special_file_problem(path)))
    return entries


def _special_file_problem(path: str) -> Optional[str]:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reported when it is opened
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"{SKIPPED}{kind}, not a regular file (name it on the command line to read it)"


class _TableWriter:
    """Prints one aligned row per clip as soon as it is classified."""

    def __init__(self, file_width: int, top_k: int, show_windows: bool) -> None:
        self.file_width = max(4, file_width)  # never truncated: the name is what identifies a row
        self.top_k = top_k
        self.show_windows = show_windows
        self._header_done = False

    def header(self) -> None:
        """Printed before the first row, so a run where every input failed prints no table."""
        if self._header_done:
            return
        self._header_done = True
        extra = "".join(f"  {'#' + str(i):<16}" for i in range(2, self.top_k + 1))
        print(f"{'FILE':<{self.file_width}}  {'EMOTION':<10} {'CONF':>6} {'DURATION':>9}{extra}".rstrip(), flush=True)

    def row(self, name: str, prediction: Any) -> None:
        self.header()
        extra = "".join(f"  {label + ' ' + _percent(p):<16}" for label, p in prediction.top(self.top_k)[1:])
        print(
            f"{name:<{self.file_width}}  {prediction.label:<10} {_percent(prediction.confidence):>6} "
            f"{prediction.duration:>8.2f}s{extra}{'  (silent: label meaningless)' if prediction.silent else ''}".rstrip(),
            flush=True,
        )
        if self.show_windows:
            for w in prediction.windows:
                print(f"{'':<{self.file_width}}    {w.start_s:6.2f}-{w.end_s:6.2f}s  {w.label:<10} {_percent(w.confidence):>6}", flush=True)

    def error(self, name: str, message: str) -> None:
        _error_line(message)

    def skipped(self, name: str, message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


class _JsonWriter:
    """Prints one JSON object per clip (JSON lines); errors are objects with ``error``."""

    def __init__(self, top_k: int, show_windows: bool, model_id: str, backend: Any) -> None:
        self.top_k = top_k
        self.show_windows = show_windows
        self.model_id = model_id
        self.backend = backend

    def row(self, name: str, prediction: Any) -> None:
        data = prediction.to_dict(windows=self.show_windows)
        data["source"] = name
        data["top"] = [{"label": label, "confidence": p} for label, p in prediction.top(self.top_k)]
        data["model"] = self.model_id
        data["backend"] = self.backend.name
        data["backend_version"] = self.backend.version
        print(json.dumps(data), flush=True)

    def error(self, name: str, message: str) -> None:
        print(json.dumps({"source": name, "error": message}), flush=True)

    def skipped(self, name: str, message: str) -> None:
        # not a result: stdout keeps one object per input that was read
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _classify_one(classifier: Any, item: str, windows: bool = False) -> Any:
    # stdin is streamed through the same bounded reader as files (never read whole)
    if item == STDIN:
        return classifier.classify_file(sys.stdin.buffer, name="<stdin>", windows=windows)
    return classifier.classify_file(item, windows=windows)


def cmd_classify(args: argparse.Namespace) -> int:
    from .classify import Classifier

    if args.inputs.count(STDIN) > 1:
        raise _UsageError("'-' (stdin) can be given only once")
    items = list(expand_inputs(args.inputs))
    classifier = Classifier(args.model, backend=args.backend, num_threads=args.threads, xnnpack=args.xnnpack)
    # more than the model has would print empty columns: the model's label count is the most there is
    top_k = min(args.top_k, len(classifier.metadata.labels))
    if args.json:
        writer: Any = _JsonWriter(top_k, args.windows, classifier.model_id, classifier.model.backend)
    else:
        writer = _TableWriter(max(len(_display(i)) for i, _ in items), top_k, args.windows)
    failures = 0
    for item, problem in items:
        name = _display(item)
        if problem and problem.startswith(SKIPPED):
            writer.skipped(name, f"{name}: {problem}")
            continue
        try:
            if problem:
                raise EdgeSerError(f"{item}: {problem}")
            prediction = _classify_one(classifier, item, args.windows)
        except EdgeSerError as exc:
            failures += 1
            writer.error(name, str(exc))
            continue
        except OSError as exc:
            failures += 1
            writer.error(name, _describe_os_error(exc, name))
            continue
        writer.row(name, prediction)
    return EXIT_FAILED if failures else EXIT_OK


def _display(item: str) -> str:
    return "<stdin>" if item == STDIN else item


# ---------------------------------------------------------------------------------------
# info


def _flatten(prefix: str, value: Any, out: List[Tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    else:
        text = value if isinstance(value, str) else json.dumps(value)
        out.append((prefix, text))


def cmd_info(args: argparse.Namespace) -> int:
    from .model import Model
    from .paths import resolve_model_path

    model = Model.load(resolve_model_path(args.model_file or args.model), backend=args.backend, num_threads=args.threads,
                       xnnpack=args.xnnpack)
    info = model.describe()
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return EXIT_OK
    meta = model.metadata
    cfg = meta.feature_config
    inp, out = model.input, model.output

    def tensor_line(t: Any) -> str:
        q = f"  scale {t.scale:.6g}  zero-point {t.zero_point}" if t.quantized else "  (not quantized)"
        return f"{t.dtype.name} {list(t.shape)}{q}"

    hop_s = cfg.hop_length / cfg.sample_rate
    rows: List[Tuple[str, str]] = [
        ("model", model.path),
        ("id", model.model_id),
        ("sha256", model.sha256),
        ("size", f"{model.size_bytes / 1024:.1f} KiB ({model.size_bytes} bytes)"),
        ("labels", f"{', '.join(meta.labels)} ({len(meta.labels)})"),
        ("output", meta.output),
        ("input tensor", tensor_line(inp)),
        ("output tensor", tensor_line(out)),
        ("window", f"{meta.window_frames} frames ({meta.window_seconds:.2f} s), hop {meta.hop_frames} frames "
                   f"({meta.hop_frames * hop_s:.2f} s), pad {meta.pad_mode}"),
        ("features", f"hash {meta.feature_hash}, {cfg.n_features} x {cfg.kind} "
                     f"at {cfg.sample_rate} Hz, hop {cfg.hop_length}"),
    ]
    fields = [f"{k}={v}" for k, v in cfg.to_dict().items()]
    rows += [("", ", ".join(fields[i:i + 5])) for i in range(0, len(fields), 5)]
    rows.append(("backend", f"{model.backend.label} (threads: {model.num_threads or 'default'}, "
                            f"kernels: {_kernels(model.xnnpack)})"))
    extra: List[Tuple[str, str]] = []
    _flatten("", meta.extra, extra)
    rows += [(key, value) for key, value in extra if key]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# bench


def cmd_bench(args: argparse.Namespace) -> int:
    import platform
    import time

    import numpy as np

    from .audio import load_audio
    from .classify import Classifier
    from .features import log_mel
    from .speechlike import speechlike
    from .wav import wav_bytes
    from .windows import split_windows

    classifier = Classifier(args.model, backend=args.backend, num_threads=args.threads, xnnpack=args.xnnpack)
    meta = classifier.metadata
    rate = classifier.sample_rate
    native = wav_bytes(speechlike(args.seconds, rate), rate)
    at_48k = wav_bytes(speechlike(args.seconds, 48000), 48000)
    samples, _ = load_audio(native, rate, name="bench")
    feats = log_mel(samples, meta.feature_config)
    windows, _ = split_windows(feats, meta.window_frames, meta.hop_frames, meta.feature_config.n_blocks)

    stages: List[Tuple[str, Callable[[], Any]]] = [
        (f"decode WAV ({rate // 1000} kHz)", lambda: load_audio(native, rate, name="bench")),
        ("decode + resample 48 kHz", lambda: load_audio(at_48k, rate, name="bench")),
        ("features (log-mel)", lambda: log_mel(samples, meta.feature_config)),
        (f"inference ({len(windows)} window{'s' if len(windows) != 1 else ''})", lambda: classifier.model.predict(windows)),
        ("end to end (classify_file)", lambda: classifier.classify_file(native, name="bench")),
    ]
    results = []
    for name, fn in stages:
        fn()  # warm-up: first-call allocations and caches are not what a device sees per clip
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        ms = np.array(times) * 1000.0
        results.append({
            "stage": name,
            "median_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)),
            "ms_per_audio_s": float(np.median(ms) / args.seconds),
        })
    print(f"model    {classifier.model_path} ({classifier.model_id})")
    threads = classifier.model.num_threads
    print(f"backend  {classifier.model.backend.label}, threads {threads or 'default'}, "
          f"kernels {_kernels(classifier.model.xnnpack)}")
    print(f"machine  {platform.machine()} {platform.processor() or ''}".rstrip()
          + f", Python {platform.python_version()}, numpy {np.__version__}")
    print(f"clip     {args.seconds:g} s synthesized speech-like audio, {args.repeat} runs per stage (+1 warm-up)")
    print()
    rows = [("stage", "median ms", "p90 ms", "ms per audio s")]
    rows += [(r["stage"], f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['ms_per_audio_s']:.2f}") for r in results]
    for line in _format_table(rows, right=(False, True, True, True)):
        print(line)
    total = results[-1]["median_ms"] / 1000.0
    print(f"\nreal-time factor (end to end): {total / args.seconds:.4f} ({args.seconds / total:.0f}x faster than real time)")
    if args.output:
        report = {
            "model": classifier.model_path, "model_id": classifier.model_id,
            "backend": classifier.model.backend.label, "threads": threads, "xnnpack": classifier.model.xnnpack,
            "machine": platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "seconds": args.seconds, "repeat": args.repeat, "stages": results,
        }
        from .atomic_write import write_bytes_atomically

        write_bytes_atomically(Path(args.output), json.dumps(report, indent=1) + "\n")
        print(f"results written to {args.output}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# parser


class _UsageError(Exception):
    """A bad combination of arguments that argparse cannot check by itself (exit 2)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _add_model_options(parser: argparse.ArgumentParser, model_flag: bool = True) -> None:
    if model_flag:
        parser.add_argument("--model", metavar="PATH",
                            help="the .tflite model (default: $EDGE_SER_MODEL, then models/edge-ser-int8.tflite)")
    parser.add_argument("--backend", metavar="B",
                        help="interpreter: litert, tflite-runtime or tensorflow (default: $EDGE_SER_BACKEND, "
                             "else the first one installed)")
    parser.add_argument("--threads", metavar="N", type=_positive_int, help="interpreter threads (default: $EDGE_SER_NUM_THREADS, else the backend's)")
    parser.add_argument("--no-xnnpack", dest="xnnpack", action="store_const", const=False, default=None,
                        help="builtin kernels only: slower on LiteRT; the same outputs from every backend on "
                             "one machine, not across x86_64/aarch64 with LiteRT "
                             "(default: XNNPACK on unless $EDGE_SER_XNNPACK=0)")


_CLASSIFY_EPILOG = """examples:
  edge-ser classify clip.wav
  edge-ser classify recordings/ --top-k 3          # every .wav below the folder, sorted
  edge-ser classify a.wav b.wav --json | jq .label  # one JSON object per line
  arecord -d 3 -f S16_LE -r 16000 -t wav | edge-ser classify -
folders: hidden entries are skipped, and so are FIFOs, sockets and devices named *.wav (reported
on stderr; name one on the command line to read it)
exit status: 0 all classified, 1 some failed (each reported on its own line), 2 usage error,
141 the reader of the output went away (e.g. | head)"""

_INFO_EPILOG = """examples:
  edge-ser info
  edge-ser info models/edge-ser-int8.tflite --json"""

_BENCH_EPILOG = """examples:
  edge-ser bench
  edge-ser bench --seconds 5 --repeat 50 --threads 1 --output bench.json"""


def _add_daemon_subcommands(subparsers: Any) -> None:
    """Let the daemon package add ``listen``/``devices`` when it is installed.

    Only a missing module is tolerated; a daemon module that fails to import for
    another reason is a bug and must show.
    """
    try:
        spec = importlib.util.find_spec("edge_ser.daemon.cli")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return
    module = importlib.import_module("edge_ser.daemon.cli")
    module.add_subcommands(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Offline speech emotion recognition with an int8 TFLite model.",
        epilog="examples:\n  edge-ser classify clip.wav\n  edge-ser info\n  edge-ser bench\n"
               "run 'edge-ser COMMAND --help' for the options of a command",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    p = subparsers.add_parser(
        "classify", help="classify WAV files, folders or stdin",
        description="Classify the emotion of WAV clips (any sample rate and PCM/float format; resampled "
                    "to the model's rate). Long clips are cut into overlapping windows whose "
                    "probabilities are averaged.",
        epilog=_CLASSIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="WAV file, folder (walked for *.wav), or - for stdin")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--top-k", type=_positive_int, default=1, metavar="N", help="also show the N most likely emotions (at most as many as the model has)")
    p.add_argument("--windows", action="store_true", help="also show the answer for every window")
    _add_model_options(p)
    p.set_defaults(func=cmd_classify)

    p = subparsers.add_parser(
        "info", help="describe a model: labels, features, tensors, metrics",
        description="Show what a model expects and outputs, read from its embedded metadata and tensors.",
        epilog=_INFO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_file", nargs="?", metavar="MODEL", help="the .tflite model (default: as for classify)")
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    _add_model_options(p, model_flag=False)
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser(
        "bench", help="measure decode, feature and inference latency on this machine",
        description="Time each stage on synthesized speech-like audio and print a table (median and "
                    "90th percentile per clip, and per second of audio).",
        epilog=_BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=_positive_float, default=3.0, help="clip length in seconds (default 3)")
    p.add_argument("--repeat", type=_positive_int, default=20, metavar="N", help="timed runs per stage (default 20)")
    p.add_argument("--output", metavar="FILE", help="also write the results as JSON")
    _add_model_options(p)
    p.set_defaults(func=cmd_bench)

    _add_daemon_subcommands(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly with the shell's SIGPIPE status,
        # and keep Python from complaining again when it flushes stdout at exit.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout closed or replaced by something without a descriptor
        pass


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # (argparse itself ignores a closed stdout for --help: exit 0)
    try:
        return int(args.func(args) or 0)
    except _UsageError as exc:
        parser.error(str(exc))  # exits 2
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except EdgeSerError as exc:
        _error_line(exc)
    except OSError as exc:
        _error_line(_describe_os_error(exc))
    return EXIT_FAILED


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s status, Ctrl-C included."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    run()
