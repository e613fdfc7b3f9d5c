"""The python backend's stub processes of a running ``tritonserver``, read from ``/proc``.

Contract:

* Each instance of a python-backend model runs in its own ``triton_python_backend_stub`` process, a
  child of the server, started as ``triton_python_backend_stub REPO/MODEL/VERSION/model.py SHM ...
  INSTANCE KIND`` (``INSTANCE`` is ``MODEL_GROUP_INDEX``, e.g. ``detector_0_0``); ``SHM`` names the
  ``/dev/shm`` region through which the server and that stub pass tensors, mapped in both.
* ``stub_processes(server_pid)`` lists them as ``Stub(pid, model, instance, state, region)``;
  ``model`` is the model folder's name, ``state`` the one-letter state of ``/proc/PID/stat`` (``Z``:
  a dead stub its parent has not reaped yet, counted as dead by ``Stub.alive``).
* ``kill_stubs(stubs)`` sends SIGKILL to each; a stub already gone is not an error.
* ``orphaned_regions(server_pid)``: the ``/dev/shm`` regions the server still maps although no live
  stub of it uses them, with the bytes of each resident in the server. Triton 2.51 keeps the region
  of a stub that was killed mapped for good, also after the model is unloaded and loaded again (a
  clean unload frees it): each crash leaves ~5-30 MB in the server that only a restart gives back.

Nothing here talks to the server: a scan costs a few milliseconds of reading ``/proc``.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
PROC = Path("/proc")


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str  # the model folder's name, e.g. "detector"
    instance: str  # e.g. "detector_0_0"
    state: str  # R, S, D, T, Z, ... from /proc/PID/stat
    region: str = ""  # the name of its shared-memory region in /dev/shm

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of ``pid``, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), fields[0]


def parse_stub_command(argv: list[str]) -> tuple[str, str, str] | None:
    """(model, instance, region) of a stub's command line, or None when it is not a python-backend stub."""
    if len(argv) < 4 or not argv[0].endswith(STUB_NAME):
        return None
    model = Path(argv[1]).parent.parent.name  # REPO/MODEL/VERSION/model.py
    return model, argv[-2], argv[2]  # STUB REPO/MODEL/VERSION/model.py SHM ... INSTANCE KIND


def stub_processes(server_pid: int) -> list[Stub]:
    """The stub processes whose parent is ``server_pid`` (none when the server is gone)."""
    stubs = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[0] != server_pid:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        parsed = parse_stub_command([a.decode("utf-8", "replace") for a in argv])
        if parsed is not None:
            stubs.append(Stub(pid, parsed[0], parsed[1], stat[1], parsed[2]))
    return sorted(stubs, key=lambda s: s.instance)


def kill_stubs(stubs: list[Stub]) -> None:
    for stub in stubs:
        try:
            os.kill(stub.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def shm_mappings(pid: int) -> dict[str, int]:
    """The ``/dev/shm`` files process ``pid`` maps: {name: bytes of it resident in that process}."""
    resident: dict[str, int] = {}
    name = None
    try:
        lines = (PROC / str(pid) / "smaps").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if not fields[0].endswith(":"):  # a mapping's header: ADDRESS PERMS OFFSET DEV INODE [PATH]
            path = line.split(None, 5)[5] if len(fields) > 5 else ""
            path = path.removesuffix(" (deleted)")
            name = path.removeprefix("/dev/shm/") if path.startswith("/dev/shm/") else None
            if name is not None:
                resident.setdefault(name, 0)
        elif name is not None and fields[0] == "Rss:":
            resident[name] += int(fields[1]) * 1024
    return resident


def orphaned_regions(server_pid: int, prefix: str = "", stubs: list[Stub] | None = None) -> dict[str, int]:
    """Shared-memory regions (names starting with ``prefix``) that the server maps and no live stub
    of it uses: {name: bytes resident in the server}. ``stubs``: the server's, when already read."""
    in_use = {s.region for s in (stub_processes(server_pid) if stubs is None else stubs) if s.alive}
    return {
        name: size for name, size in shm_mappings(server_pid).items() if name.startswith(prefix) and name not in in_use
    }
