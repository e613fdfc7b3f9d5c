"""Triton python model ``postprocess``: detector outputs at every test scale -> final detections.

Per request: ``SCORES_k`` float32 ``[1, A_k]`` and ``BOXES_k`` float32 ``[1, A_k, 4]`` (the
detector's outputs at test scale ``k``, boxes in that scale's input pixels) and ``ORIGINAL_SIZE``
int32 ``[1, 2]`` (height, width) -> ``BOXES`` float32 ``[1, N, 4]`` (x1, y1, x2, y2 in original
pixels) and ``SCORES`` float32 ``[1, N]``, ``N <= max_detections``, highest score first. The
algorithm is ``acfd.inference.postprocess.postprocess`` (the one evaluation runs) with the
thresholds of the export manifest; NMS is ``acfd.kernels.nms``, stopping at ``max_detections``.

On a GPU (``device`` "auto" and CuPy usable) the work runs in CuPy: inputs that are already on the
GPU are taken over through DLPack (``Tensor.to_dlpack``, no copy), host inputs are copied up. The
at most 100 results are copied back to the host for the response.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from acfd.inference.manifest import read_manifest
from acfd.inference.pipeline import inference_config
from acfd.kernels.nms import array_module, cupy_usable
from acfd.inference.postprocess import postprocess


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.cfg = inference_config(read_manifest(Path(args["model_repository"]) / args["model_version"]))
        device = params.get("device", "auto")
        if device not in ("auto", "cpu"):
            raise ValueError(f"postprocess: parameter device must be 'auto' or 'cpu', got {device!r}")
        self.xp = array_module(prefer_gpu=device == "auto")
        self.why_not_gpu = cupy_usable() if device == "auto" else "device is 'cpu'"
        # Warm-up: on a GPU the first call compiles the NMS kernels; nobody should wait for that.
        rng = np.random.default_rng(0)
        dummy = []
        for height, width in self.cfg.test_scales:
            xy = rng.uniform(0, min(height, width) / 2, size=(64, 2)).astype(np.float32)
            boxes = np.concatenate([xy, xy + 32], axis=1)
            dummy.append(
                (self.xp.asarray(rng.uniform(0, 1, 64).astype(np.float32)), self.xp.asarray(boxes), (height, width))
            )
        postprocess(dummy, self.cfg.test_scales[0], self.cfg, xp=self.xp)

    def _array(self, request, name: str):
        """Input ``name`` as an array of ``self.xp`` (DLPack for GPU tensors, no copy)."""
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor.is_cpu():
            return self.xp.asarray(tensor.as_numpy())
        if self.xp is np:
            raise RuntimeError(f"input {name} is on the GPU but CuPy cannot be used ({self.why_not_gpu})")
        return self.xp.from_dlpack(tensor.to_dlpack())

    def _detect(self, request) -> tuple[np.ndarray, np.ndarray]:
        size = pb_utils.get_input_tensor_by_name(request, "ORIGINAL_SIZE").as_numpy()
        if size.shape != (1, 2):
            raise ValueError(f"ORIGINAL_SIZE shape {list(size.shape)}: one image per request expected")
        outputs = []
        for k, scale_hw in enumerate(self.cfg.test_scales):
            scores, boxes = self._array(request, f"SCORES_{k}"), self._array(request, f"BOXES_{k}")
            outputs.append((scores[0], boxes[0], scale_hw))
        boxes, scores = postprocess(outputs, (int(size[0, 0]), int(size[0, 1])), self.cfg, xp=self.xp)
        if self.xp is not np:  # <= 100 rows: a host copy is cheaper than a GPU output buffer
            boxes, scores = self.xp.asnumpy(boxes), self.xp.asnumpy(scores)
        return np.ascontiguousarray(boxes, np.float32), np.ascontiguousarray(scores, np.float32)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                boxes, scores = self._detect(request)
            except ValueError as err:  # inputs that break the contract (shapes): the caller's
                message = f"postprocess: {err}"
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
                )
                continue
            except Exception as err:  # one failing request fails alone, as a server fault
                message = f"postprocess: {type(err).__name__}: {err}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
                continue
            tensors = [pb_utils.Tensor("BOXES", boxes[None]), pb_utils.Tensor("SCORES", scores[None])]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        pass
