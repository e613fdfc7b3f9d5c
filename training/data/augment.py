"""Training augmentations of paper section 4.1: ``augment(image, boxes, rng) -> Augmented``.

The paper lists: (1) colour distortion, (2) expand by a random ratio in [1, 4] with mean padding,
(3) crop at a random size and position, (4) "random tile the faces to anchor scales", then resize
to 640x640. Our reading, step by step:

1. ``color_distort``: SSD-style photometric distortion, each with probability 1/2 and in random
   order: brightness +-32, contrast x[0.5, 1.5], saturation x[0.5, 1.5], hue +-18 degrees.
2. Then one of two geometric branches (``tile_prob`` chooses):
   - **expand + crop** (SSD): with ``expand_prob`` place the image at a random position in a
     canvas ``ratio`` times larger (ratio uniform in [1, 4]) filled with the pixel mean
     (``image_io.PIXEL_MEAN``), then, with ``crop_prob``, crop a window of 30-100% of each side
     (aspect within [1/2, 2]) at a random position, keeping the faces whose centres lie inside it
     (up to 50 tries for a window that keeps at least one face; otherwise no crop), then resize
     the window to ``size x size``.
   - **tile to anchor scales** (our reading of (4), as PyramidBox's data-anchor-sampling): pick a
     face at random; find the anchor side nearest its size (anchors 16..512 at 640, scaled with
     ``size``); pick a target anchor uniformly among those up to one step larger; rescale the image
     so the face side becomes uniform in [anchor/2, anchor*2]; take a ``size x size`` window
     holding the face (inside the image where possible, mean padding where the image is too
     small). Faces whose centres leave the window are dropped. So every face size the anchors
     cover is seen often, whatever the data's own size distribution.
3. Horizontal flip with ``flip_prob``.

The geometric steps are composed into one affine map (scale and translation per axis, continuous
pixel coordinates where pixel ``i`` spans ``[i, i+1)``) and the image is warped once, with the mean
as border value: cheap, exact, and the boxes are mapped by the same numbers. Boxes out are clipped to
``[0, size]`` and have positive area; the only boxes lost are those whose centre leaves the output
(the crop rule). All randomness comes from ``rng``, so the result is a pure function of its state.

Ignore regions (``ignore``, same convention) are mapped by the same numbers and kept while any part of
them stays in the output (clipped to it); they take no part in the random choices, so a sample's
image and faces are the same with or without them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from acfd.inference.image_io import PIXEL_MEAN, resize_rgb

MEAN_RGB = tuple(int(round(v)) for v in PIXEL_MEAN)


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 640
    tile_prob: float = 0.5  # anchor-scale tiling instead of expand + crop
    expand_prob: float = 0.5
    max_expand: float = 4.0
    crop_prob: float = 0.85
    min_crop: float = 0.3  # smallest crop side, as a fraction of the canvas side
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # at a 640 input
    flip_prob: float = 0.5
    color_prob: float = 0.5  # per photometric op


def config_for_size(cfg: AugmentConfig, size: int) -> AugmentConfig:
    """``cfg`` producing ``size x size`` outputs whose tiling targets the same anchor sides in pixels.

    ``anchor_sizes`` are read as sides at a 640 input scaled by ``size / 640``; so that a change of
    output size does not change the anchors faces are tiled to, they are pre-scaled by
    ``cfg.size / size`` (multi-scale batches, mosaic quadrants, and the trainer's own anchor sides).
    """
    if size == cfg.size:
        return cfg
    return dataclasses.replace(cfg, size=size, anchor_sizes=tuple(a * cfg.size / size for a in cfg.anchor_sizes))


@dataclass
class Augmented:
    image: np.ndarray  # uint8 RGB [size, size, 3]
    boxes: np.ndarray  # float32 [K, 4] in output pixels
    kept: np.ndarray  # int64 [K]: index of the input box each output box came from
    scale: tuple[float, float]  # input -> output: x' = x * sx + tx (before the flip)
    offset: tuple[float, float]
    flipped: bool
    ignore: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [M, 4]


def color_distort(image: np.ndarray, rng: np.random.Generator, prob: float = 0.5) -> np.ndarray:
    """Photometric distortion of a uint8 RGB image (returns a new array), through lookup tables."""
    levels = np.arange(256, dtype=np.float64)
    contrast_first = rng.random() < 0.5
    brightness = rng.uniform(-32, 32) if rng.random() < prob else 0.0
    contrast_a = rng.uniform(0.5, 1.5) if contrast_first and rng.random() < prob else 1.0
    saturation = rng.uniform(0.5, 1.5) if rng.random() < prob else None
    hue = rng.uniform(-9, 9) if rng.random() < prob else None  # OpenCV hue is degrees / 2, 0..179
    contrast_b = rng.uniform(0.5, 1.5) if not contrast_first and rng.random() < prob else 1.0
    out = cv2.LUT(image, _to_u8((levels + brightness) * contrast_a))
    if saturation is not None or hue is not None:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        h_lut = np.round(levels + (hue or 0.0)) % 180 if hue is not None else levels
        s_lut = levels * saturation if saturation is not None else levels
        lut = np.stack([_to_u8(h_lut), _to_u8(s_lut), _to_u8(levels)], axis=1).reshape(256, 1, 3)
        out = cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB)
    if contrast_b != 1.0:
        out = cv2.LUT(out, _to_u8(levels * contrast_b))
    return out


def _to_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


class _View:
    """Current canvas ``[0, w] x [0, h]`` and the affine map from input pixels to it."""

    def __init__(self, w: float, h: float):
        self.w, self.h = w, h
        self.sx = self.sy = 1.0
        self.tx = self.ty = 0.0

    def translate(self, dx: float, dy: float) -> None:
        self.tx, self.ty = self.tx + dx, self.ty + dy

    def rescale(self, fx: float, fy: float) -> None:
        self.sx, self.sy, self.tx, self.ty = self.sx * fx, self.sy * fy, self.tx * fx, self.ty * fy
        self.w, self.h = self.w * fx, self.h * fy

    def crop(self, x0: float, y0: float, w: float, h: float) -> None:
        self.translate(-x0, -y0)
        self.w, self.h = w, h

    def map(self, boxes: np.ndarray) -> np.ndarray:
        return boxes * np.array([self.sx, self.sy, self.sx, self.sy]) + np.array([self.tx, self.ty, self.tx, self.ty])


def _centres_inside(boxes: np.ndarray, x0: float, y0: float, w: float, h: float) -> np.ndarray:
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx >= x0) & (cx < x0 + w) & (cy >= y0) & (cy < y0 + h)


def _expand_crop(view: _View, boxes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> None:
    if rng.random() < cfg.expand_prob:
        ratio = rng.uniform(1.0, cfg.max_expand)
        left, top = rng.uniform(0, view.w * (ratio - 1)), rng.uniform(0, view.h * (ratio - 1))
        view.translate(left, top)
        view.w, view.h = view.w * ratio, view.h * ratio
    if rng.random() < cfg.crop_prob:
        current = view.map(boxes)
        for _ in range(50):
            w, h = view.w * rng.uniform(cfg.min_crop, 1.0), view.h * rng.uniform(cfg.min_crop, 1.0)
            if not 0.5 <= w / h <= 2.0:
                continue
            x0, y0 = rng.uniform(0, view.w - w), rng.uniform(0, view.h - h)
            if len(boxes) == 0 or _centres_inside(current, x0, y0, w, h).any():
                view.crop(x0, y0, w, h)
                break
    view.rescale(cfg.size / view.w, cfg.size / view.h)


def _tile_to_anchor(view: _View, boxes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> None:
    size = cfg.size
    anchors = np.asarray(cfg.anchor_sizes, np.float64) * size / 640.0
    b = boxes[rng.integers(len(boxes))]
    side = math.sqrt(max(b[2] - b[0], 1e-3) * max(b[3] - b[1], 1e-3))
    nearest = int(np.argmin(np.abs(np.log(anchors / side))))
    k = int(rng.integers(0, min(nearest + 1, len(anchors) - 1) + 1))
    target = rng.uniform(anchors[k] / 2, anchors[k] * 2)
    r = max(target / side, size / (cfg.max_expand * max(view.w, view.h)))  # window at most 4x the image
    view.rescale(r, r)
    fx, fy, fw, fh = (b[0] + b[2]) / 2 * r, (b[1] + b[3]) / 2 * r, (b[2] - b[0]) * r, (b[3] - b[1]) * r
    x0 = _window_start(rng, fx, fw, view.w, size)
    y0 = _window_start(rng, fy, fh, view.h, size)
    view.crop(x0, y0, size, size)


def _window_start(rng, centre: float, extent: float, canvas: float, size: int) -> float:
    """Start of a ``size`` window along one axis holding the face, within the canvas where possible."""
    lo, hi = centre + extent / 2 - size, centre - extent / 2
    if lo > hi:  # face larger than the window: keep its centre inside
        lo, hi = centre - size + 1e-3, centre
    a, b = sorted((0.0, canvas - size))
    if max(lo, a) <= min(hi, b):
        lo, hi = max(lo, a), min(hi, b)
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def augment(
    image: np.ndarray,
    boxes: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
    ignore: np.ndarray | None = None,
) -> Augmented:
    """Augment a uint8 RGB image and its float ``[N, 4]`` boxes (x1, y1, x2, y2, pixels) and ignore regions."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = image.shape[:2]
    image = color_distort(image, rng, cfg.color_prob)
    view = _View(float(w), float(h))
    if len(boxes) and rng.random() < cfg.tile_prob:
        _tile_to_anchor(view, boxes, rng, cfg)
    else:
        _expand_crop(view, boxes, rng, cfg)
    out = warp(image, view.sx, view.sy, view.tx, view.ty, cfg.size)
    mapped = view.map(boxes)
    keep = _centres_inside(mapped, 0.0, 0.0, cfg.size, cfg.size)
    mapped = np.clip(mapped[keep], 0.0, cfg.size)
    kept = np.flatnonzero(keep)
    flipped = bool(rng.random() < cfg.flip_prob)
    if flipped:
        out = np.ascontiguousarray(out[:, ::-1])
        mapped = np.stack([cfg.size - mapped[:, 2], mapped[:, 1], cfg.size - mapped[:, 0], mapped[:, 3]], 1)
    result = mapped.astype(np.float32).reshape(-1, 4)
    ok = (result[:, 2] > result[:, 0]) & (result[:, 3] > result[:, 1])  # degenerate after float32 rounding
    regions = map_regions(
        view.map(np.asarray(ignore, np.float64).reshape(-1, 4)) if ignore is not None else np.zeros((0, 4)),
        cfg.size,
        flipped,
    )
    return Augmented(out, result[ok], kept[ok], (view.sx, view.sy), (view.tx, view.ty), flipped, regions)


def map_regions(mapped: np.ndarray, size: int, flipped: bool) -> np.ndarray:
    """Ignore regions already mapped to the output: clipped to it, flipped, those left with no area dropped."""
    mapped = np.clip(np.asarray(mapped, np.float64).reshape(-1, 4), 0.0, size)
    if flipped:
        mapped = np.stack([size - mapped[:, 2], mapped[:, 1], size - mapped[:, 0], mapped[:, 3]], 1)
    out = mapped.astype(np.float32).reshape(-1, 4)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


def warp(image: np.ndarray, sx: float, sy: float, tx: float, ty: float, size: int) -> np.ndarray:
    """``size x size`` output of the map ``x' = x * sx + tx``, ``y' = y * sy + ty`` (continuous pixel
    coordinates), mean-padded outside the input. A reduction is first done by ``image_io.resize_rgb``
    (the resize rule of evaluation and serving), so the network sees the same filtering at test time;
    what remains is a translation and a scale near 1; enlargements are bilinear as in evaluation
    (``warpAffine``'s fixed-point weights, within a few grey levels of ``cv2.resize``'s)."""
    h, w = image.shape[:2]
    if tx == 0 and ty == 0 and abs(w * sx - size) < 1e-6 and abs(h * sy - size) < 1e-6:
        return resize_rgb(image, size, size)  # a plain resize: exactly evaluation's
    if sx < 1.0 or sy < 1.0:
        nw, nh = max(1, round(w * min(sx, 1.0))), max(1, round(h * min(sy, 1.0)))
        image = resize_rgb(image, nh, nw)
        sx, sy = sx * w / nw, sy * h / nh
    # continuous x' = x*s + t  <=>  pixel index i' = i*s + (t + s/2 - 1/2)
    m = np.array([[sx, 0.0, tx + sx / 2 - 0.5], [0.0, sy, ty + sy / 2 - 0.5]])
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=MEAN_RGB
    )


def resize_plain(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation input: resize to ``size x size`` (aspect not kept), boxes scaled per axis."""
    h, w = image.shape[:2]
    out = resize_rgb(image, size, size)
    scale = np.array([size / w, size / h, size / w, size / h], np.float32)
    return out, (np.asarray(boxes, np.float32).reshape(-1, 4) * scale).astype(np.float32)
