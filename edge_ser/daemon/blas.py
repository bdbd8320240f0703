"""Keep NumPy's BLAS single-threaded inside the daemon.

The daemon does many tiny matrix products (the stream resampler runs every 50 ms).
OpenBLAS hands each to its worker threads, which then *spin* waiting for more work;
with a product every 50 ms they never go to sleep. Measured here: listening at 48 kHz
cost 50 % of a core with OpenBLAS's default threads and 2 % with one thread.
Setting ``OPENBLAS_NUM_THREADS=1`` works only before NumPy is imported, so the
daemon calls OpenBLAS's own ``openblas_set_num_threads(1)`` through ctypes (the
standard library) on whichever OpenBLAS NumPy loaded. Other BLAS libraries and
non-Linux systems are left alone.
"""

from __future__ import annotations

import ctypes
from typing import List, Optional

_SYMBOLS = (
    "openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads_64_",
    "scipy_openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
)


def _loaded_openblas() -> List[str]:
    """Paths of OpenBLAS libraries mapped into this process (Linux /proc)."""
    paths: List[str] = []
    try:
        with open("/proc/self/maps", "r", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if "openblas" in path.lower() and path not in paths:
                        paths.append(path)
    except OSError:
        pass
    return paths


def limit_blas_threads(n: int = 1) -> Optional[str]:
    """Set OpenBLAS's thread count to ``n``; returns the library changed, or None."""
    import numpy  # noqa: F401  (BLAS must be loaded to be found)

    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SYMBOLS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                setter(int(n))
                return path
    return None
