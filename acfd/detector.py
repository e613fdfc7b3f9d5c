"""The Python API: ``from acfd import Detector; det = Detector(); det("frame.jpg")``.

``Detector(model=None, *, engine=None, backend="engine", device="cpu", threads=0, min_score=None)``:

* ``model``: ``None`` for the embedded default weights, a checkpoint (``run/best.pt``) or an
  ``acfd export`` folder. A checkpoint is exported once (with the int8 model, as ``acfd export``
  does) into a cache folder keyed by its SHA-256 (``$ACFD_CACHE``, else ``$XDG_CACHE_HOME/acfd``,
  else ``~/.cache/acfd``), so later ``Detector``\\ s of the same file start at once.
* ``backend="engine"`` (default) runs the exported graph with the CPU engine serving chose
  (``acfd.inference.engines``: OpenVINO int8 unless ``engine`` names another) through
  ``InProcessPipeline``: the served ensemble's decode, resize, detector and post-processing in
  this process, so its numbers are the server's. ``backend="torch"`` runs the fused PyTorch
  network (``device="cuda"`` where there is one) through evaluation's inference, so its numbers
  are ``acfd eval --weights``'s.
* ``det(image, min_score=None, channels="rgb")`` takes a path, encoded bytes, or a uint8 array
  ``[H, W, 3]`` (RGB unless ``channels="bgr"``, as ``cv2.imread`` gives; gray ``[H, W]`` too) and
  returns a ``Prediction``: boxes ``[N, 4]`` (x1, y1, x2, y2 in the image's own pixels) and scores
  ``[N]`` of the detections scoring at least ``min_score``, highest first. ``min_score`` defaults
  to the model's display threshold (``det.display_threshold``: chosen at its best hold-out F1);
  ``0`` keeps everything post-processing returns (scores above 0.08, the evaluation cut).
  ``det.batch(images)`` does the same for a list.
* ``det.track(video_or_frames, tracker="bytetrack", every=1, start=0, end=None)`` follows faces
  across frames (``acfd.tracking``): it yields a ``TrackedFrame`` per frame, whose ``ids`` give each
  detection's track (ids from 1; a scene cut ends every track), as ``acfd predict --track`` writes.

Bad input raises ``ValueError`` subclasses with one line naming what was wrong (``ImageError`` for
images, ``ManifestError`` / ``EngineError`` for exports, ``CheckpointError`` for checkpoints).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from acfd.cache import cache_dir
from acfd.clients.detections import Detection

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]
BACKENDS = ("engine", "torch")


@dataclass(frozen=True)
class Prediction:
    """Detections of one image, highest score first, boxes in the image's own pixels."""

    boxes: np.ndarray  # float32 [N, 4]: x1, y1, x2, y2
    scores: np.ndarray  # float32 [N]
    min_score: float
    image_size: tuple[int, int]  # (width, height)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Detection]:
        for box, score in zip(self.boxes.tolist(), self.scores.tolist()):
            yield Detection(tuple(box), float(score))

    def to_dict(self) -> dict:
        width, height = self.image_size
        return {
            "width": width,
            "height": height,
            "min_score": self.min_score,
            "detections": [d.to_dict() for d in self],
        }


@dataclass(frozen=True)
class TrackedFrame:
    """One frame of ``Detector.track``: its detections and the track id of each (``None``: on no track)."""

    frame: int
    time_s: float  # NaN when the video states no frame rate
    shot: int  # scene cuts so far (a cut ends every track)
    prediction: Prediction
    ids: list[int | None]

    def __iter__(self) -> Iterator[tuple[Detection, int | None]]:
        return zip(self.prediction, self.ids)


def cached_export(weights: str | Path) -> Path:
    """The export folder of checkpoint ``weights`` (made on first use, with the int8 model)."""
    from acfd.export.graph import export_model, file_sha256
    from acfd.export.quantize import quantize_export

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such checkpoint file")
    folder = cache_dir() / "exports" / file_sha256(weights)[:20]
    if (folder / "export.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        export_model(weights, staging, progress=False)
        quantize_export(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: use its export
            if not (folder / "export.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def to_rgb(image: np.ndarray, channels: str) -> np.ndarray:
    """A uint8 array as RGB ``[H, W, 3]``; ``ImageError`` saying what is wrong otherwise."""
    from acfd.inference.image_io import ImageError

    if channels not in ("rgb", "bgr"):
        raise ValueError(f"channels {channels!r}: say 'rgb' or 'bgr'")
    if image.dtype != np.uint8:
        raise ImageError(f"image array must be uint8 pixels, got {image.dtype} (scale floats to 0..255 and cast)")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) == 0:
        raise ImageError(f"image array shape {list(image.shape)}: want [H, W, 3] (or [H, W] gray)")
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if channels == "bgr" else image)


class Detector:
    """Cartoon-face detector in this process; see the module docstring."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        engine: str | None = None,
        backend: str = "engine",
        device: str = "cpu",
        threads: int = 0,
        min_score: float | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: choose one of {list(BACKENDS)}")
        if device != "cpu" and backend == "engine":
            backend = "torch"  # the engines are CPU engines; a GPU runs the PyTorch network
        from acfd.weights import DEFAULT_WEIGHTS

        source = Path(model) if model is not None else DEFAULT_WEIGHTS
        self.backend, self.device = backend, device
        if backend == "engine":
            from acfd.inference.pipeline import InProcessPipeline

            export = source if source.is_dir() else cached_export(source)
            self._pipeline = InProcessPipeline(export, engine=engine, threads=threads)
            self.cfg = self._pipeline.cfg
            self.engine_name = self._pipeline.engine.describe()
            self.model_path = Path(export)
            self.engine_key = self._pipeline.engine.name
            self.engine_id = f"{self.engine_key} ({self._pipeline.engine.precision})"
        else:
            self._load_torch(source, device, threads)
        self.display_threshold = float(self.cfg.display_threshold)
        self.min_score = self.display_threshold if min_score is None else float(min_score)

    def _load_torch(self, source: Path, device: str, threads: int) -> None:
        import torch

        from acfd.training.checkpoint import load_model
        from acfd.export.graph import fuse_copy
        from acfd.training.model import Predictor

        if source.is_dir():
            from acfd.inference.manifest import read_manifest

            path = read_manifest(source).checkpoint.get("path")
            if not path or not Path(path).is_file():
                raise FileNotFoundError(
                    f"{source}: backend 'torch' needs the checkpoint, which the export names as {path!r}"
                )
            source = Path(path)
        if threads:
            torch.set_num_threads(threads)
        model, preset, _ = load_model(source)
        self._predictor = Predictor(fuse_copy(model)).to(torch.device(device)).eval()
        self.cfg = preset.inference
        self.engine_name = f"PyTorch fused ({device})"
        self.model_path = Path(source)
        self.engine_key = None
        self.engine_id = f"torch ({device})"

    def __call__(self, image: ImageInput, min_score: float | None = None, channels: str = "rgb") -> Prediction:
        return self.batch([image], min_score=min_score, channels=channels)[0]

    def batch(
        self, images: Sequence[ImageInput], min_score: float | None = None, channels: str = "rgb"
    ) -> list[Prediction]:
        """One ``Prediction`` per image, in order."""
        cut = self.min_score if min_score is None else float(min_score)
        decoded = [self._decode(image, channels) for image in images]
        if self.backend == "engine":
            results = [self._pipeline.detect_rgb(rgb) for rgb in decoded]
        else:
            from acfd.training.evaluation.inference import detect_batch

            results = detect_batch(self._predictor, decoded, tuple(self.cfg.test_scales), self.cfg)
        out = []
        for rgb, (boxes, scores) in zip(decoded, results):
            keep = scores >= np.float32(cut)
            out.append(Prediction(boxes[keep], scores[keep], cut, (int(rgb.shape[1]), int(rgb.shape[0]))))
        return out

    @staticmethod
    def _decode(image: ImageInput, channels: str) -> np.ndarray:
        from acfd.inference.image_io import decode_image, read_image

        if isinstance(image, np.ndarray):
            return to_rgb(image, channels)
        if isinstance(image, (bytes, bytearray, memoryview)):
            return decode_image(bytes(image), name="image bytes")
        if isinstance(image, (str, os.PathLike)):
            return read_image(image)
        raise TypeError(f"image must be a path, encoded bytes or a uint8 array, not {type(image).__name__}")

    def identity(self) -> dict:
        """What makes this detector's answers what they are: the engine and a SHA-256 of the model files
        (an export folder's files, or the checkpoint), without thread counts (they do not change results)."""
        import hashlib

        files = sorted(p for p in self.model_path.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if self.model_path.is_dir() else [self.model_path]  # fmt: skip
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return {"engine": self.engine_id, "sha256": digest.hexdigest()}

    def track(
        self,
        source: str | os.PathLike | Iterable[ImageInput],
        *,
        tracker: str = "bytetrack",
        min_score: float | None = None,
        every: int = 1,
        start: int = 0,
        end: int | None = None,
        fps: float | None = None,
        cut_threshold: float | None = None,
        channels: str = "rgb",
    ) -> Iterator[TrackedFrame]:
        """Faces followed across frames: one ``TrackedFrame`` per detected frame, as they come.

        ``source`` is a video file (frames ``start`` to ``end``, every ``every``-th, as ``acfd predict``
        reads them) or an iterable of images (paths, bytes or arrays; ``fps`` says their rate, default
        30). Each frame's ``ids`` give the track of each detection (``None``: on no track); ids count
        from 1 in order of appearance, and a scene cut (``shot`` goes up) ends every track. These are
        the ids ``acfd predict --track`` writes for the same frames.
        """
        from acfd.tracking.cuts import DEFAULT_CUT_THRESHOLD
        from acfd.tracking.tracks import TrackBook, recorded

        threshold = DEFAULT_CUT_THRESHOLD if cut_threshold is None else float(cut_threshold)
        if every < 1 or start < 0 or (end is not None and end <= start):
            raise ValueError("every must be >= 1, start >= 0 and end > start")
        if isinstance(source, (str, os.PathLike)):
            from acfd.jobs.sources import probe_video, read_video

            path = Path(source)
            rate = probe_video(path)[0]
            frames = (
                (f.index, f.time_s, f.rgb, f.cut) for f in read_video(path, start, end, every, cut_threshold=threshold)
            )
        else:
            rate = 30.0 if fps is None else float(fps)
            frames = self._numbered(source, rate, channels, threshold)
        book = TrackBook(tracker, (rate if rate > 0 else 30.0) / every)
        shot = 0
        for index, time_s, rgb, cut in frames:
            prediction = self(rgb, min_score=min_score)
            boxes, scores = recorded(prediction.boxes, prediction.scores)
            shot += int(cut)
            ids = book.update(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), cut)
            yield TrackedFrame(index, time_s, shot, prediction, ids)

    def _numbered(self, images: Iterable[ImageInput], fps: float, channels: str, threshold: float):
        from acfd.tracking.cuts import CutDetector

        cuts = CutDetector(threshold)
        for index, image in enumerate(images):
            rgb = self._decode(image, channels)
            yield index, index / fps if fps > 0 else float("nan"), rgb, cuts.feed(rgb)

    def __repr__(self) -> str:
        return f"Detector({self.engine_name}, min_score={self.min_score:g})"
