"""The ``--out`` folder of ``acfd predict`` as a job that survives being killed.

Files (all in ``--out``):

* ``job.json``: what the job is: the model (a SHA-256 of the files it runs), the options that change
  results, and the list of sources. Written once, when the folder is new. A rerun with another
  model, option set or source list is refused in one line (``JobError``) instead of mixing results.
* ``detections.jsonl``: one line per image or sampled frame, in source order then frame order,
  flushed line by line. A line that made it to the file is committed; a partial last line (the
  process was killed while writing it) is cut off on resume.
* ``progress.jsonl``: one line per finished source, ``{"source", "lines", "error"}``, written after
  everything else of that source (its last detection line, annotated copy, crops).
* ``tracks.json`` and ``summary.json``: written (atomically) when every source is finished;
  ``summary.json`` is the mark of a finished job.
* ``.lock``: held (``flock``) by the process writing the folder; a second one is refused.

``JobFolder(out).open(identity, sources)`` returns the ``ResumeState``: the sources already finished
(with their error, if they failed) and the committed records of the one source that was in progress
when the job stopped (continue it after its last committed frame). Anything that does not fit (lines
of an unknown source, out of order, more lines than ``progress.jsonl`` says) is a ``JobError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from acfd.atomic_file import replaced_on_success

FORMAT = 1


class JobError(Exception):
    """The ``--out`` folder cannot take this job (one line saying why and what to do)."""


@dataclass
class ResumeState:
    finished: dict[str, str | None] = field(default_factory=dict)  # source -> error (None: fine), in order
    records: dict[str, list[dict]] = field(default_factory=dict)  # committed records per source
    in_progress: str | None = None  # the source whose records continue after a stop
    complete: bool = False  # summary.json is there: nothing left to do

    @property
    def lines(self) -> int:
        return sum(len(r) for r in self.records.values())


def _complete_lines(path: Path) -> list[str]:
    """The file's complete lines; a partial last line is cut off the file itself."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("rb+") as f:
            f.truncate(end)
    return data[:end].decode().splitlines()


class JobFolder:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.job = self.out / "job.json"
        self.detections = self.out / "detections.jsonl"
        self.progress = self.out / "progress.jsonl"
        self.tracks = self.out / "tracks.json"
        self.summary = self.out / "summary.json"

    def open(self, identity: dict, sources: list[str]) -> ResumeState:
        identity = {"format": FORMAT, **identity, "sources": list(sources)}
        self._lock()
        if self.job.is_file():
            try:
                stored = json.loads(self.job.read_text())
            except (OSError, ValueError) as err:
                raise JobError(f"{self.job}: unreadable ({err}); remove {self.out} or choose another --out") from err
            if stored != identity:
                raise JobError(f"{self.out} holds a job with {_difference(stored, identity)}; rerun it as it was, "
                               f"or choose another --out (or remove {self.out})")  # fmt: skip
            return self._resume(sources)
        if self.detections.exists() or self.summary.exists():
            raise JobError(f"{self.out} holds results without a job.json (an older acfd predict?); "
                           "choose another --out or remove it")  # fmt: skip
        try:
            for path in (self.detections, self.progress):
                path.write_text("")
            with replaced_on_success(self.job, durable=True) as tmp:
                tmp.write_text(json.dumps(identity, indent=1) + "\n")
        except OSError as err:
            raise JobError(f"{self.out}: cannot write there ({err.strerror or err})") from err
        return ResumeState()

    def _lock(self) -> None:
        """Hold ``--out/.lock`` (``flock``) while this process lives: one writer per folder. A killed
        process's lock goes with it."""
        import fcntl

        if getattr(self, "_lock_file", None) is not None:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock_file = (self.out / ".lock").open("a")
        except OSError as err:
            raise JobError(f"{self.out}: cannot write there ({err.strerror or err})") from err
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lock_file.close()
            self._lock_file = None
            raise JobError(f"another acfd predict is writing {self.out}; wait for it or choose another --out") from err

    def close(self) -> None:
        """Let go of the folder (its lock)."""
        if getattr(self, "_lock_file", None) is not None:
            self._lock_file.close()
            self._lock_file = None

    def _resume(self, sources: list[str]) -> ResumeState:
        state = ResumeState(complete=self.summary.is_file())
        try:
            progress = [json.loads(line) for line in _complete_lines(self.progress)]
            records = [json.loads(line) for line in _complete_lines(self.detections)]
        except ValueError as err:
            raise JobError(f"{self.out}: a damaged progress.jsonl or detections.jsonl ({err}); remove it") from err
        for k, entry in enumerate(progress):
            if k >= len(sources) or entry.get("source") != sources[k]:
                raise JobError(
                    f"{self.progress}: line {k + 1} is not about source {k + 1} of the job; remove {self.out}"
                )
            state.finished[sources[k]] = entry.get("error")
        position = 0
        for k, source in enumerate(sources[: len(progress)]):
            expected = progress[k]["lines"]
            got = records[position : position + expected]
            if len(got) != expected or any(r.get("source") != source for r in got):
                raise JobError(f"{self.detections} does not hold the {expected} lines progress.jsonl lists for "
                               f"{source}; remove {self.out}")  # fmt: skip
            state.records[source] = got
            position += expected
        rest = records[position:]
        if rest:
            nxt = sources[len(progress)] if len(progress) < len(sources) else None
            if nxt is None or any(r.get("source") != nxt for r in rest):
                raise JobError(f"{self.detections}: lines after the finished sources are not about the next source; "
                               f"remove {self.out}")  # fmt: skip
            state.records[nxt] = rest
            state.in_progress = nxt
        return state

    def write_json(self, path: Path, value) -> None:
        with replaced_on_success(path) as tmp:
            tmp.write_text(json.dumps(value, indent=2) + "\n")


def _difference(stored: dict, wanted: dict) -> str:
    """What differs between two identities, in a few words."""
    parts = []
    if stored.get("format") != wanted.get("format"):
        return f"another format ({stored.get('format')}; this acfd writes {wanted.get('format')})"
    if stored.get("model") != wanted.get("model"):
        parts.append("another model")
    old, new = stored.get("options", {}), wanted.get("options", {})
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            parts.append(f"--{key.replace('_', '-')} {old.get(key)} (now {new.get(key)})")
    if stored.get("sources") != wanted.get("sources"):
        parts.append(f"other sources ({len(stored.get('sources', []))} files; now {len(wanted.get('sources', []))})")
    return ", ".join(parts) or "other settings"
