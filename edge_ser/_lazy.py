"""Module attributes imported on first use (PEP 562), shared by the package ``__init__``s.

Importing ``edge_ser`` (or ``edge_ser.outputs``) must stay cheap: no NumPy, no
interpreter, no paho until a name that needs them is touched.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` and caches the attribute."""

    def __getattr__(name: str) -> Any:
        module_name = table.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
