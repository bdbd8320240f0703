"""Find a TFLite interpreter and make interpreters from it.

Three Python packages can run a ``.tflite`` model, and which one a device has depends
on its Python version (see ``requirements-edge.txt``):

* ``ai_edge_litert`` (LiteRT, the successor, wheels for CPython >= 3.9 with numpy 2),
* ``tflite_runtime`` (the last release is 2.14, CPython <= 3.11, needs ``numpy<2``),
* ``tensorflow.lite`` (a workstation fallback: it works, but imports all of TensorFlow).

They are tried in that order unless the caller or the ``EDGE_SER_BACKEND`` environment
variable names one. Each is imported only when it is tried, so a device never pays for
a backend it does not use. One exception to the order: when TensorFlow is already
imported in this process, its own interpreter goes first, because TensorFlow's and
tflite_runtime's native libraries clash in one process (``ValueError: vector::reserve``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import BackendError, ModelError

__all__ = ["Backend", "BACKENDS", "ENV_VAR", "THREADS_ENV_VAR", "load_backend", "canonical_name",
           "install_hint", "resolve_num_threads", "resolve_xnnpack"]

#: Environment variable that picks a backend (``litert``, ``tflite-runtime``, ``tensorflow``).
ENV_VAR = "EDGE_SER_BACKEND"
#: Environment variable with the default interpreter thread count (a service sets it once).
THREADS_ENV_VAR = "EDGE_SER_NUM_THREADS"
#: Environment variable that turns the XNNPACK delegate off (``0``/``off``/``false``/``no``).
XNNPACK_ENV_VAR = "EDGE_SER_XNNPACK"

#: Canonical backend names, in the default order of preference.
BACKENDS: Tuple[str, ...] = ("litert", "tflite-runtime", "tensorflow")

_ALIASES: Dict[str, str] = {
    "litert": "litert",
    "ai-edge-litert": "litert",
    "ai_edge_litert": "litert",
    "tflite-runtime": "tflite-runtime",
    "tflite_runtime": "tflite-runtime",
    "tflite": "tflite-runtime",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
    "tensorflow.lite": "tensorflow",
}

# backend name -> (module holding Interpreter, distribution name for its version)
_MODULES: Dict[str, Tuple[str, str]] = {
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow", "tensorflow"),
}


@dataclass(frozen=True)
class Backend:
    """One importable interpreter package: its name, version and ``Interpreter`` class.

    ``builtin_kernels`` is the package's ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``:
    passing it keeps the XNNPACK delegate out, so only TFLite's builtin (optimized, not
    reference) kernels run; their int8 rounding depends on the CPU (see
    :meth:`make_interpreter`).
    """

    name: str
    version: str
    interpreter_class: Callable[..., Any]
    builtin_kernels: Any = None

    @property
    def label(self) -> str:
        """``name version``, for people (``edge-ser info``, logs)."""
        return f"{self.name} {self.version}"

    def make_interpreter(
        self, model_content: bytes, num_threads: Optional[int] = None, source: str = "model",
        xnnpack: bool = True,
    ) -> Any:
        """An interpreter with tensors allocated, or a one-line error saying why not.

        ``xnnpack=False`` runs TFLite's builtin kernels only. Why that exists: LiteRT's
        XNNPACK int8 kernels round differently from the builtin ones (measured on the
        shipped model: up to 7 output steps of 1/256 on a window), and on x86_64 the
        builtin kernels give the same outputs in tflite-runtime 2.14, LiteRT 2.3 and
        TensorFlow, so it makes the interpreters agree on one machine. It does not make
        machines agree: under LiteRT on aarch64 (Raspberry Pi OS Trixie, checked under
        qemu by device/check-arm64.sh) the builtin optimized kernels differ from x86_64's
        by a few output steps (up to 7 on the shipped model's windows), while LiteRT's
        default (XNNPACK) kernels give the same outputs on both. So XNNPACK is the
        default everywhere: the fast choice, and with LiteRT the one that matches across
        x86_64 and aarch64.

        Known failure translated here: tflite-runtime 2.14 was built against numpy 1
        and, under numpy 2, fails inside its C extension with ``SystemError ...
        CreateWrapperFromFile``/``CreateWrapperFromBuffer``; that is an environment
        problem with a known fix, so it becomes :class:`BackendError` naming the fix.
        """
        kwargs: Dict[str, Any] = {"model_content": model_content}
        if num_threads is not None:
            kwargs["num_threads"] = int(num_threads)
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = self.builtin_kernels
        # numpy 2 writes a long warning with a stack dump to sys.stderr before that
        # SystemError; hold Python-level stderr back and show it only if all went well.
        held = io.StringIO()
        try:
            with contextlib.redirect_stderr(held):
                interpreter = self.interpreter_class(**kwargs)
        except SystemError as exc:
            if self.name == "tflite-runtime" and "CreateWrapper" in str(exc):
                raise BackendError(_numpy2_message(self)) from None
            raise BackendError(f"{self.label}: cannot create an interpreter ({exc})") from None
        except ValueError as exc:
            # Raised for bytes that are not a flatbuffer model, or one it cannot verify.
            raise ModelError(f"{source}: {self.name} cannot load this model ({_first_line(exc)})") from None
        sys.stderr.write(held.getvalue())
        try:
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"{source}: {self.name} cannot prepare this model ({_first_line(exc)}); it may use "
                "operators this interpreter version does not have"
            ) from None
        return interpreter


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _numpy2_message(backend: Backend) -> str:
    numpy_version = sys.modules["numpy"].__version__ if "numpy" in sys.modules else "2.x"
    return (
        f"{backend.label} does not work with numpy {numpy_version} (it was built for numpy 1). "
        "Fix: pip install 'numpy<2', or use LiteRT instead: pip install ai-edge-litert"
    )


def resolve_num_threads(num_threads: Optional[int] = None) -> Optional[int]:
    """``num_threads``, else ``$EDGE_SER_NUM_THREADS``, else None (the backend's default)."""
    if num_threads is None:
        text = os.environ.get(THREADS_ENV_VAR, "").strip()
        if not text:
            return None
        try:
            num_threads = int(text)
        except ValueError:
            raise BackendError(f"{THREADS_ENV_VAR}={text!r}: expected a whole number of threads") from None
    if int(num_threads) < 1:
        raise BackendError(f"interpreter threads must be 1 or more, got {num_threads}")
    return int(num_threads)


def resolve_xnnpack(xnnpack: Optional[bool] = None) -> bool:
    """``xnnpack``, else ``$EDGE_SER_XNNPACK`` (default on)."""
    if xnnpack is not None:
        return bool(xnnpack)
    text = os.environ.get(XNNPACK_ENV_VAR, "").strip().lower()
    if text in ("", "1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no"):
        return False
    raise BackendError(f"{XNNPACK_ENV_VAR}={text!r}: expected 1/on or 0/off")


def canonical_name(name: str) -> str:
    """``litert``/``tflite-runtime``/``tensorflow`` for any accepted spelling, else BackendError."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise BackendError(
            f"unknown interpreter backend {name!r}; choose one of {', '.join(BACKENDS)} (or 'auto')"
        )
    return _ALIASES[key]


def install_hint() -> str:
    """What to ``pip install`` for an interpreter on *this* Python version."""
    if sys.version_info >= (3, 12):
        return "pip install ai-edge-litert"
    return "pip install ai-edge-litert  (or: pip install tflite-runtime 'numpy<2')"


def _distribution_version(dist: str, module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
    except ImportError:  # pragma: no cover - Python < 3.8
        return "unknown"
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return "unknown"


def _import(name: str) -> Backend:
    module_name, dist = _MODULES[name]
    module = importlib.import_module(module_name)
    if name == "tensorflow":
        interpreter_class = module.lite.Interpreter
        resolver = module.lite.experimental.OpResolverType
        version = str(module.__version__)
    else:
        interpreter_class = module.Interpreter
        resolver = module.OpResolverType
        package = sys.modules[module_name.split(".")[0]]
        version = _distribution_version(dist, package)
    return Backend(name=name, version=version, interpreter_class=interpreter_class,
                   builtin_kernels=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def preference_order() -> List[str]:
    """Backends to try, best first (TensorFlow's own when it is already loaded)."""
    if "tensorflow" in sys.modules:
        return ["tensorflow", "litert", "tflite-runtime"]
    return list(BACKENDS)


def load_backend(name: Optional[str] = None) -> Backend:
    """Import the requested backend, or the first available one.

    ``name`` wins over ``EDGE_SER_BACKEND``; ``None``/``"auto"`` means "first that
    imports". A named backend that is not installed is an error, not a silent fallback,
    so a user who asked for LiteRT never measures tflite-runtime by mistake.
    """
    requested = name if name not in (None, "") else os.environ.get(ENV_VAR, "")
    requested = requested.strip()
    if requested and requested.lower() != "auto":
        chosen = canonical_name(requested)
        try:
            return _import(chosen)
        except ImportError as exc:
            raise BackendError(
                f"interpreter backend {chosen!r} is not installed ({_first_line(exc)}); "
                f"{install_hint()}"
            ) from None
    failures: List[str] = []
    for candidate in preference_order():
        try:
            return _import(candidate)
        except ImportError as exc:
            failures.append(f"{candidate}: {_first_line(exc)}")
    raise BackendError(
        "no TFLite interpreter found (tried " + "; ".join(failures) + "). "
        f"For Python {sys.version_info.major}.{sys.version_info.minor}: {install_hint()}"
    )
