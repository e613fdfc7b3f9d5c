"""Drawing primitives shared by the cartoon-scene generator (``synth_faces``, ``synth_background``,
``synth``): colours, a sprite layer with an alpha channel, and pasting sprites into a scene.

Contract:

- Colours are RGB tuples of ints in 0..255; every random choice comes from the ``numpy`` Generator
  passed in, so a scene is a pure function of its generator state.
- A ``Layer`` is drawn like an OpenCV image, but each primitive also covers an alpha plane. Shapes are
  drawn anti-aliased onto black, so ``rgb`` is premultiplied by ``alpha``: resizing or rotating both
  with the same linear filter and compositing with ``out = rgb + bg * (1 - alpha)`` stays correct.
- A ``Sprite`` is a finished layer plus an optional face-region mask (the pixels that define the
  face box, see docs/data.md) and the sprite pixel that lands on the placement point.
- ``Scene`` holds the image and an ``owner`` map: the id of the face whose face region is the topmost
  thing at each pixel (-1 where anything else is on top), from which visibility under occlusion is
  measured.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

Color = tuple[int, int, int]
AA = cv2.LINE_AA


def hsv(h: float, s: float, v: float) -> Color:
    """RGB colour from hue (turns, wraps), saturation and value in 0..1."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def random_color(
    rng: np.random.Generator, s: tuple[float, float] = (0.2, 0.9), v: tuple[float, float] = (0.3, 1.0)
) -> Color:
    return hsv(rng.random(), rng.uniform(*s), rng.uniform(*v))


def shade(color: Color, factor: float, hue_shift: float = 0.0) -> Color:
    """Darker (factor < 1) or lighter (> 1) version of ``color``, optionally with a hue shift."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in color))
    if factor > 1.0:
        return hsv(h + hue_shift, s / factor, 1.0 - (1.0 - v) / factor)
    return hsv(h + hue_shift, min(1.0, s * (2.0 - factor) * 0.8 + 0.1), v * factor)


def mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x * (1.0 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def pts(points) -> np.ndarray:
    """Float point list/array ``[K, 2]`` to the int32 shape OpenCV polygons take."""
    return np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)


def ellipse_points(cx: float, cy: float, rx: float, ry: float, n: int = 48, angle: float = 0.0) -> np.ndarray:
    """``[n, 2]`` points of an ellipse rotated by ``angle`` radians."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + x * ca - y * sa, cy + x * sa + y * ca], axis=1)


class Layer:
    """An RGB canvas (premultiplied) with alpha; drawing calls cover both planes."""

    def __init__(self, width: int, height: int):
        self.rgb = np.zeros((height, width, 3), np.uint8)
        self.alpha = np.zeros((height, width), np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    def poly(self, points, color: Color, outline: Color | None = None, thickness: int = 0) -> None:
        p = pts(points)
        cv2.fillPoly(self.rgb, [p], color, AA)
        cv2.fillPoly(self.alpha, [p], 255, AA)
        if outline is not None and thickness > 0:
            self.polyline(points, outline, thickness, closed=True)

    def polyline(self, points, color: Color, thickness: int, closed: bool = False) -> None:
        p = pts(points)
        t = max(1, int(thickness))
        cv2.polylines(self.rgb, [p], closed, color, t, AA)
        cv2.polylines(self.alpha, [p], closed, 255, t, AA)

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        color: Color,
        outline: Color | None = None,
        thickness: int = 0,
        angle: float = 0.0,
    ) -> None:
        self.poly(ellipse_points(cx, cy, max(rx, 0.5), max(ry, 0.5), 40, angle), color, outline, thickness)

    def arc(
        self, cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, color: Color, thickness: int
    ) -> None:
        t = np.radians(np.linspace(start_deg, end_deg, 24))
        self.polyline(np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1), color, thickness)

    def mask_of(self, points) -> np.ndarray:
        """Binary mask (uint8 0/255, not anti-aliased) of a filled polygon, same size as the layer."""
        m = np.zeros(self.alpha.shape, np.uint8)
        cv2.fillPoly(m, [pts(points)], 255)
        return m

    def paint(self, mask: np.ndarray, color: Color) -> None:
        """Set opaque ``color`` where ``mask`` (bool or 0/255) is set, inside what is already drawn."""
        sel = mask.astype(bool) & (self.alpha > 0)
        a = self.alpha[sel].astype(np.float32)[:, None] / 255.0
        self.rgb[sel] = np.round(np.asarray(color, np.float32) * a).astype(np.uint8)


@dataclass
class Sprite:
    rgb: np.ndarray  # uint8 [h, w, 3], premultiplied
    alpha: np.ndarray  # uint8 [h, w]
    face: np.ndarray | None  # uint8 [h, w] face-region mask (0/255), None when the sprite has no face
    anchor: tuple[float, float]  # sprite pixel (x, y) placed on the target point


def finish_sprite(
    layer: Layer, face: np.ndarray | None, anchor: tuple[float, float], supersample: int, angle_deg: float
) -> Sprite:
    """Downscale a layer drawn ``supersample`` times too large and rotate it about ``anchor``."""
    rgb, alpha = layer.rgb, layer.alpha
    ax, ay = anchor
    if supersample > 1:
        w, h = layer.size
        size = (max(1, round(w / supersample)), max(1, round(h / supersample)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        face = None if face is None else cv2.resize(face, size, interpolation=cv2.INTER_AREA)
        ax, ay = ax / supersample, ay / supersample
    x, y, w, h = cv2.boundingRect(alpha)  # drop the empty margins before rotating and pasting
    if w == 0 or h == 0:
        x, y, w, h = 0, 0, 1, 1
    rgb, alpha = rgb[y : y + h, x : x + w], alpha[y : y + h, x : x + w]
    face = None if face is None else face[y : y + h, x : x + w]
    ax, ay = ax - x, ay - y
    if abs(angle_deg) > 0.5:
        h, w = alpha.shape
        m = cv2.getRotationMatrix2D((ax, ay), angle_deg, 1.0)
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int)
        m[:, 2] -= (x0, y0)
        size = (int(x1 - x0), int(y1 - y0))
        rgb = cv2.warpAffine(rgb, m, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        alpha = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
        face = None if face is None else cv2.warpAffine(face, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
        ax, ay = ax - x0, ay - y0
    return Sprite(rgb, alpha, face, (ax, ay))


class Scene:
    """The image being composed and, per pixel, which face's face region is on top (-1: none)."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.owner = np.full(image.shape[:2], -1, np.int32)
        self.face_area: list[int] = []  # full face-region area of each face, inside the image or not
        self.face_boxes: list[tuple[int, int, int, int] | None] = []  # clipped tight box per face

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def paste(self, sprite: Sprite, x: float, y: float) -> int | None:
        """Composite ``sprite`` with its anchor at ``(x, y)``; returns the new face id, if it has a face."""
        h, w = sprite.alpha.shape
        left, top = int(round(x - sprite.anchor[0])), int(round(y - sprite.anchor[1]))
        W, H = self.size
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + w, W), min(top + h, H)
        face_id = None
        if sprite.face is not None:
            face_id = len(self.face_area)
            self.face_area.append(int(np.count_nonzero(sprite.face >= 128)))
            self.face_boxes.append(None)
        if x0 >= x1 or y0 >= y1:
            return face_id
        sx, sy = slice(x0 - left, x1 - left), slice(y0 - top, y1 - top)
        a = sprite.alpha[sy, sx]
        covered = a > 0
        if not covered.any():
            return face_id
        window = self.image[y0:y1, x0:x1]
        inv = (255 - a).astype(np.uint16)[..., None]
        blended = sprite.rgb[sy, sx].astype(np.uint16) + (window.astype(np.uint16) * inv + 127) // 255
        window[...] = np.minimum(blended, 255).astype(np.uint8)
        owner = self.owner[y0:y1, x0:x1]
        owner[a >= 128] = -1
        if sprite.face is not None:
            f = sprite.face[sy, sx] >= 128
            owner[f] = face_id
            rows, cols = np.flatnonzero(f.any(1)), np.flatnonzero(f.any(0))
            if rows.size:
                self.face_boxes[face_id] = (
                    x0 + int(cols[0]),
                    y0 + int(rows[0]),
                    x0 + int(cols[-1]) + 1,
                    y0 + int(rows[-1]) + 1,
                )
        return face_id

    def cover(self, mask: np.ndarray, x0: int = 0, y0: int = 0) -> None:
        """Mark pixels drawn directly on the image (``mask`` placed at ``x0, y0``) as hiding faces."""
        h, w = mask.shape
        W, H = self.size
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
        if xa < xb and ya < yb:
            self.owner[ya:yb, xa:xb][mask[ya - y0 : yb - y0, xa - x0 : xb - x0] > 0] = -1

    def visible_fraction(self) -> np.ndarray:
        """Per face: visible face-region pixels over the whole face-region area."""
        counts = np.zeros(len(self.face_area), np.float64)
        for i, box in enumerate(self.face_boxes):
            if box is not None:
                x0, y0, x1, y1 = box
                counts[i] = np.count_nonzero(self.owner[y0:y1, x0:x1] == i)
        return counts / np.maximum(np.asarray(self.face_area, np.float64), 1.0)
