"""One real Triton Inference Server for the whole test session (tests marked ``server``).

The fixture builds everything the way a user would: a ``tiny`` checkpoint (seeded, with the head's
output layers scaled down and the classification bias set so that an untrained network still
reports a few dozen spread-out detections instead of none or thousands of ties), ``export_model``,
the int8 model ``acfd export`` adds by default, ``build_repository`` (target cpu, the default
engine), and ``TritonServer`` on free loopback ports, in explicit model-control mode with the
watchdog of ``acfd serve`` running beside it (``serving.watchdog``), as ``acfd serve`` runs it. The preset is
``tiny`` with the paper's test scales divided by four, so each request costs a few tens of
milliseconds of CPU and the concurrency test fits the test budget; everything else (thresholds,
NMS, top-k, normalisation) is the paper's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_SCALES = [[120, 161], [160, 215], [200, 269]]  # the paper's (480x645, 640x860, 800x1075) / 4
HEAD_WEIGHT_SCALE = 1e-3  # random-init head outputs are in the thousands; bring them to a few units
CLS_BIAS = -2.5  # with the above: ~15-25 anchors above 0.08 per scale on a generated scene


@dataclass
class Serving:
    server: object  # acfd.serving.server.TritonServer
    repo: Path
    export_dir: Path
    checkpoint: Path
    preset: object  # acfd.training.config.Preset
    watchdog: object = None  # acfd.serving.watchdog.Watchdog

    @property
    def url(self) -> str:
        return self.server.grpc_url


def write_test_preset(path: Path) -> Path:
    rows = "\n".join(f"    - [{h}, {w}]" for h, w in TEST_SCALES)
    path.write_text(
        f"# tiny, with the test scales / 4 (serving tests)\nbase: tiny\ninference:\n  test_scales:\n{rows}\n"
    )
    return path


def three_free_ports() -> tuple[int, int, int]:
    from acfd.serving.server import free_port

    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    return tuple(sorted(ports))


def start_watched_server(repo: Path, exit_timeout_s: int = 10, **watchdog_options):
    """``TritonServer`` on free loopback ports in explicit model-control mode, and its watchdog
    (``acfd serve``'s) watching in a background thread; returns (server, watchdog)."""
    from acfd.serving.server import ServerConfig, TritonServer
    from acfd.serving.watchdog import Watchdog, WatchdogConfig

    grpc_port, http_port, metrics_port = three_free_ports()
    config = ServerConfig(
        repo, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, startup_timeout_s=180,
        model_control="explicit", exit_timeout_s=exit_timeout_s,
    )  # fmt: skip
    server = TritonServer(config).start()
    try:
        watchdog = Watchdog(server, WatchdogConfig(**watchdog_options), log=lambda line: print(f"watchdog: {line}"))
        watchdog.start()
    except BaseException:
        server.stop()
        raise
    return server, watchdog


@pytest.fixture(scope="session")
def watched_server():
    """``start_watched_server``, for test modules that need a server of their own (by fixture: the
    name ``conftest`` clashes with tests/conftest.py on an import)."""
    return start_watched_server


def make_checkpoint(path: Path, preset_file: Path):
    """A seeded, untrained ``tiny`` detector whose outputs are spread around the 0.08 threshold."""
    import torch

    from acfd.training.checkpoint import save_checkpoint
    from acfd.training.config import load_preset
    from acfd.training.model import build_model

    preset = load_preset(str(preset_file))
    torch.manual_seed(0)
    model = build_model(preset)
    with torch.no_grad():
        model.head.cls_out.weight.mul_(HEAD_WEIGHT_SCALE)
        model.head.cls_out.bias.fill_(CLS_BIAS)
        model.head.reg_out.weight.mul_(HEAD_WEIGHT_SCALE)
        model.head.reg_out.bias.zero_()
    save_checkpoint(path, {"preset": preset.to_dict(), "model": model.state_dict()})
    return preset


@pytest.fixture(scope="session")
def serving(tmp_path_factory) -> Iterator[Serving]:
    from acfd.serving.repo import build_repository
    from acfd.serving.server import ServerError, find_tritonserver
    from acfd.export.graph import export_model
    from acfd.export.quantize import generated_images, quantize_export

    try:
        find_tritonserver()
    except ServerError as err:
        pytest.fail(f"make setup installs this, so its absence is a broken setup, not a skip: {err}")
    root = tmp_path_factory.mktemp("serving")
    preset = make_checkpoint(root / "tiny.pt", write_test_preset(root / "tiny_serving.yaml"))
    export_model(root / "tiny.pt", root / "export", progress=False)
    quantize_export(root / "export", generated_images(4, seed=3))  # as `acfd export` does by default
    repo = build_repository(root / "export", root / "repo", target="cpu")  # the default repository
    server, watchdog = start_watched_server(repo)
    try:
        yield Serving(server=server, repo=repo, export_dir=root / "export", checkpoint=root / "tiny.pt", preset=preset,
                      watchdog=watchdog)  # fmt: skip
    finally:
        watchdog.stop()
        server.stop()
