"""Generated cartoon videos with known face identities: ``generate_clip`` and ``write_clip``.

A clip is ``shots`` shots of equal length; each shot is a background from ``synth_background`` and
2 to 4 character heads from ``synth_faces`` moving over it, each head drawn once and pasted at a new
place every frame, so a face keeps its look. The motions are scripted so that every shot holds the
cases a tracker gets wrong:

* two faces **cross** (one walks right, the other left, at nearly the same height, meeting at the
  middle of the shot; the one drawn later passes in front and hides the other for a few frames);
* with three or more faces, one **leaves** the frame at the left side and **re-enters** later at
  the same side (the same identity: a tracker that keeps it is rewarded);
* no face moves faster than ``MAX_STEP`` of the frame width a frame (5.8 px at 480 wide), so short
  shots have short walks;
* the others drift and bounce off the borders; in half the shots a foreground **pole** covers
  whatever passes behind it;
* between shots a **cut**: a new background and new characters (new identities).

The ground truth follows ``acfd.scenes.synth``: a face is labelled on a frame when at least
``MIN_VISIBLE`` of its face region shows (occlusion and the frame border count) and its box is at
least ``MIN_SIDE`` px; ``truth[f]`` is a list of ``(identity, (x1, y1, x2, y2))``. Everything is a
function of the generator, so ``generate_clip(np.random.default_rng(seed), ...)`` is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from acfd.scenes.synth import MIN_SIDE, MIN_VISIBLE
from acfd.scenes.synth_background import draw_background
from acfd.scenes.synth_draw import Layer, Scene, finish_sprite, random_color, shade
from acfd.scenes.synth_faces import draw_head

Box = tuple[float, float, float, float]
MAX_STEP = 0.012  # the fastest a face moves: this fraction of the frame width per frame


@dataclass
class Clip:
    frames: list[np.ndarray]  # uint8 RGB [H, W, 3]
    truth: list[list[tuple[int, Box]]]  # per frame: (identity, face box) of each labelled face
    fps: float
    cuts: list[int] = field(default_factory=list)  # frames where a new shot starts

    @property
    def identities(self) -> int:
        return len({i for faces in self.truth for i, _ in faces})


def generate_clip(
    rng: np.random.Generator, width: int = 480, height: int = 270, frames: int = 48, shots: int = 2, fps: float = 24.0
) -> Clip:
    """A clip of ``frames`` frames in ``shots`` shots; see the module docstring."""
    if shots < 1 or frames < 2 * shots:
        raise ValueError(f"{frames} frames cannot hold {shots} shots of at least 2 frames")
    bounds = np.linspace(0, frames, shots + 1).round().astype(int)
    clip = Clip([], [], fps, [int(b) for b in bounds[1:-1]])
    next_identity = 0
    for shot in range(shots):
        length = int(bounds[shot + 1] - bounds[shot])
        background = draw_background(rng, width, height)
        actors = _cast(rng, width, height, length, next_identity)
        next_identity += len(actors)
        pole = _pole(rng, width, height) if rng.random() < 0.5 else None
        for t in range(length):
            image, faces = _render(background, actors, pole, t)
            clip.frames.append(image)
            clip.truth.append(faces)
    return clip


def write_clip(path: str | Path, clip: Clip) -> Path:
    """The clip as an MP4 (``mp4v``) that OpenCV reads back."""
    path = Path(path)
    height, width = clip.frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), clip.fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an mp4 video here")
    for frame in clip.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@dataclass
class _Actor:
    identity: int
    sprite: object  # synth_draw.Sprite
    path: np.ndarray  # [T, 2] anchor positions (face-box centre) per frame


def _cast(rng, W: int, H: int, T: int, first_identity: int) -> list[_Actor]:
    n = int(rng.integers(2, 5))
    sizes = H * rng.uniform(0.16, 0.3, n)
    pace = MAX_STEP * W  # pixels a frame at most, whatever the shot's length
    paths = []
    t = np.arange(T, dtype=np.float64)[:, None]
    y = rng.uniform(0.3, 0.7) * H  # the two that cross, at nearly the same height, at the middle of the shot
    half = min(0.38 * W, pace * (T - 1) / 2)
    walk = 2 * half * t / max(T - 1, 1)
    paths.append(np.hstack([W / 2 - half + walk, np.full_like(t, y)]))
    paths.append(np.hstack([W / 2 + half - walk, np.full_like(t, y + rng.uniform(-0.08, 0.08) * H)]))
    if n >= 3:  # walks out at the left border, waits outside, comes back at the same side
        out, leg = sizes[2], max(1, round(0.35 * T))
        gone = -out
        start = gone + pace * leg
        x = np.full(T, gone)
        x[:leg] = start - pace * np.arange(leg)
        back = np.arange(T - leg, T)
        x[back] = gone + pace * (back - (T - leg) + 1)
        paths.append(np.hstack([x[:, None], np.full_like(t, rng.uniform(0.2, 0.8) * H)]))
    for _ in range(n - len(paths)):  # drift and bounce
        start = rng.uniform([0.15 * W, 0.2 * H], [0.85 * W, 0.8 * H])
        step = rng.uniform(-1, 1, 2) * pace / np.sqrt(2)
        paths.append(_bounce(start + step * t, W, H))
    actors = []
    for k in range(n):
        aspect = math.exp(float(np.clip(rng.normal(0.0, 0.15), -0.4, 0.4)))
        w, h = sizes[k] * math.sqrt(aspect), sizes[k] / math.sqrt(aspect)
        sprite = draw_head(rng, w, h, float(rng.normal(0.0, 5.0)))
        actors.append(_Actor(first_identity + k, sprite, paths[k]))
    order = rng.permutation(n)
    if list(order).index(0) > list(order).index(1):  # the crossing pair: the later one passes in front
        order = order[::-1]
    return [actors[i] for i in order]


def _bounce(points: np.ndarray, W: int, H: int) -> np.ndarray:
    out = points.copy()
    for axis, size in ((0, W), (1, H)):
        lo, hi = 0.1 * size, 0.9 * size
        span = hi - lo
        u = np.mod(out[:, axis] - lo, 2 * span)
        out[:, axis] = lo + np.where(u > span, 2 * span - u, u)
    return out


def _pole(rng, W: int, H: int):
    w = rng.uniform(0.04, 0.08) * W
    color = random_color(rng, (0.2, 0.8), (0.2, 0.9))
    layer = Layer(int(w) + 4, H)
    layer.poly([(2, 0), (w + 2, 0), (w + 2, H), (2, H)], color, (20, 20, 20), 2)
    layer.paint(layer.mask_of([(2, 0), (w * 0.3 + 2, 0), (w * 0.3 + 2, H), (2, H)]), shade(color, 1.4))
    return finish_sprite(layer, None, (0, 0), 1, 0.0), float(rng.uniform(0.3, 0.6) * W)


def _render(background: np.ndarray, actors: list[_Actor], pole, t: int):
    scene = Scene(background.copy())
    ids = []
    for actor in actors:
        x, y = actor.path[t]
        face_id = scene.paste(actor.sprite, float(x), float(y))
        ids.append((face_id, actor.identity))
    if pole is not None:
        scene.paste(pole[0], pole[1], 0.0)
    visible = scene.visible_fraction()
    faces = []
    for face_id, identity in ids:
        box = scene.face_boxes[face_id]
        if box is None or visible[face_id] < MIN_VISIBLE or min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
            continue
        faces.append((identity, tuple(float(v) for v in box)))
    return scene.image, faces
