"""Reaching a Ray cluster for ``acfd predict --ray [ADDRESS]``, with one-line errors.

* ``check_ray(address)``: Ray is installed, and a ``host:port`` or ``ray://host:port`` address
  answers a TCP connection within 3 s (a wrong address is one line at once, not a minute of retries).
* ``connect(address)``: joins the cluster (``ray.init(address=...)``); with no address, the Ray this
  process is already connected to, else a new local Ray on this machine (``address="local"``).
  Returns whether this call started the connection (then ``disconnect`` ends it).
"""

from __future__ import annotations

import socket


class ClusterError(Exception):
    """The cluster cannot be used (one line saying why and what to do)."""


def check_ray(address: str) -> None:
    try:
        import ray  # noqa: F401
    except ImportError as err:
        raise ClusterError("--ray needs Ray: pip install 'acfd[cluster]'") from err
    target = address.removeprefix("ray://")
    if not target or target in ("auto", "local"):
        return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: say host:port (the head's GCS port, 6379), ray://host:10001 or auto")
    try:
        socket.create_connection((host, int(port)), timeout=3.0).close()
    except OSError as err:
        raise ClusterError(f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one there with "
                           "`ray start --head`, or leave ADDRESS out for a local Ray")  # fmt: skip


def connect(address: str, num_cpus: int | None = None) -> bool:
    import logging

    import ray

    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=num_cpus, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        raise ClusterError(
            f"cannot connect to Ray at {address or 'a local Ray'}: {' '.join(str(err).split())}"
        ) from err
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()
