"""A stand-in for Triton's KServe v2 gRPC service with the ACFD interface, for client tests that
need no real server: slow, flaky, unready or failing on purpose (``tests/test_client_offline.py``,
``tests/test_fleet_offline.py``)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class FakeTriton:
    """The KServe v2 gRPC service with the ACFD interface, answering ``ModelInfer`` after ``delay_s``
    with one fixed detection; the first ``unavailable`` calls get UNAVAILABLE, or the first
    ``failing`` ones the gRPC status ``code`` with ``message``; ``ready`` is what its readiness says.

    Used instead of the real server where the real one must not be provoked: Triton 2.51 can crash
    when a client deadline cancels a request just as it completes (triton-inference-server/server
    issue 7368, fixed in 24.12), and the session's server is shared by every serving test.
    """

    BOX = (3.0, 4.0, 30.0, 40.0)

    def __init__(self, delay_s: float = 0.0, unavailable: int = 0, failing: int = 0, code: str = "UNAVAILABLE",
                 message: str = "warming up", ready: bool = True):  # fmt: skip
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        self.delay_s = delay_s
        self.failing = unavailable or failing  # the first calls answered with ``code``
        self.code = getattr(grpc.StatusCode, "UNAVAILABLE" if unavailable else code)
        self.message = message
        self.ready = ready
        self.infer_calls = 0
        self.release = threading.Event()
        self.handled = threading.Event()
        self.cancelled: list[bool] = []  # per finished ModelInfer: did the client cancel it?
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self._servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{self.port}"

    def _servicer(self):
        from tritonclient.grpc import model_config_pb2 as mc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        fake = self

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
            def ServerLive(self, request, context):
                return service_pb2.ServerLiveResponse(live=True)

            def ServerReady(self, request, context):
                return service_pb2.ServerReadyResponse(ready=fake.ready)

            def ModelReady(self, request, context):
                return service_pb2.ModelReadyResponse(ready=fake.ready and request.name == "acfd")

            def RepositoryIndex(self, request, context):
                return service_pb2.RepositoryIndexResponse(
                    models=[service_pb2.RepositoryIndexResponse.ModelIndex(name="acfd", version="1", state="READY")]
                )

            def ModelConfig(self, request, context):
                config = mc.ModelConfig(
                    name="acfd",
                    platform="ensemble",
                    input=[mc.ModelInput(name="IMAGE", data_type=mc.TYPE_UINT8, dims=[-1])],
                    output=[
                        mc.ModelOutput(name="BOXES", data_type=mc.TYPE_FP32, dims=[-1, 4]),
                        mc.ModelOutput(name="SCORES", data_type=mc.TYPE_FP32, dims=[-1]),
                    ],
                )
                return service_pb2.ModelConfigResponse(config=config)

            def ModelInfer(self, request, context):
                fake.infer_calls += 1
                if fake.infer_calls <= fake.failing:
                    context.abort(fake.code, fake.message)
                fake.release.wait(fake.delay_s)
                fake.cancelled.append(not context.is_active())
                fake.handled.set()
                tensor = service_pb2.ModelInferResponse.InferOutputTensor
                return service_pb2.ModelInferResponse(
                    model_name="acfd",
                    outputs=[
                        tensor(name="BOXES", datatype="FP32", shape=[1, 4]),
                        tensor(name="SCORES", datatype="FP32", shape=[1]),
                    ],
                    raw_output_contents=[
                        np.array(fake.BOX, np.float32).tobytes(),
                        np.array([0.75], np.float32).tobytes(),
                    ],
                )

        return Servicer()

    def __enter__(self) -> "FakeTriton":
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()  # let a handler still sleeping finish at once
        self.server.stop(grace=None)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
