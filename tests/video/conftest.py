"""Shared by the video tests (tracks, resumed jobs, Ray): one export of the embedded model for the
session, and small generated cartoon videos with known identities (``acfd.scenes.clips``).

Every ``acfd predict`` here runs with ``--export`` on that folder, so subprocesses and Ray workers
use the same model files without a cache of their own. The videos are 320x180, 24 frames (two shots
of 12) at 24 fps: a few seconds of detection each on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

FRAMES = 24


@dataclass
class Videos:
    folder: Path
    paths: list[Path]
    clips: list  # acfd.scenes.clips.Clip, in the order of paths


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    from acfd.detector import cached_export
    from acfd.weights import DEFAULT_WEIGHTS

    cache = tmp_path_factory.mktemp("acfd_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("ACFD_CACHE", str(cache))
    try:
        return cached_export(DEFAULT_WEIGHTS)
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Videos:
    from acfd.scenes.clips import generate_clip, write_clip

    folder = tmp_path_factory.mktemp("videos")
    clips = [generate_clip(np.random.default_rng((25, k)), 320, 180, FRAMES, 2) for k in range(2)]
    paths = [write_clip(folder / f"clip{k}.mp4", clip) for k, clip in enumerate(clips)]
    return Videos(folder, paths, clips)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """A folder of three generated scenes (one in a subfolder) and one file that is not an image."""
    from acfd.scenes.synth import generate_scene

    folder = tmp_path_factory.mktemp("images") / "stills"
    (folder / "inner").mkdir(parents=True)
    for k, name in enumerate(("a.png", "b.png", "inner/c.png")):
        scene = generate_scene(np.random.default_rng((26, k)), 320, 180)[0]
        cv2.imwrite(str(folder / name), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder
