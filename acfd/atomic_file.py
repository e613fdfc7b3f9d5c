"""Atomic file replacement shared by checkpoints and exports."""

from __future__ import annotations

import os
from pathlib import Path


def publish(tmp: str | Path, target: str | Path) -> None:
    """Rename the temporary file ``tmp`` over ``target`` with the permissions a plain ``open`` would give.

    ``tempfile.mkstemp`` creates 0600 files; a checkpoint or export read by another user (a server,
    a CI job) needs ``0666 & ~umask`` like any other written file.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)
