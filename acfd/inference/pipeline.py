"""The served pipeline's steps as plain functions, and all of them in one process.

``prepare`` is the ``preprocess`` model's work (decode once, resize to every test scale with the
resize rule of training and evaluation, uint8 pixels out), an engine of
``acfd.inference.engines`` is the ``detector`` model's, and ``acfd.inference.postprocess`` is the
``postprocess`` model's. The three served python models call these functions, and
``InProcessPipeline`` chains them in one process: the yardstick ``acfd loadtest`` holds the server
to (same engine, same images, same post-processing, no server in between).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path


import numpy as np

from acfd.inference.engines import Engine, open_engine
from acfd.inference.manifest import ExportManifest
from acfd.inference import image_io


def prepare(
    data: bytes | np.ndarray,
    scales: Sequence[Sequence[int]],
    max_pixels: int = image_io.MAX_PIXELS,
    min_side: int = 1,
    name: str = "IMAGE",
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Encoded image bytes -> (uint8 RGB ``[1, H_k, W_k, 3]`` per test scale, original ``(height, width)``).

    ``ImageError`` (naming ``name``) for bytes that cannot be used: empty, undecodable, too many
    pixels, or a side under ``min_side``.
    """
    rgb = image_io.decode_image(data, max_pixels=max_pixels, name=name)
    height, width = rgb.shape[:2]
    if min(height, width) < min_side:
        raise image_io.ImageError(f"{name}: {width}x{height} image is smaller than {min_side} px on a side")
    return resize_scales(rgb, scales), (height, width)


def resize_scales(rgb: np.ndarray, scales: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """uint8 RGB ``[H, W, 3]`` resized to each scale: ``[1, H_k, W_k, 3]`` per scale."""
    return [image_io.resize_rgb(rgb, int(h), int(w))[None] for h, w in scales]


def inference_config(manifest: ExportManifest):
    """The ``InferenceConfig`` the manifest's post-processing settings describe."""
    from acfd.inference.config import InferenceConfig

    settings = manifest.postprocess
    return dataclasses.replace(
        InferenceConfig(),
        test_scales=manifest.test_scales,
        score_threshold=settings.score_threshold,
        pre_nms_topk=settings.pre_nms_topk,
        nms_iou=settings.nms_iou,
        max_detections=settings.max_detections,
        display_threshold=settings.display_threshold,
    )


class InProcessPipeline:
    """Bytes in, ``(boxes [N, 4], scores [N])`` in original pixels out: the served ensemble in one
    process. ``engine`` ``None`` takes the serving default for the export (``choose_engine``)."""

    def __init__(
        self, export_dir: str | Path, engine: str | None = None, threads: int = 0, runner: Engine | None = None
    ):
        self.manifest = ExportManifest.read(export_dir)
        self.cfg = inference_config(self.manifest)
        self.engine = runner or open_engine(export_dir, self.manifest, engine, threads)

    def __call__(self, data: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels, image_hw = prepare(data, self.cfg.test_scales)
        return self._detect(pixels, image_hw)

    def detect_rgb(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same for an already decoded uint8 RGB image ``[H, W, 3]``."""
        return self._detect(resize_scales(rgb, self.cfg.test_scales), rgb.shape[:2])

    def _detect(self, pixels: list[np.ndarray], image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        from acfd.inference.postprocess import postprocess

        outputs = []
        for scale_pixels, scale_hw in zip(pixels, self.cfg.test_scales):
            scores, boxes = self.engine(scale_pixels)
            outputs.append((scores[0], boxes[0], scale_hw))
        return postprocess(outputs, image_hw, self.cfg, xp=np)


def time_in_process(
    pipeline: InProcessPipeline, images: Sequence[bytes], seconds: float = 0.0, progress: str | None = None
):
    """``images`` through ``pipeline`` one at a time, after one untimed warm-up image, until every
    image ran once and ``seconds`` have passed: ``(index, seconds, (boxes, scores))`` per run. The
    one in-process timer of ``acfd demo`` and ``acfd loadtest``; ``progress`` names a tqdm bar."""
    import sys
    import time

    from tqdm import tqdm

    runs = []
    if not images:
        return runs
    pipeline(images[0])  # warm-up: allocator, thread pool, first-run planning
    started = time.perf_counter()
    with tqdm(desc=progress, unit="img", file=sys.stderr, leave=False, disable=progress is None) as bar:
        while True:
            for index, data in enumerate(images):
                begin = time.perf_counter()
                result = pipeline(data)
                runs.append((index, time.perf_counter() - begin, result))
                bar.update(1)
            if time.perf_counter() - started >= seconds:
                return runs
