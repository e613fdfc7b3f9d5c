"""Importing the project's stand-alone files (``scripts/``, ``benchmarks/``, ``deploy/``) in tests:
they are not in the ``acfd`` package, so they are loaded from their paths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_file(path: Path, name: str | None = None) -> ModuleType:
    """The Python file at ``path`` as a module named ``name`` (its stem by default), registered in
    ``sys.modules`` first (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` as a module."""
    return load_file(ROOT / "scripts" / f"{name}.py")
