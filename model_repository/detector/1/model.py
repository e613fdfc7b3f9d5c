"""Triton python model ``detector`` (target cpu): the exported ONNX model run by ONNX Runtime.

Per request: ``images`` float32 ``[b, 3, H, W]`` -> ``scores`` float32 ``[b, A]`` and ``boxes``
float32 ``[b, A, 4]`` (the export contract: sigmoid probabilities and x1, y1, x2, y2 in input
pixels; ``A`` is the anchor count at ``H x W``). Requests of one batch that share ``H x W`` run
as one ONNX Runtime call; each request gets back its own rows. The session is created once, in
``initialize``, and run once at every test scale there, so no client pays for the first run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        manifest_path = version_dir / "export.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: no export manifest (serve a repository built by `acfd repo --export DIR --out REPO`)")
        manifest = json.loads(manifest_path.read_text())
        onnx_info = manifest["onnx"]
        model_path = version_dir / onnx_info["file"]
        if not model_path.is_file():
            raise FileNotFoundError(f"{model_path}: no ONNX model (build the repository with `acfd repo --export DIR`)")
        threads = int(params.get("intra_op_threads", "0")) or len(os.sched_getaffinity(0))
        options = ort.SessionOptions()
        # One model instance uses every core for the operators of one forward pass; inter-op
        # parallelism would only split the same cores again (the graph is one chain of convolutions).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = onnx_info["input"]
        self.output_names = list(onnx_info["outputs"])  # ["scores", "boxes"]
        have_in = [i.name for i in self.session.get_inputs()]
        have_out = [o.name for o in self.session.get_outputs()]
        if have_in != [self.input_name] or sorted(have_out) != sorted(self.output_names):
            raise ValueError(f"{model_path}: graph has inputs {have_in} and outputs {have_out}, the manifest says "
                             f"{[self.input_name]} and {self.output_names}")
        # Warm-up: ONNX Runtime plans memory and picks kernels on the first run of each shape.
        for height, width in manifest["test_scales"]:
            self.session.run(self.output_names, {self.input_name: np.zeros((1, 3, height, width), np.float32)})

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for index, request in enumerate(requests):
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            groups.setdefault(images.shape[1:], []).append((index, images))
        for members in groups.values():
            batch = np.concatenate([images for _, images in members], axis=0)
            try:
                outputs = self.session.run(self.output_names, {self.input_name: batch})
            except Exception as err:  # e.g. an H x W the graph cannot take: fail these requests only
                error = pb_utils.TritonError(f"detector: ONNX Runtime failed on {list(batch.shape)} ({type(err).__name__}: {err})")
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(error=error)
                continue
            start = 0
            for index, images in members:
                stop = start + images.shape[0]
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:stop])) for name, out in zip(self.output_names, outputs)]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses

    def finalize(self) -> None:
        self.session = None
