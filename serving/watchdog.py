"""The watchdog of ``acfd serve``: finds a broken model, takes it out, puts it back, and says so.

Triton 2.51 neither restarts a python-backend stub process that died (killed, out of memory) nor
tells anyone: every request through the model fails with ``Stub process '...' is not healthy`` and
``/v2/health/ready`` keeps answering 200 (issues 7230 and 8604 of triton-inference-server/server).
The watchdog runs beside the server (started in explicit model-control mode) and, every
``interval_s``:

* **restarts the server** when the ``tritonserver`` process itself has exited;
* **scans the stub processes** (``acfd.serving.stubs``, a read of ``/proc``): a model with fewer
  live stubs than instances is broken (a crash is seen within one interval, without a request);
* **probes** the served model with one small image every ``probe_every_s``, and at once after any
  request failed on the server (the failure counters of its statistics rose). A probe that fails
  names the culprit: the stub the server calls unhealthy, else the first member (in the order the
  ensemble runs them) whose failure count rose. A probe with no answer after ``hang_timeout_s``
  names the first member that completed nothing since it was sent: that member hangs (a member busy
  with other requests keeps completing them, so load alone names nobody).

A broken model is repaired the same way whatever broke it: SIGKILL its remaining stubs (the
requests a hung or frozen stub holds then fail at once, and the clients retry them), ``unload`` it
(from then on ``/v2/health/ready``, ``/v2/models/<model>/ready`` and the ensemble's readiness
answer false), ``load`` it (Triton loads the ensemble again with it), and a probe must pass before
it counts as back. One line is logged per repair (``<model>: <cause>; reloaded, back in service in
S s``). An unload that waits on a stub killed in the middle of a request may never finish (seen
with Triton 2.51); the load does not wait for it.

A killed stub leaves its shared-memory region mapped in the server for good (Triton 2.51; a clean
unload frees it): 5-30 MB of resident memory per crash, which only a new server process gives back.
The watchdog counts those orphaned regions (``acfd.serving.stubs.orphaned_regions``); once they hold
more than ``recycle_orphaned_mb``, the next repair restarts the whole server instead of reloading one
model (a few seconds more out of service, at a moment when the server is out of service anyway), so
the server's memory stays bounded however many crashes it lives through. Such a planned restart does
not count towards ``max_restarts``.

A model that cannot be loaded again within
``give_up_s`` gets the whole server restarted; more than ``max_restarts`` restarts within
``restart_window_s`` and the watchdog gives up: it stops reporting live, and ``run()`` returns 1
(``acfd serve`` exits, and an orchestrator restarts it).

``health()`` is what the health endpoints (``acfd.serving.health_http``) answer:

* ready: the server runs, no repair is under way, and the last probe passed;
* live: the watchdog has not given up and is not stalled; a repair or restart in progress is
  "wait" (still live), not "restart me".
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from acfd.serving.probe import (
    STUB_UNHEALTHY,
    Probe,
    ServedModel,
    counters,
    failing_member,
    probe_image,
    stuck_member,
)
from acfd.serving.server import ServerError, TritonServer
from acfd.serving.stubs import kill_stubs, orphaned_regions, stub_processes

SERVER = "tritonserver"


@dataclass(frozen=True)
class WatchdogConfig:
    interval_s: float = 0.5  # stub scan and statistics read
    probe_every_s: float = 2.0  # one probe at least this often (and after any failed request)
    hang_timeout_s: float = 5.0  # a probe unanswered this long, with a member completing nothing: it hangs
    load_timeout_s: float = 120.0  # one load of a model
    give_up_s: float = 60.0  # a model not back after this long: restart the whole server
    max_restarts: int = 3  # server restarts allowed within restart_window_s before giving up
    restart_window_s: float = 600.0
    # Orphaned shared memory (regions of killed stubs) the server may hold before a repair restarts
    # it instead of reloading one model; None: never.
    recycle_orphaned_mb: float | None = 64.0
    recycle_grace_s: float = 2.0  # such a restart gives in-flight requests this long before SIGKILL


@dataclass(frozen=True)
class Repair:
    """One fault the watchdog saw and what came of it."""

    what: str  # the model, or "tritonserver"
    cause: str
    at: float  # wall-clock time the fault was seen (time.time())
    took_s: float | None  # from seeing the fault to back in service; None when the repair failed


class RepairError(RuntimeError):
    """One repair attempt failed; the message is one line."""


ORPHANED_EVERY_S = 5.0  # how often the orphaned shared memory is counted for health()
UNLOAD_WAIT_S = 0.2  # the unload has started by then (a clean one ends within about a second)


class Watchdog:
    def __init__(
        self,
        server: TritonServer,
        config: WatchdogConfig = WatchdogConfig(),
        log: Callable[[str], None] = print,
        model: str | None = None,
    ):
        self.server = server
        self.config = config
        self.log = log
        self.model = model or server.config.ready_model
        self.served: ServedModel | None = None
        self.repairs: list[Repair] = []
        self.steps: dict[str, float] = {}  # how long the last repair's unload and load took
        self._client = None
        self._probe_data = probe_image()
        self._probe: Probe | None = None
        self._next_probe = 0.0
        self._failures_seen = 0
        self._instances: dict[str, set[str]] = {}  # model -> stub instance names last seen complete
        self._failing_since: float | None = None  # probes failing without a culprit since then
        self._stuck_noted = False
        self._ready = False
        self._reason = "starting"
        self._gave_up: str | None = None
        self._last_tick = time.monotonic()
        self._orphaned_mb, self._orphaned_read = 0.0, 0.0
        self._busy_until = 0.0  # a long action (load, restart) is allowed to run until then
        self._restarts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the health endpoints read ----------------------------------------------------------
    def health(self) -> dict:
        now = time.monotonic()
        with self._lock:
            live, why = True, "ok"
            if self._gave_up:
                live, why = False, self._gave_up
            elif now - self._last_tick > max(10.0, 20 * self.config.interval_s) and now > self._busy_until:
                live, why = False, f"the watchdog has not run for {now - self._last_tick:.0f} s"
            ready, reason = self._ready, self._reason
            if ready and not self.server.is_running():  # between two looks
                ready, reason = False, f"{SERVER} is not running"
            return {
                "live": live,
                "live_reason": why,
                "ready": ready and live,
                "ready_reason": "ok" if ready and live else (reason if live else why),
                "orphaned_shm_mb": round(self._orphaned_mb, 1),  # as of the last look (every 5 s)
                "repairs": [asdict(r) for r in self.repairs],
            }

    def orphaned_mb(self) -> float:
        """MB of shared memory that the server keeps mapped for stubs that died (0 when it is not running)."""
        mb = 0.0
        if self.server.is_running():
            mb = sum(orphaned_regions(self.server.pid, self.server.shm_prefix).values()) / 2**20
        self._orphaned_mb, self._orphaned_read = mb, time.monotonic()
        return mb

    @property
    def ready(self) -> bool:
        return bool(self.health()["ready"])

    # ---- running ---------------------------------------------------------------------------------
    def attach(self) -> "Watchdog":
        """Read the served model from the started server and pass a first probe (then ready)."""
        import tritonclient.grpc as grpcclient

        if self._client is not None:
            self._client.close()
        self._client = grpcclient.InferenceServerClient(self.server.grpc_url)
        self.served = ServedModel.read(self._client, self.model)
        if not self.served.probe_ok:
            self.log(f"{self.model} has no UINT8 IMAGE input and BOXES/SCORES outputs: no probes, stub scan only")
        self._instances = {}
        self._scan()
        self._probe = None
        self._verify()
        self._failures_seen = self._total_failures()
        self._set_ready()
        return self

    def run(self) -> int:
        """Watch until ``stop()``: 0, or 1 once the watchdog has given up."""
        while not self._stop.wait(self.config.interval_s):
            self.tick()
            if self._gave_up:
                return 1
        return 0

    def start(self) -> "Watchdog":
        """``attach()`` and watch in a background thread (tests, benchmarks); ``acfd serve`` calls ``run()``."""
        self.attach()
        self._thread = threading.Thread(target=self.run, name="acfd-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.config.load_timeout_s)
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- one look ----------------------------------------------------------------------------------
    def tick(self) -> None:
        self._last_tick = time.monotonic()
        if not self.server.is_running():
            code = self.server.process.poll() if self.server.process is not None else None
            if code is None:
                reason = f"{SERVER} is not running"
            elif code < 0:
                reason = f"{SERVER} was killed by {signal.Signals(-code).name}"
            else:
                reason = self.server.failure_reason(code)
            self._restart(reason)
            return
        if self._last_tick - self._orphaned_read > ORPHANED_EVERY_S:
            self.orphaned_mb()
        broken = self._scan()
        if not broken:
            broken = self._look_at_probe()
        pid = self.server.pid
        for model, cause in broken.items():
            self._repair(model, cause)
            if not self.server.is_running() or self.server.pid != pid:
                return  # down, or a new process: what else was broken went with the old one

    def _scan(self) -> dict[str, str]:
        """Models with a stub gone: {model: cause}."""
        alive: dict[str, set[str]] = collections.defaultdict(set)
        for stub in stub_processes(self.server.pid):
            if stub.alive:
                alive[stub.model].add(stub.instance)
        broken = {}
        for model, want in self.served.stub_counts.items():
            if len(alive[model]) >= want:
                self._instances[model] = alive[model]
                continue
            gone = sorted(self._instances.get(model, set()) - alive[model])
            what = f"stub process {', '.join(gone)}" if gone else f"{want - len(alive[model])} of {want} stub processes"
            broken[model] = f"{what} died"
        return broken

    def _look_at_probe(self) -> dict[str, str]:
        if not self.served.probe_ok:
            return {}
        from tritonclient.utils import InferenceServerException

        now = time.monotonic()
        try:
            current = counters(self._client)
        except InferenceServerException as err:  # a dying server shows on the next tick
            self._not_ready(f"statistics unreadable ({' '.join(str(err).split())})")
            return {}
        failures = sum(c.failed for c in current.values())
        failed_since_last, self._failures_seen = failures > self._failures_seen, failures
        probe = self._probe
        if probe is None:
            if now >= self._next_probe or failed_since_last:
                self._probe = Probe.send(self._client, self.served, self._probe_data, current)
            return {}
        if probe.done:
            self._probe, self._next_probe, self._stuck_noted = None, now + self.config.probe_every_s, False
            if probe.error is None:
                self._failing_since = None
                self._set_ready()
                return {}
            culprit = self._culprit(probe, current)
            if culprit is not None:
                return {culprit: f"probe failed: {probe.error}"}
            return self._unexplained(f"probe failed: {probe.error}", now)
        if probe.age > self.config.hang_timeout_s:
            member = stuck_member(self.served, probe.before, current)
            if member is not None:
                self._probe = None
                return {member: f"a probe got no answer within {self.config.hang_timeout_s:g} s (hangs)"}
            if not self._stuck_noted:
                self._stuck_noted = True
                self.log(f"probe unanswered for {probe.age:.0f} s while every model completes requests: busy, waiting")
            if probe.age > 6 * self.config.hang_timeout_s:
                self._probe = None
                return self._unexplained(f"probe unanswered for {probe.age:.0f} s", now)
        return {}

    def _culprit(self, probe: Probe, current) -> str | None:
        instance = probe.unhealthy_instance()
        if instance:
            for member in self.served.members:
                if instance.startswith(member + "_"):
                    return member
        member = failing_member(self.served, probe.before, current)
        if member is not None:
            return member
        states = self._states()  # a member unloaded by someone else
        for model in (*self.served.members, self.model):
            if states.get(model) != "READY":
                return model
        return None

    def _unexplained(self, cause: str, now: float) -> dict[str, str]:
        """Probes fail and no model is to blame: not ready; the whole server restarts after give_up_s."""
        self._not_ready(cause)
        self._next_probe = now + self.config.interval_s
        if self._failing_since is None:
            self._failing_since = now
            self.log(f"{cause}; no model to blame yet")
        elif now - self._failing_since > self.config.give_up_s:
            self._failing_since = None
            self._restart(f"probes failing for {self.config.give_up_s:g} s ({cause})")
        return {}

    # ---- repairs -----------------------------------------------------------------------------------
    def _repair(self, model: str, cause: str) -> None:
        from tritonclient.utils import InferenceServerException

        limit = self.config.recycle_orphaned_mb
        if limit is not None and (orphaned := self.orphaned_mb()) > limit:
            self._restart(
                f"{model}: {cause}, and {SERVER} holds {orphaned:.0f} MB of dead stubs' shared memory "
                f"(limit {limit:g} MB): a new server process instead of a reload",
                planned=True,
            )
            return
        started, at = time.monotonic(), time.time()
        self._not_ready(f"repairing {model}: {cause}")
        attempt = 0
        while True:
            try:
                self._reload(model)
                self._verify()
                break
            except (InferenceServerException, RepairError) as err:
                if not self.server.is_running():
                    return  # the next tick restarts it
                if self._another_broke(model, str(err)):
                    break  # this one is back; the next tick repairs the other
                if time.monotonic() - started > self.config.give_up_s:
                    self._record(Repair(model, cause, at, None))
                    self._restart(f"{model} could not be repaired ({' '.join(str(err).split())})")
                    return
                attempt += 1
                time.sleep(min(0.5 * 2**attempt, 5.0))
        took = time.monotonic() - started
        self._record(Repair(model, cause, at, took))
        steps = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in self.steps.items())
        self.log(f"{model}: {cause}; reloaded, back in service in {took:.1f} s ({steps})")
        # A probe sent before the repair says nothing now, and a reloaded model's statistics start
        # again from zero: compare with what the server says from here on.
        self._probe, self._stuck_noted, self._failing_since = None, False, None
        self._failures_seen = self._total_failures()
        self._set_ready()

    def _another_broke(self, model: str, error: str) -> bool:
        """Whether the check after reloading ``model`` failed because another model broke meanwhile."""
        if set(self._scan()) - {model}:
            return True
        match = STUB_UNHEALTHY.search(error)
        return bool(match) and not match.group(1).startswith(model + "_")

    def _reload(self, model: str) -> None:
        """Kill the model's stubs, unload it, load it again."""
        client = self._client
        self._busy_until = time.monotonic() + self.config.load_timeout_s + 60
        # Killed first, whatever broke: the requests a hung or frozen stub holds then fail at once.
        kill_stubs([s for s in stub_processes(self.server.pid) if s.model == model])
        client.unload_model(model, client_timeout=30)
        # The unload of an instance whose stub was killed while it ran a request may never finish
        # (seen here with Triton 2.51: UNLOADING for good). A load does not need it finished (seen
        # here too: a load started while an unload was under way, clean or stuck, brings the model
        # back), so give the unload a moment to start, then load.
        waited = time.monotonic()
        while self._states().get(model) in ("READY", "UNLOADING") and time.monotonic() - waited < UNLOAD_WAIT_S:
            time.sleep(0.05)
        unloaded = time.monotonic()
        client.load_model(model, client_timeout=self.config.load_timeout_s)
        if model != self.model and not client.is_model_ready(self.model, client_timeout=30):
            client.load_model(self.model, client_timeout=self.config.load_timeout_s)
        self.steps = {"unload_s": unloaded - waited, "load_s": time.monotonic() - unloaded}

    def _verify(self) -> None:
        """A probe must pass (or, without probes, the model must be ready): else RepairError."""
        if not self.served.probe_ok:
            if not self._client.is_model_ready(self.model, client_timeout=30):
                raise RepairError(f"{self.model} is not ready")
            return
        probe = Probe.send(self._client, self.served, self._probe_data, {})
        if not probe.wait(2 * self.config.hang_timeout_s):
            raise RepairError(f"the probe got no answer within {2 * self.config.hang_timeout_s:g} s")
        if probe.error is not None:
            raise RepairError(f"the probe failed: {probe.error}")
        self._next_probe = time.monotonic() + self.config.probe_every_s
        self._scan()  # the new stubs are the ones to watch

    def _restart(self, reason: str, planned: bool = False) -> None:
        """Stop and start the whole server; ``reason`` is a sentence saying why. A ``planned`` restart
        (memory given back) is quick to stop and does not count towards ``max_restarts``."""
        now, at = time.monotonic(), time.time()
        self._not_ready(f"restarting {SERVER}: {reason}")
        while self._restarts and now - self._restarts[0] > self.config.restart_window_s:
            self._restarts.popleft()
        if not planned:
            self._restarts.append(now)
        if len(self._restarts) > self.config.max_restarts:
            with self._lock:
                self._gave_up = (
                    f"{SERVER} restarted {self.config.max_restarts} times within "
                    f"{self.config.restart_window_s:g} s and broke again ({reason}): giving up"
                )
            self.log(self._gave_up)
            return
        self._busy_until = now + self.server.config.startup_timeout_s + 60
        self.server.stop(timeout_s=self.config.recycle_grace_s if planned else None)
        try:
            self.server.start()
            self.attach()
        except (ServerError, RepairError) as err:
            self._record(Repair(SERVER, reason, at, None))
            self.log(f"{SERVER} restart failed ({reason}): {err}")
            return
        except Exception as err:  # tritonclient errors while attaching: counted like a failed start
            self._record(Repair(SERVER, reason, at, None))
            self.log(f"{SERVER} restart failed ({reason}): {' '.join(str(err).split())}")
            return
        took = time.monotonic() - now
        self._record(Repair(SERVER, reason, at, took))
        self.log(f"{SERVER}: {reason}; restarted, back in service in {took:.1f} s")

    # ---- small helpers -----------------------------------------------------------------------------
    def _states(self) -> dict[str, str]:
        index = self._client.get_model_repository_index(as_json=True, client_timeout=30)
        return {m.get("name"): m.get("state", "") for m in index.get("models", [])}

    def _total_failures(self) -> int:
        from tritonclient.utils import InferenceServerException

        try:
            return sum(c.failed for c in counters(self._client).values())
        except InferenceServerException:
            return 0

    def _record(self, repair: Repair) -> None:
        with self._lock:
            self.repairs.append(repair)

    def _set_ready(self) -> None:
        with self._lock:
            self._ready, self._reason = True, "ok"

    def _not_ready(self, reason: str) -> None:
        with self._lock:
            self._ready, self._reason = False, reason
