"""Where ACFD keeps what it can always make again: ``$ACFD_CACHE``, else ``$XDG_CACHE_HOME/acfd``, else
``~/.cache/acfd``.

- ``exports/<sha256>``: a checkpoint exported once for ``acfd.Detector`` (``acfd.detector``);
- ``openvino/``: OpenVINO's compiled graphs (its ``CACHE_DIR``), so that an engine opened again (a
  restarted server, a detector model reloaded after a crash, a new ``Detector``) loads its compiled
  graph instead of compiling it: measured 5.8 s against 13.7 s for the three test scales of the
  embedded int8 model on a loaded 2-core box.

Deleting the folder is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("ACFD_CACHE"):
        return Path(os.environ["ACFD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "acfd"


def openvino_cache() -> str | None:
    """The folder for OpenVINO's compiled graphs, made if needed; ``None`` (no caching) where it
    cannot be made or written."""
    folder = cache_dir() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder) if os.access(folder, os.W_OK) else None
