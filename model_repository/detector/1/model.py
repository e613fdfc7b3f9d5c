"""Triton python model ``detector`` (target cpu): the exported graph run by a CPU engine.

Per request: ``images`` uint8 ``[b, H, W, 3]`` (RGB pixels at one test scale) -> ``scores`` float32
``[b, A]`` and ``boxes`` float32 ``[b, A, 4]`` (the export contract: sigmoid probabilities and x1,
y1, x2, y2 in input pixels; ``A`` is the anchor count at ``H x W``). The engine is the config
parameter ``engine`` (``acfd.inference.engines``: ``openvino``, ``onnxruntime``, ...; written by
``acfd repo --engine``) with ``threads`` threads. Requests of one batch that share ``H x W`` run as
one engine call; each request gets back its own rows. The engine is opened once, in
``initialize``, and run once at every test scale there, so no client pays for the first run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from acfd.inference.engines import EngineError, open_engine
from acfd.inference.manifest import read_manifest


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        manifest = read_manifest(version_dir)
        self.input_name = manifest.onnx.input
        self.output_names = list(manifest.onnx.outputs)  # ["scores", "boxes"]
        self.engine = open_engine(
            version_dir, manifest, params.get("engine") or None, threads=int(params.get("threads", "0") or 0)
        )
        # The server log says which engine serves, and (one line) any fallback it took.
        print(
            f"detector: engine {self.engine.describe()}" + (f"; {self.engine.note}" if self.engine.note else ""),
            flush=True,
        )

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for index, request in enumerate(requests):
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            groups.setdefault(images.shape[1:], []).append((index, images))
        for members in groups.values():
            batch = members[0][1] if len(members) == 1 else np.concatenate([images for _, images in members], axis=0)
            try:
                outputs = self.engine(batch)
            except Exception as err:  # fail these requests only
                # Input the contract does not allow (dtype, layout) is the caller's: INVALID_ARG; a
                # failure of the engine on allowed input is the server's: INTERNAL.
                code = (
                    pb_utils.TritonError.INVALID_ARG if isinstance(err, EngineError) else pb_utils.TritonError.INTERNAL
                )
                error = pb_utils.TritonError(
                    f"detector: {self.engine.name} failed on {list(batch.shape)} ({type(err).__name__}: {err})", code
                )
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(error=error)
                continue
            start = 0
            for index, images in members:
                stop = start + images.shape[0]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(out[start:stop]))
                    for name, out in zip(self.output_names, outputs)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses

    def finalize(self) -> None:
        self.engine = None
