"""Atomic file replacement: the one way checkpoints, exports, engines and manifests are written.

``replaced_on_success(target)`` yields a temporary path beside ``target``; when the block ends
without an exception the file is fsynced, given the permissions a plain ``open`` would give
(``0666 & ~umask``: ``mkstemp`` makes 0600 files, and a server or CI job may read them as another
user) and renamed over ``target``, so a reader sees the old file or the new one, never half of
one. On an exception the temporary file is removed and ``target`` is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def publish(tmp: str | Path, target: str | Path) -> None:
    """Rename the temporary file ``tmp`` over ``target`` with the permissions a plain ``open`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


@contextmanager
def replaced_on_success(target: str | Path, durable: bool = False) -> Iterator[Path]:
    """A temporary file beside ``target`` that replaces it if the block succeeds (removed if not).

    ``durable`` also fsyncs the file and its folder (checkpoints: a crash right after must not
    leave an empty file under the final name). ``OSError`` if the folder cannot be written.
    """
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        publish(tmp, target)
        if durable:
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
