"""Environment for the native programs ACFD starts (tritonserver, perf_analyzer)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def with_library_dirs(dirs: Iterable[Path | str], base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: this process's environment) with ``dirs`` first on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ if base is None else base)
    paths = [str(p) for p in dirs]
    if env.get("LD_LIBRARY_PATH"):
        paths.append(env["LD_LIBRARY_PATH"])
    if paths:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    return env
