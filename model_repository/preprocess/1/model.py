"""Triton python model ``preprocess``: encoded image bytes -> the image at the three test scales.

Per request: IMAGE uint8 ``[1, nbytes]`` -> ``SCALE_k`` uint8 RGB ``[1, H_k, W_k, 3]`` for each
``(H_k, W_k)`` in the export manifest's ``test_scales`` (decoded once, resized without keeping the
aspect ratio by ``image_io.resize_rgb``, the resize rule of training and evaluation; the detector's
graph normalises), and ``ORIGINAL_SIZE`` int32 ``[1, 2]`` (height, width). The work is
``acfd.inference.pipeline.prepare``. Decoding is ``image_io.decode_image``: grayscale, RGBA and 16-bit are handled,
too many pixels is refused from the header before decoding, OpenCV refuses truncated files. Empty,
undecodable, truncated, too small or too large input, or more than one image in a request, gets an
error response for that request only; the other requests of the batch are answered normally.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from acfd.inference.manifest import read_manifest
from acfd.inference.pipeline import prepare
from acfd.inference import image_io


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_pixels = int(params.get("max_pixels", image_io.MAX_PIXELS))
        self.min_side = int(params.get("min_side", 1))
        manifest = read_manifest(Path(args["model_repository"]) / args["model_version"])
        self.scales = list(manifest.test_scales)
        outputs = sorted(o["name"] for o in config["output"] if o["name"].startswith("SCALE_"))
        if len(outputs) != len(self.scales):
            raise ValueError(
                f"preprocess: {len(self.scales)} test scales in export.json, "
                f"but the config has {len(outputs)} SCALE outputs"
            )
        # Warm-up: the first decode/resize pays for OpenCV's lazy initialisation, not a client.
        ok, png = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))
        self._prepare(png.reshape(1, -1))

    def _prepare(self, data: np.ndarray) -> list[np.ndarray]:
        if data.dtype != np.uint8:
            raise image_io.ImageError(f"IMAGE must be UINT8 encoded bytes, got {data.dtype}")
        if data.ndim != 2 or data.shape[0] != 1:
            raise image_io.ImageError(
                f"IMAGE shape {list(data.shape)}: send one encoded image per request, shape [1, nbytes]"
            )
        pixels, (height, width) = prepare(np.ascontiguousarray(data[0]), self.scales, self.max_pixels, self.min_side)
        return pixels + [np.array([[height, width]], dtype=np.int32)]

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                arrays = self._prepare(pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy())
            except image_io.ImageError as err:
                # The caller's bytes (no image, too many pixels, a wrong dtype): INVALID_ARG, which the
                # ensemble passes to the client as gRPC INVALID_ARGUMENT; other failures stay INTERNAL.
                error = pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            except Exception as err:  # a fault here, not in the input (INTERNAL); the batch goes on
                message = f"IMAGE: preprocessing failed ({type(err).__name__}: {err})"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
                continue
            names = [f"SCALE_{k}" for k in range(len(self.scales))] + ["ORIGINAL_SIZE"]
            tensors = [pb_utils.Tensor(name, array) for name, array in zip(names, arrays)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        pass
