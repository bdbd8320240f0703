"""Build hook: the wheel carries the default model, read from ``models/`` (its one copy in git).

Everything else about the package is declared in ``pyproject.toml``; this file only adds
the step declarative configuration cannot express: copy ``models/edge-ser-int8.tflite``
(and its model card) into ``edge_ser/models/`` of the build, where
:func:`edge_ser.paths.candidate_model_paths` looks first. So ``pip install .`` gives a
package that classifies anywhere, while the repository's scripts, the converter and
``device/install.sh`` keep using ``models/`` and nothing binary is stored twice.

A source copy without ``models/`` (``device/install.sh`` builds from ``pyproject.toml`` and
``edge_ser/`` only and installs the model to ``/opt/edge-ser/models`` itself) still
builds, with a warning: that wheel has no model of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE_DIR = Path(__file__).resolve().parent / "models"
MODEL_FILES = ("edge-ser-int8.tflite", "MODEL_CARD.md")  # the file name edge_ser.paths.MODEL_FILENAME looks for


class BuildPyWithModel(build_py):
    """``build_py`` plus the model files copied into ``<build>/edge_ser/models/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, where edge_ser/paths.py finds models/
        target = Path(self.build_lib) / "edge_ser" / "models"
        for name in MODEL_FILES:
            source = SOURCE_DIR / name
            if not source.is_file():
                self.warn(f"{source} not found: the wheel ships without it")
                continue
            target.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(source), str(target / name))


setup(cmdclass={"build_py": BuildPyWithModel})
