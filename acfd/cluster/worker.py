"""The Ray actor of ``acfd predict --ray``: one ``Detector``, whole images and video chunks.

``model_bundle(detector)`` packs the files the driver's detector runs (an export folder's files, or
the checkpoint) and how it was built; a ``DetectWorker`` unpacks them into a temporary folder on its
node at its first unit and builds the same ``Detector`` (so a worker needs the ``acfd`` wheel, not
the model). ``DetectWorker.run(unit, [bundle reference])`` answers one unit:

* ``{"kind": "image", "path"}`` or ``{"kind": "video", "path", "first", "stop", "every", "origin",
  "cut_threshold"}`` (frames as ``acfd.jobs.sources.read_video`` reads them);
* ``{"frames": [(index, time_s, cut, (width, height), boxes, scores), ...], "seconds": s}``, index,
  time and cut ``None`` for an image; or ``{"error": "one line"}`` for input it cannot read (the
  driver reports it as a local run would). Any other exception is Ray's to retry.

Files are read from the path the driver names: every node must see the inputs at the same path
(a shared file system).

``ACFD_RAY_FAULTS=DIR`` (fault injection for tests): every file in DIR is one crash: a worker that
starts a unit takes a file (renames it to ``*.taken``) if there is one and exits at once, as a
process killed by a node failure would.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def model_bundle(detector, threads: int = 1) -> dict:
    """What a worker needs to build the driver's detector: its model files and arguments."""
    path = detector.model_path
    files = (
        [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")] if path.is_dir() else [path]
    )
    return {
        "folder": path.is_dir(),
        "files": {p.name: p.read_bytes() for p in files},
        "kwargs": {
            "engine": detector.engine_key,
            "backend": detector.backend,
            "device": detector.device,
            "threads": threads,
            "min_score": detector.min_score,
        },
    }


class DetectWorker:
    """Builds its ``Detector`` at its first unit (and again after Ray restarts it), from the bundle."""

    def __init__(self):
        self.detector = None

    def _load(self, bundle: dict) -> None:
        from acfd.detector import Detector

        folder = Path(tempfile.mkdtemp(prefix="acfd-worker-"))
        for name, data in bundle["files"].items():
            (folder / name).write_bytes(data)
        model = folder if bundle["folder"] else folder / next(iter(bundle["files"]))
        self.detector = Detector(model, **bundle["kwargs"])

    def run(self, unit: dict, bundle: list) -> dict:
        """``bundle``: a list holding the Ray reference of the ``model_bundle`` (fetched once)."""
        _crash_for_tests()
        if self.detector is None:
            import ray

            self._load(ray.get(bundle[0]))
        from acfd.jobs.sources import read_video

        frames, seconds = [], 0.0
        try:
            if unit["kind"] == "image":
                from acfd.inference.image_io import read_image

                rgb = read_image(unit["path"])
                begin = time.perf_counter()
                p = self.detector(rgb)
                seconds += time.perf_counter() - begin
                frames.append((None, None, None, (rgb.shape[1], rgb.shape[0]), p.boxes, p.scores))
            else:
                path, first, stop, every = Path(unit["path"]), unit["first"], unit["stop"], unit["every"]
                cut = unit["cut_threshold"]
                for f in read_video(path, first, stop, every, origin=unit["origin"], cut_threshold=cut, required=False):
                    begin = time.perf_counter()
                    p = self.detector(f.rgb)
                    seconds += time.perf_counter() - begin
                    frames.append((f.index, f.time_s, f.cut, (f.rgb.shape[1], f.rgb.shape[0]), p.boxes, p.scores))
        except (ValueError, OSError) as err:  # ImageError is a ValueError
            return {"error": " ".join(str(err).split())}
        return {"frames": frames, "seconds": seconds}


def _crash_for_tests() -> None:
    folder = os.environ.get("ACFD_RAY_FAULTS")
    if not folder or not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        if name.endswith(".taken"):
            continue
        try:
            os.rename(os.path.join(folder, name), os.path.join(folder, name + ".taken"))
        except OSError:
            continue  # another worker took it
        os._exit(17)
