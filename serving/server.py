"""Start and stop a real NVIDIA Triton Inference Server on a model repository.

Contract:

* ``find_tritonserver()`` returns the ``tritonserver`` binary: the one on ``PATH``, else the one
  bundled in the ``nvidia-pytriton`` wheel (whose shared libraries then go on ``LD_LIBRARY_PATH``).
* ``prepare_backend_dir(install, dest)`` lays out ``dest/python/`` with the wheel's python backend
  library and the ``triton_python_backend_stub`` built for the running interpreter's Python version
  (the wheel ships one stub per version; the backend runs the stub that sits next to
  ``libtriton_python.so``). A full install on ``PATH`` keeps its own backends directory (python,
  TensorRT, ...); its stub must then match this interpreter's Python version.
* ``TritonServer(config).start()`` binds the gRPC, HTTP and metrics ports on ``config.host``
  (loopback unless told otherwise), with this interpreter's ``bin/`` first on ``PATH`` (the stub
  runs ``model.py`` with the packages of that ``python``, so the models import ``acfd`` from the
  project's venv), and returns once the server and ``config.ready_model`` answer ready over gRPC.
  ``stop()`` asks the server to shut down (SIGTERM), then kills its process group if it lingers.
  The server also dies with this process (``PR_SET_PDEATHSIG``, tied to the thread that called
  ``start()``: call it from a thread that outlives the server, normally the main one), so no
  orphan keeps the ports.
* ``model_control="explicit"`` starts the server in Triton's explicit model-control mode with every
  model of the repository loaded (``--load-model=*``), so that a model can be unloaded and loaded
  again while the others serve (what ``acfd.serving.watchdog`` does to repair a broken model).
* Every failure a user can cause raises ``ServerError`` with one line: a port in use, no server
  binary, a model that failed to load (with the server's own reason, taken from its log).
"""

from __future__ import annotations

import collections
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from acfd.runtime_env import with_library_dirs

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
LOG_TAIL_LINES = 400


class ServerError(RuntimeError):
    """The server could not be found, started or kept running; the message is one line."""


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    ready_model: str = "acfd"  # start() returns once this model answers ready
    startup_timeout_s: float = 300.0
    exit_timeout_s: int = 10  # grace the server gets to finish in-flight requests on stop
    log_verbose: int = 0
    log_file: Path | None = None  # None: a file in the server's temporary work directory
    echo_log: Callable[[str], None] | None = None  # called with each server log line
    model_control: str = "none"  # "explicit": every model loaded at start, load/unload allowed after


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    library_dirs: tuple[Path, ...]  # for LD_LIBRARY_PATH
    python_backend: Path | None  # directory holding libtriton_python.so
    stubs: Path | None  # python_backend_stubs/<major.minor>/triton_python_backend_stub


def find_tritonserver() -> TritonInstall:
    """The ``tritonserver`` on ``PATH`` (a full install), else the one in the nvidia-pytriton wheel."""
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        root = binary.parent.parent  # /opt/tritonserver/bin/tritonserver -> /opt/tritonserver
        backend = root / "backends" / "python"
        return TritonInstall(  # its python stub must match this interpreter's Python version
            binary=binary,
            library_dirs=tuple(p for p in (root / "lib",) if p.is_dir()),
            python_backend=backend if (backend / "libtriton_python.so").is_file() else None,
            stubs=None,
        )
    try:
        import pytriton
    except ImportError:
        raise ServerError(
            "no tritonserver binary: none on PATH and the nvidia-pytriton wheel is not installed "
            "(pip install nvidia-pytriton==0.7.0, or install Triton Inference Server)"
        ) from None
    dist = Path(pytriton.__file__).resolve().parent / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerError(f"no tritonserver binary: none on PATH and none at {binary}")
    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(
        binary=binary,
        library_dirs=(libs,) if libs.is_dir() else (),
        python_backend=dist / "backends" / "python",
        stubs=dist / "python_backend_stubs",
    )


def prepare_backend_dir(install: TritonInstall, dest: Path, python_version: str | None = None) -> Path:
    """Make ``dest/python/`` a python backend for this interpreter; returns ``dest``.

    The backend runs ``triton_python_backend_stub`` from its own directory, and the stub must be the
    one linked against the Python that runs the models, so the wheel's per-version stub is copied
    next to a copy of ``libtriton_python.so``.
    """
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    if install.python_backend is None or not (install.python_backend / "libtriton_python.so").is_file():
        raise ServerError(f"{install.binary}: this Triton install has no python backend (backends/python)")
    target = dest / "python"
    target.mkdir(parents=True, exist_ok=True)
    for item in install.python_backend.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    if install.stubs is not None:
        stub = install.stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            have = sorted(p.name for p in install.stubs.iterdir() if p.is_dir())
            raise ServerError(f"no python backend stub for Python {version} in {install.stubs} (have {have})")
        shutil.copy2(stub, target / "triton_python_backend_stub")
    elif not (target / "triton_python_backend_stub").is_file():
        raise ServerError(f"{install.python_backend}: no triton_python_backend_stub next to libtriton_python.so")
    return dest


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server: its libraries on ``LD_LIBRARY_PATH``, this venv's ``bin`` first on ``PATH``."""
    env = with_library_dirs(install.library_dirs, base)
    venv_bin = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")  # model prints reach the log at once
    return env


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails (another process listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: ignore TIME_WAIT
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (for tests and ``--grpc-port 0`` style use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class TritonServer:
    """One ``tritonserver`` process; a context manager that starts it and stops it."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.install: TritonInstall | None = None
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._workdir: Path | None = None
        self._shm_prefix: str | None = None
        self._log_path: Path | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._reader: threading.Thread | None = None

    # ---- addresses -------------------------------------------------------------------------
    @property
    def client_host(self) -> str:
        """Where a client on this machine connects (a wildcard bind is reached on loopback)."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.config.host, self.config.host)

    @property
    def grpc_url(self) -> str:
        return _join(self.client_host, self.config.grpc_port)

    @property
    def http_url(self) -> str:
        return _join(self.client_host, self.config.http_port)

    @property
    def metrics_url(self) -> str:
        return f"http://{_join(self.client_host, self.config.metrics_port)}/metrics"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> "TritonServer":
        cfg = self.config
        repo = Path(cfg.model_repository)
        if cfg.model_control not in ("none", "explicit"):
            raise ServerError(f"model_control {cfg.model_control!r}: choose 'none' or 'explicit'")
        if not repo.is_dir():
            raise ServerError(
                f"{repo}: model repository not found (build one with `acfd repo --export DIR --out {repo}`)"
            )
        if not any(p.joinpath("config.pbtxt").is_file() for p in repo.iterdir() if p.is_dir()):
            raise ServerError(f"{repo}: not a model repository (no <model>/config.pbtxt inside)")
        ports = {"gRPC": cfg.grpc_port, "HTTP": cfg.http_port, "metrics": cfg.metrics_port}
        if len(set(ports.values())) != len(ports):
            raise ServerError(f"the gRPC, HTTP and metrics ports must differ, got {ports}")
        for name, port in ports.items():
            if port_in_use(cfg.host, port):
                raise ServerError(
                    f"{name} port {port} on {cfg.host} is in use (choose another with --{name.lower()}-port)"
                )
        self.install = find_tritonserver()
        self._workdir = Path(tempfile.mkdtemp(prefix="acfd-tritonserver-"))
        self._shm_prefix = f"acfd_{os.getpid()}_{self._workdir.name.rsplit('-', 1)[-1]}_"
        if self.install.stubs is not None:  # the wheel: a python backend made for this interpreter
            try:
                backends = prepare_backend_dir(self.install, self._workdir / "backends")
            except BaseException:
                self._cleanup()
                raise
        else:  # a full install: its own backends (python, tensorrt, onnxruntime, ...) as they are
            backends = self.install.python_backend.parent if self.install.python_backend else None
        self._log_path = Path(cfg.log_file) if cfg.log_file else self._workdir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.install.binary),
            f"--model-repository={repo.resolve()}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.grpc_port}",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.http_port}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.metrics_port}",
            "--allow-gpu-metrics=false" if not _has_nvidia_gpu() else "--allow-gpu-metrics=true",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={cfg.exit_timeout_s}",
            f"--log-verbose={cfg.log_verbose}",
            # Our own prefix for the python backend's /dev/shm regions, so that _cleanup can remove
            # what a crashed or killed server leaves behind (the backend only removes them on a clean exit).
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]
        if backends is not None:
            command.insert(2, f"--backend-directory={backends}")
        if cfg.model_control == "explicit":
            command += ["--model-control-mode=explicit", "--load-model=*"]
        started = time.monotonic()
        log = self._log_path.open("w", encoding="utf-8", errors="replace")
        try:
            self.process = subprocess.Popen(
                command,
                env=server_environment(self.install),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
                preexec_fn=_die_with_parent,
            )
        except OSError as err:
            log.close()
            self._cleanup()
            raise ServerError(f"{self.install.binary}: cannot start ({err.strerror or err})") from err
        self._reader = threading.Thread(target=self._pump_log, args=(self.process.stdout, log), daemon=True)
        self._reader.start()
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _pump_log(self, stream, log: TextIO) -> None:
        with log:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                log.write(line)
                log.flush()
                self._log_tail.append(line.rstrip("\n"))
                if self.config.echo_log is not None:
                    self.config.echo_log(line.rstrip("\n"))

    def _wait_ready(self, started: float) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while True:
                code = self.process.poll()
                if code is not None:
                    self._reader.join(timeout=5)
                    raise ServerError(self.failure_reason(code))
                try:
                    if client.is_server_live() and client.is_model_ready(self.config.ready_model):
                        return
                except InferenceServerException:
                    pass
                if time.monotonic() - started > self.config.startup_timeout_s:
                    raise ServerError(
                        f"server not ready after {self.config.startup_timeout_s:.0f} s "
                        f"(model {self.config.ready_model!r}); log: {self._log_path}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def failure_reason(self, exit_code: int) -> str:
        """One line saying why the server exited, from its own log."""
        return explain_failure(list(self._log_tail), exit_code, self.config, self._log_path)

    @property
    def shm_prefix(self) -> str:
        """The name prefix of this server's python-backend regions in /dev/shm ("" before start)."""
        return self._shm_prefix or ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, poll_s: float = 0.25) -> int:
        """Block until the server exits on its own; its exit code.

        Polls instead of one blocking ``waitpid``: a SIGINT/SIGTERM that the kernel hands to
        another thread (the log reader, gRPC's) does not interrupt ``waitpid`` in the main thread,
        so Python would never get to run the handler while the server lives.
        """
        assert self.process is not None
        while (code := self.process.poll()) is None:
            time.sleep(poll_s)
        return code

    def stop(self, timeout_s: float | None = None) -> int | None:
        """Shut the server down (SIGTERM, then SIGKILL to its process group); its exit code."""
        proc = self.process
        code = None
        if proc is not None:
            grace = (self.config.exit_timeout_s + 5) if timeout_s is None else timeout_s
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            try:  # stubs left behind by a server that was killed or hung
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            code = proc.wait()
            if self._reader is not None:
                self._reader.join(timeout=5)
        self._cleanup()
        return code

    def _cleanup(self) -> None:
        if self._workdir is None:
            return
        if self._shm_prefix:
            for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
                region.unlink(missing_ok=True)
        shutil.rmtree(self._workdir / "backends", ignore_errors=True)
        failed = self.process is not None and self.process.returncode not in (0, None, -signal.SIGTERM)
        if not (failed and self._log_path is not None and self._log_path.parent == self._workdir):
            shutil.rmtree(self._workdir, ignore_errors=True)  # else keep the failed server's log to read
        self._workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- reading the server's log ------------------------------------------------------------------
_MESSAGE = re.compile(r'^[EWI]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?(.*?)"?\s*$')
_LOAD_FAIL = re.compile(r"failed to load '([^']+)' version \d+: (.*)")
_PORT_FAIL = re.compile(r"failed to start (\w+) service: .*?Socket '([^']+)' already in use", re.I)


def explain_failure(lines: list[str], exit_code: int, config: ServerConfig, log_path: Path | None) -> str:
    """Turn the server's log into one line: which model failed and why, a port clash, or the last error."""
    messages = [m.group(1) if (m := _MESSAGE.match(line)) else line for line in lines]
    for msg in messages:
        if m := _PORT_FAIL.search(msg):
            return f"{m.group(1).upper()} port {m.group(2)} is in use (choose another port)"
    failures = [(m.group(1), m.group(2)) for msg in messages if (m := _LOAD_FAIL.search(msg))]
    if failures:
        # an ensemble fails because a member did: name the member's own reason first
        failures.sort(key=lambda f: "depends on" in f[1] or "ensemble" in f[1])
        model, reason = failures[0]
        reason = reason.split("\\n\\nAt:")[0].removeprefix("Internal: ")  # drop the Python traceback
        reason = " ".join(reason.replace("\\n", " ").split())
        return f"model {model!r} failed to load: {reason}"
    errors = [
        msg for line, msg in zip(lines, messages) if line.startswith("E") and "CUDA" not in msg and "NVML" not in msg
    ]
    last = errors[-1] if errors else (messages[-1] if messages else "no output")
    where = f" (log: {log_path})" if log_path else ""
    return f"tritonserver exited with code {exit_code}: {' '.join(last.split())}{where}"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists()
