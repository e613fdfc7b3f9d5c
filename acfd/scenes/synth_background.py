"""Cluttered cartoon backgrounds and text-like overlays for generated scenes.

``draw_background(rng, width, height) -> uint8 RGB [H, W, 3]``: one of an outdoor scene (sky
gradient, hills, clouds, trees, houses), an indoor scene (wall, floor, windows, shelves of books,
frames, furniture) or an abstract one (gradients, random shapes, stripes, checks, noise), optionally
blurred (cartoon depth of field) or darkened (night). ``draw_text_strokes`` writes a row of
subtitle-like glyphs made of random strokes; it is used for subtitles and channel logos on top of a
scene and for signs in it, so that text is clutter the detector must learn to ignore.
"""

from __future__ import annotations

import cv2
import numpy as np

from acfd.scenes.synth_draw import AA, Color, mix, pts, random_color, shade


def draw_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    style = rng.choice(["outdoor", "indoor", "abstract"], p=[0.4, 0.35, 0.25])
    if style == "outdoor":
        image = _outdoor(rng, width, height)
    elif style == "indoor":
        image = _indoor(rng, width, height)
    else:
        image = _abstract(rng, width, height)
    if rng.random() < 0.4:
        sigma = rng.uniform(0.8, 4.0)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < 0.15:
        tint = np.asarray(random_color(rng, (0.3, 0.7), (0.3, 0.6)), np.float32) / 255.0
        image = np.clip(image.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return image


def vertical_gradient(width: int, height: int, top: Color, bottom: Color) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t).astype(np.uint8)
    return cv2.resize(column, (width, height), interpolation=cv2.INTER_NEAREST)


def draw_text_strokes(
    rng: np.random.Generator,
    image: np.ndarray,
    x: float,
    y: float,
    glyph: float,
    count: int,
    color: Color,
    outline: Color | None,
) -> np.ndarray:
    """Draw ``count`` glyphs of side ``glyph`` starting at ``(x, y)`` (top-left); returns the drawn mask."""
    mask = np.zeros(image.shape[:2], np.uint8)
    thick = max(1, int(round(glyph / 9)))
    strokes = []
    for i in range(count):
        gx = x + i * glyph * 1.15
        for _ in range(int(rng.integers(2, 6))):
            a = rng.uniform(0, 1, 2) * glyph
            kind = rng.random()
            b = (
                (a[0] + rng.uniform(0.3, 1.0) * glyph * (1 if a[0] < glyph / 2 else -1), a[1])
                if kind < 0.4
                else (a[0], a[1] + rng.uniform(0.3, 1.0) * glyph * (1 if a[1] < glyph / 2 else -1))
                if kind < 0.8
                else rng.uniform(0, 1, 2) * glyph
            )
            strokes.append(pts([(gx + a[0], y + a[1]), (gx + b[0], y + b[1])]))
    if outline is not None:
        cv2.polylines(image, strokes, False, outline, thick + 2, AA)
        cv2.polylines(mask, strokes, False, 255, thick + 2)
    cv2.polylines(image, strokes, False, color, thick, AA)
    cv2.polylines(mask, strokes, False, 255, thick)
    return mask


def _outdoor(rng, W: int, H: int) -> np.ndarray:
    sky_top = random_color(rng, (0.2, 0.7), (0.6, 1.0))
    image = vertical_gradient(W, H, sky_top, mix(sky_top, (255, 255, 255), rng.uniform(0.3, 0.8)))
    horizon = H * rng.uniform(0.35, 0.8)
    for _ in range(int(rng.integers(0, 5))):  # clouds
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, horizon * 0.7), rng.uniform(0.03, 0.1) * W
        for j in range(5):
            centre = (int(cx + (j - 2) * r * 0.6), int(cy + rng.uniform(-0.3, 0.3) * r))
            cv2.circle(image, centre, int(r * rng.uniform(0.5, 0.9)), (250, 250, 252), -1, AA)
    ground = random_color(rng, (0.3, 0.8), (0.3, 0.8))
    for layer in range(int(rng.integers(1, 4))):  # hills
        xs = np.linspace(0, W, 24)
        base = horizon + layer * H * 0.08
        ys = base - np.abs(np.sin(xs / W * rng.uniform(2, 7) + rng.uniform(0, 6))) * H * rng.uniform(0.03, 0.15)
        poly = np.concatenate([np.stack([xs, ys], 1), [[W, H], [0, H]]])
        cv2.fillPoly(image, [pts(poly)], shade(ground, 0.7 + 0.15 * layer), AA)
    for _ in range(int(rng.integers(0, 4))):
        _house(rng, image, rng.uniform(0, W), horizon + rng.uniform(0, 0.15) * H, rng.uniform(0.1, 0.3) * H)
    for _ in range(int(rng.integers(0, 5))):
        _tree(rng, image, rng.uniform(0, W), horizon + rng.uniform(0, 0.25) * H, rng.uniform(0.15, 0.45) * H)
    return image


def _indoor(rng, W: int, H: int) -> np.ndarray:
    wall = random_color(rng, (0.1, 0.6), (0.4, 0.95))
    image = vertical_gradient(W, H, wall, shade(wall, rng.uniform(0.6, 0.95)))
    if rng.random() < 0.4:  # wallpaper
        step = int(rng.integers(12, 40))
        c = shade(wall, rng.uniform(0.8, 0.95))
        for x in range(0, W, step):
            cv2.line(image, (x, 0), (x, H), c, max(1, step // 4))
    floor_y = int(H * rng.uniform(0.6, 0.9))
    floor = random_color(rng, (0.2, 0.7), (0.3, 0.7))
    image[floor_y:] = floor
    for x in range(0, W, int(rng.integers(30, 90))):
        cv2.line(image, (x, floor_y), (int(x + (x - W / 2) * 0.6), H), shade(floor, 0.8), 1, AA)
    for _ in range(int(rng.integers(1, 6))):
        w, h = rng.uniform(0.08, 0.3) * W, rng.uniform(0.1, 0.4) * H
        x, y = rng.uniform(-0.1, 1) * W, rng.uniform(0.05, 0.5) * H
        kind = rng.random()
        frame = random_color(rng, (0.2, 0.6), (0.2, 0.6))
        p0, p1 = (int(x), int(y)), (int(x + w), int(y + h))
        if kind < 0.35:  # window
            cv2.rectangle(image, p0, p1, random_color(rng, (0.2, 0.5), (0.8, 1.0)), -1)
            cv2.rectangle(image, p0, p1, frame, max(2, int(w / 20)))
            cv2.line(image, (int(x + w / 2), int(y)), (int(x + w / 2), int(y + h)), frame, max(2, int(w / 25)))
        elif kind < 0.7:  # shelf with books
            cv2.rectangle(image, p0, p1, shade(frame, 0.8), -1)
            bx = x + 3
            while bx < x + w - 6:
                bw = rng.uniform(4, 14)
                bh = rng.uniform(0.4, 0.95) * h
                cv2.rectangle(image, (int(bx), int(y + h - bh)), (int(bx + bw), int(y + h)), random_color(rng), -1)
                bx += bw + 1
        else:  # picture frame or cupboard
            cv2.rectangle(image, p0, p1, random_color(rng), -1)
            cv2.rectangle(image, p0, p1, frame, max(2, int(w / 15)))
    if rng.random() < 0.5:  # table
        ty = rng.uniform(0.55, 0.85) * H
        tx = rng.uniform(-0.2, 0.6) * W
        tw = rng.uniform(0.3, 0.8) * W
        c = random_color(rng, (0.3, 0.7), (0.3, 0.8))
        cv2.rectangle(image, (int(tx), int(ty)), (int(tx + tw), int(ty + H * 0.04)), c, -1)
        for lx in (tx + 10, tx + tw - 20):
            cv2.rectangle(image, (int(lx), int(ty)), (int(lx + 10), H), shade(c, 0.7), -1)
    return image


def _abstract(rng, W: int, H: int) -> np.ndarray:
    image = vertical_gradient(W, H, random_color(rng), random_color(rng))
    if rng.random() < 0.3:  # checks or stripes
        step = int(rng.integers(10, 60))
        c = random_color(rng)
        yy, xx = np.mgrid[0:H, 0:W]
        sel = ((xx // step + yy // step) % 2 == 0) if rng.random() < 0.5 else ((xx + yy) // step % 2 == 0)
        image[sel] = (image[sel] * 0.6 + np.asarray(c) * 0.4).astype(np.uint8)
    for _ in range(int(rng.integers(5, 30))):
        c = random_color(rng)
        x, y = int(rng.uniform(0, W)), int(rng.uniform(0, H))
        s = int(rng.uniform(0.02, 0.2) * min(W, H)) + 2
        kind = rng.random()
        if kind < 0.3:
            cv2.circle(image, (x, y), s, c, -1 if rng.random() < 0.7 else 2, AA)
        elif kind < 0.6:
            cv2.rectangle(image, (x, y), (x + s, y + int(s * rng.uniform(0.3, 3))), c, -1)
        elif kind < 0.85:
            poly = np.array([x, y]) + rng.uniform(-s, s, (int(rng.integers(3, 6)), 2))
            cv2.fillPoly(image, [pts(poly)], c, AA)
        else:
            cv2.line(
                image,
                (x, y),
                (x + int(rng.uniform(-3, 3) * s), y + int(rng.uniform(-3, 3) * s)),
                c,
                int(rng.integers(1, 6)),
                AA,
            )
    if rng.random() < 0.3:
        noise = rng.integers(-20, 21, (H, W, 1), dtype=np.int16)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image


def _house(rng, image: np.ndarray, x: float, base: float, size: float) -> None:
    w, h = size * rng.uniform(0.8, 1.6), size
    wall = random_color(rng, (0.1, 0.5), (0.6, 1.0))
    cv2.rectangle(image, (int(x), int(base - h)), (int(x + w), int(base)), wall, -1)
    cv2.fillPoly(
        image,
        [pts([(x - w * 0.1, base - h), (x + w / 2, base - h * 1.6), (x + w * 1.1, base - h)])],
        random_color(rng, (0.5, 0.9), (0.3, 0.8)),
        AA,
    )
    for i in range(int(rng.integers(1, 4))):
        wx = x + w * (0.15 + 0.3 * i)
        cv2.rectangle(
            image,
            (int(wx), int(base - h * 0.75)),
            (int(wx + w * 0.18), int(base - h * 0.45)),
            random_color(rng, (0.2, 0.5), (0.7, 1.0)),
            -1,
        )


def _tree(rng, image: np.ndarray, x: float, base: float, size: float) -> None:
    trunk = random_color(rng, (0.4, 0.7), (0.25, 0.5))
    cv2.rectangle(image, (int(x - size * 0.06), int(base - size * 0.6)), (int(x + size * 0.06), int(base)), trunk, -1)
    leaf = random_color(rng, (0.4, 0.9), (0.3, 0.8))
    for _ in range(int(rng.integers(3, 7))):
        cv2.circle(
            image,
            (int(x + rng.uniform(-0.25, 0.25) * size), int(base - size * rng.uniform(0.6, 1.0))),
            int(size * rng.uniform(0.15, 0.3)),
            shade(leaf, rng.uniform(0.8, 1.0)),
            -1,
            AA,
        )
