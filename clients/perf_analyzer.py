"""Driving ``perf_analyzer`` (shipped in the tritonclient wheel) and reading what it reports.

Contract:

* ``find_perf_analyzer()`` returns the binary of the installed ``tritonclient`` wheel (``bin/
  perf_analyzer``; else one on ``PATH``) and the library folders it needs on ``LD_LIBRARY_PATH``
  (``libcudart.so.12`` from the ``nvidia-cuda-runtime-cu12`` wheel). ``check_perf_analyzer``
  runs ``--version`` and turns a missing binary or library into ``PerfAnalyzerError`` with one line
  saying what to install (Debian's ``libb64-0d``, the CUDA runtime wheel).
* ``write_input_data(path, images)`` writes ``--input-data`` JSON:
  ``{"data": [{"IMAGE": {"b64": ..., "shape": [nbytes]}}, ...]}``, one entry per encoded image
  (perf_analyzer cycles through them; the shape never holds the batch axis).
* ``parse_concurrency("1:16:2")`` gives the levels ``[1, 3, ..., 15]`` (perf_analyzer's
  ``start:end:step`` meaning, end included when reached).
* ``run_level`` runs one perf_analyzer process for one concurrency level (so one level that will
  not stabilise cannot sink the sweep: it is measured again with the stability test relaxed and
  flagged ``stable=False``); a sweep is one call per level (``acfd loadtest`` shows progress).
* ``parse_csv`` reads perf_analyzer's ``-f`` CSV (latencies in microseconds) into ``LevelResult``;
  ``parse_composing`` reads the per-composing-model server times of an ensemble from its stdout.
* Any failure (server down, request errors, bad input data) raises ``PerfAnalyzerError`` with
  perf_analyzer's own last error line. perf_analyzer stops at the first failed request, so a level
  that returns had zero failed requests.
"""

from __future__ import annotations

import base64
import csv
import importlib.metadata
import io
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from acfd.runtime_env import with_library_dirs

INPUT_NAME = "IMAGE"
LIBRARY_ADVICE = {
    "libb64": "install Debian's libb64-0d (apt-get install libb64-0d; scripts/setup.sh does it as root)",
    "libcudart": "install the nvidia-cuda-runtime-cu12 wheel (pip install nvidia-cuda-runtime-cu12)",
}
RELAXED_STABILITY_PCT = 1000.0  # second try of an unstable level: accept the last windows as they are


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer missing, not runnable, or failed; the message is one line."""


@dataclass(frozen=True)
class PerfAnalyzerInstall:
    binary: Path
    library_dirs: tuple[Path, ...]

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return with_library_dirs(self.library_dirs, base)


@dataclass(frozen=True)
class SweepSettings:
    url: str = "127.0.0.1:8001"
    model: str = "acfd"
    window_s: float = 5.0  # perf_analyzer --measurement-interval
    max_trials: int = 6  # windows per level before giving up on stability
    stability_pct: float = 20.0  # allowed spread of the last 3 windows
    protocol: str = "grpc"
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level. Latencies in milliseconds, throughput in inferences per second."""

    concurrency: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    server_queue_ms: float = 0.0
    server_compute_ms: float = 0.0  # compute input + infer + output, summed over composing models
    composing_ms: dict[str, float] = field(default_factory=dict)  # model -> avg request latency
    composing_queue_ms: dict[str, float] = field(default_factory=dict)  # model -> avg queue time
    composing_compute_ms: dict[str, float] = field(default_factory=dict)  # model -> compute input + infer + output
    requests: int = 0
    stable: bool = True


# ---- finding and checking the binary ------------------------------------------------------------
def find_perf_analyzer() -> PerfAnalyzerInstall:
    """The wheel's perf_analyzer (else one on PATH) and the library folders it needs."""
    binary = _wheel_file("tritonclient", "perf_analyzer")
    if binary is None:
        on_path = shutil.which("perf_analyzer")
        binary = Path(on_path) if on_path else None
    if binary is None or not binary.is_file():
        raise PerfAnalyzerError(
            "perf_analyzer not found: it ships in the tritonclient wheel (pip install 'tritonclient[all]==2.51.0') "
            "or in Triton's SDK container"
        )
    cudart = _wheel_file("nvidia-cuda-runtime-cu12", "libcudart.so.12")
    return PerfAnalyzerInstall(binary=binary, library_dirs=(cudart.parent,) if cudart else ())


def _wheel_file(distribution: str, name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == name:
            path = Path(dist.locate_file(entry)).resolve()
            if path.is_file():
                return path
    return None


def check_perf_analyzer(install: PerfAnalyzerInstall) -> str:
    """Run ``perf_analyzer --version``; its version line, or ``PerfAnalyzerError`` saying what is missing."""
    try:
        proc = subprocess.run(
            [str(install.binary), "--version"], env=install.environment(), capture_output=True, text=True, timeout=60
        )
    except OSError as err:
        raise PerfAnalyzerError(f"{install.binary}: cannot run ({err.strerror or err})") from err
    output = (proc.stdout + proc.stderr).strip()
    missing = re.search(r"error while loading shared libraries: (\S+?):", output)
    if missing:
        lib = missing.group(1)
        advice = next((text for prefix, text in LIBRARY_ADVICE.items() if lib.startswith(prefix)), "install it")
        raise PerfAnalyzerError(f"{install.binary}: needs {lib}, which is missing: {advice}")
    if proc.returncode != 0 or "Perf Analyzer" not in output:
        raise PerfAnalyzerError(
            f"{install.binary}: --version failed ({last_error_line(output) or f'exit {proc.returncode}'})"
        )
    return output.splitlines()[0]


# ---- inputs --------------------------------------------------------------------------------------
def write_input_data(path: str | Path, images: Sequence[bytes], input_name: str = INPUT_NAME) -> Path:
    """perf_analyzer ``--input-data`` JSON with the encoded images as ``b64`` UINT8 tensors."""
    if not images:
        raise ValueError("write_input_data needs at least one image")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{input_name: {"b64": base64.b64encode(data).decode("ascii"), "shape": [len(data)]}} for data in images]
    path.write_text(json.dumps({"data": entries}))
    return path


def parse_concurrency(text: str) -> list[int]:
    """``start:end:step`` (or ``start:end``, step 1, or one number) to the list of levels."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"concurrency {text!r}: expected start:end:step of whole numbers, e.g. 1:16:2") from None
    if not 1 <= len(values) <= 3:
        raise ValueError(f"concurrency {text!r}: expected start:end:step, e.g. 1:16:2")
    start, end, step = (values + [values[0], 1])[:3] if len(values) == 1 else (values + [1])[:3]
    if start < 1 or end < start or step < 1:
        raise ValueError(f"concurrency {text!r}: need 1 <= start <= end and step >= 1")
    return list(range(start, end + 1, step))


# ---- running ---------------------------------------------------------------------------------------
def level_command(
    install: PerfAnalyzerInstall,
    settings: SweepSettings,
    input_data: Path,
    concurrency: int,
    csv_path: Path,
    stability_pct: float | None = None,
) -> list[str]:
    window_ms = max(100, int(round(settings.window_s * 1000)))
    return [
        str(install.binary),
        "-m", settings.model,
        "-i", settings.protocol,
        "-u", settings.url,
        "--input-data", str(input_data),
        "--concurrency-range", f"{concurrency}:{concurrency}:1",
        "--measurement-interval", str(window_ms),
        "--max-trials", str(settings.max_trials),
        "--stability-percentage", f"{settings.stability_pct if stability_pct is None else stability_pct:g}",
        "-f", str(csv_path),
        "--verbose-csv",
        *settings.extra_args,
    ]  # fmt: skip


def run_level(
    install: PerfAnalyzerInstall, settings: SweepSettings, input_data: Path, concurrency: int, workdir: Path
) -> LevelResult:
    """Measure one concurrency level; its log is kept at ``workdir/perf_c{N}.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / f"perf_c{concurrency}.csv"
    log_path = workdir / f"perf_c{concurrency}.log"
    stable = True
    csv_path.unlink(missing_ok=True)  # perf_analyzer writes no CSV when it fails: never read a stale one
    output = _run(level_command(install, settings, input_data, concurrency, csv_path), install, settings, log_path)
    if "Failed to obtain stable measurement" in output:
        stable = False
        csv_path.unlink(missing_ok=True)
        command = level_command(install, settings, input_data, concurrency, csv_path, RELAXED_STABILITY_PCT)
        output = _run(command, install, settings, log_path)
    if not csv_path.is_file():
        raise PerfAnalyzerError(
            f"perf_analyzer (concurrency {concurrency}): {last_error_line(output) or 'no CSV written'}"
        )
    rows = parse_csv(csv_path.read_text())
    if not rows:
        raise PerfAnalyzerError(f"perf_analyzer (concurrency {concurrency}): {csv_path} has no rows")
    composing = parse_composing(output).get(concurrency, {})
    requests = parse_request_counts(output).get(concurrency, 0)
    return replace(
        rows[0],
        composing_ms={m: t["latency"] for m, t in composing.items()},
        composing_queue_ms={m: t["queue"] for m, t in composing.items() if "queue" in t},
        composing_compute_ms={m: t["compute"] for m, t in composing.items() if "compute" in t},
        requests=requests,
        stable=stable,
    )


def _run(command: list[str], install: PerfAnalyzerInstall, settings: SweepSettings, log_path: Path) -> str:
    limit_s = settings.window_s * (settings.max_trials + 3) + 120  # a guard against a hung server, not a budget
    try:
        proc = subprocess.run(
            command,
            env=install.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=limit_s,
        )
    except subprocess.TimeoutExpired as err:
        raise PerfAnalyzerError(f"perf_analyzer did not finish within {limit_s:.0f} s (server hung?)") from err
    except OSError as err:
        raise PerfAnalyzerError(f"{install.binary}: cannot run ({err.strerror or err})") from err
    log_path.write_text(proc.stdout)
    if proc.returncode != 0 and "Failed to obtain stable measurement" not in proc.stdout:
        raise PerfAnalyzerError(
            f"perf_analyzer failed: {last_error_line(proc.stdout) or f'exit {proc.returncode}'} (log: {log_path})"
        )
    return proc.stdout


# ---- parsing ---------------------------------------------------------------------------------------
def parse_csv(text: str) -> list[LevelResult]:
    """perf_analyzer's ``-f`` CSV (one row per level, microseconds) to ``LevelResult`` rows."""
    reader = csv.DictReader(io.StringIO(text))
    need = {"Concurrency", "Inferences/Second", "p50 latency", "p90 latency", "p95 latency", "p99 latency"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise PerfAnalyzerError(
            f"not a perf_analyzer CSV: columns {reader.fieldnames} lack {sorted(need - set(reader.fieldnames or []))}"
        )

    def us(row: dict, key: str) -> float:
        value = (row.get(key) or "").strip()
        return float(value) / 1000.0 if value else 0.0

    rows = []
    for row in reader:
        if not (row.get("Concurrency") or "").strip():
            continue
        compute = sum(us(row, k) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output"))
        avg = us(row, "Avg latency") or sum(
            us(row, k)
            for k in ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                      "Server Compute Infer", "Server Compute Output", "Client Recv")
        )  # fmt: skip
        rows.append(
            LevelResult(
                concurrency=int(float(row["Concurrency"])),
                throughput=float(row["Inferences/Second"]),
                p50_ms=us(row, "p50 latency"),
                p90_ms=us(row, "p90 latency"),
                p95_ms=us(row, "p95 latency"),
                p99_ms=us(row, "p99 latency"),
                avg_ms=avg,
                server_queue_ms=us(row, "Server Queue"),
                server_compute_ms=compute,
            )
        )
    return rows


_LEVEL = re.compile(r"^Request concurrency: (\d+)")
_MODEL = re.compile(r"^\s+(\S+), version: (\S+)\s*$")
_AVG_REQUEST = re.compile(r"Avg request latency: (\d+(?:\.\d+)?) usec")
_PART = re.compile(r"(queue|compute input|compute infer|compute output) (\d+(?:\.\d+)?) usec")
_REQUESTS = re.compile(r"^\s+Request count: (\d+)")


def _level_blocks(stdout: str) -> dict[int, list[str]]:
    blocks: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if m := _LEVEL.match(line):
            current = blocks.setdefault(int(m.group(1)), [])
        elif line.startswith("Inferences/Second vs."):
            current = None  # the closing summary of the whole run
        elif current is not None:
            current.append(line)
    return blocks


def parse_composing(stdout: str) -> dict[int, dict[str, dict[str, float]]]:
    """Per level, each composing model's average server times in ms (ensembles only): ``latency``
    (its whole request), and where perf_analyzer breaks it down, ``queue`` and ``compute`` (input +
    infer + output)."""
    found: dict[int, dict[str, dict[str, float]]] = {}
    for level, lines in _level_blocks(stdout).items():
        models: dict[str, dict[str, float]] = {}
        in_composing, model = False, None
        for line in lines:
            if line.strip().startswith("Composing models:"):
                in_composing = True
            elif in_composing and (m := _MODEL.match(line)):
                model = m.group(1)
            elif in_composing and model and (m := _AVG_REQUEST.search(line)):
                times = {"latency": float(m.group(1)) / 1000.0}
                parts = {name: float(value) / 1000.0 for name, value in _PART.findall(line)}
                if "queue" in parts:
                    times["queue"] = parts["queue"]
                if any(name.startswith("compute") for name in parts):
                    times["compute"] = sum(v for name, v in parts.items() if name.startswith("compute"))
                models[model] = times
                model = None
            elif in_composing and line.strip().startswith("Server Prometheus Metrics"):
                in_composing = False
        found[level] = models
    return found


def parse_request_counts(stdout: str) -> dict[int, int]:
    """Per level, the client's request count in the final measurement window."""
    counts = {}
    for level, lines in _level_blocks(stdout).items():
        for line in lines:
            if m := _REQUESTS.match(line):
                counts[level] = int(m.group(1))
                break
    return counts


def last_error_line(output: str) -> str:
    """The line of perf_analyzer's output that says what went wrong (``error:`` / ``had error``)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        low = line.lower()
        if low.startswith("error") or "had error" in low or low.startswith("failed") or "unable to" in low:
            return line.removeprefix("error: ")
    return lines[-1] if lines else ""
