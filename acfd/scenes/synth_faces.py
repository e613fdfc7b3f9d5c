"""One cartoon character head, drawn with OpenCV: ``draw_head(rng, face_w, face_h, angle) -> Sprite``.

The face box (docs/data.md, "box convention") is the tight box of the *face region*: the head shape
from the brow line down to the chin, between the widest points of the cheeks. Ears, hair, hats and
the cranium above the brows are outside it; bangs, hat brims and side locks may overlap it, as in
real cartoons. A head is drawn in a local canvas where the face region before rotation is exactly the
box ``[x0, y0, x0 + face_w, y0 + face_h]``; the sprite's ``face`` mask is that region, rotated with
the head, and the scene takes the final box from the rotated mask (so rotated faces get the tight
box of their rotated face region).

Variety (paper section 1: "different faces may perform completely different characteristics"):
head shapes (ellipse, rounded square, pointed anime chin, pear, round blob, robot), skin of human
and fantasy colours, outlines of 0 to several pixels, flat / cel / gradient shading, nine eye
styles, brows, noses and muzzles, nine mouth styles, blush, beards, ears (side, cat, rabbit, bear),
seven hair styles, five hats, yaw (features shifted sideways, far eye smaller). ``facing_away=True``
draws the same head seen from behind: no features, hair over everything, no face region (a hard
negative).
"""

from __future__ import annotations

import math

import numpy as np

from acfd.scenes.synth_draw import Color, Layer, Sprite, ellipse_points, finish_sprite, hsv, mix, random_color, shade

HUMAN_SKIN: tuple[Color, ...] = (
    (255, 224, 196),
    (247, 206, 170),
    (233, 185, 140),
    (198, 140, 96),
    (141, 92, 60),
    (255, 236, 220),
    (250, 215, 190),
)
HAIR: tuple[Color, ...] = (
    (25, 20, 20),
    (60, 40, 30),
    (110, 70, 40),
    (230, 200, 110),
    (200, 80, 40),
    (240, 240, 245),
    (70, 90, 200),
    (230, 120, 170),
    (60, 160, 90),
    (150, 60, 180),
)
HEAD_KINDS = ("ellipse", "round_rect", "chin", "pear", "blob", "robot")
HEAD_P = (0.3, 0.12, 0.22, 0.14, 0.14, 0.08)
EYES = ("dot", "round", "anime", "closed", "line", "x", "robot", "lidded", "cyclops")
EYES_P = (0.16, 0.24, 0.22, 0.1, 0.05, 0.02, 0.07, 0.1, 0.04)
MOUTHS = ("smile", "frown", "line", "open", "o", "teeth", "cat", "beak", "wavy")
MOUTHS_P = (0.26, 0.08, 0.12, 0.22, 0.07, 0.1, 0.06, 0.04, 0.05)


def draw_head(
    rng: np.random.Generator, face_w: float, face_h: float, angle_deg: float = 0.0, facing_away: bool = False
) -> Sprite:
    """A head whose face region is ``face_w x face_h`` pixels before rotation by ``angle_deg``.

    The sprite's anchor is the centre of the (unrotated) face box.
    """
    k = int(min(4, max(1, math.ceil(40.0 / max(1.0, min(face_w, face_h))))))
    fw, fh = face_w * k, face_h * k
    u = math.sqrt(fw * fh)
    kind = HEAD_KINDS[rng.choice(len(HEAD_KINDS), p=HEAD_P)]
    crown = rng.uniform(0.05, 0.3) if kind == "blob" else rng.uniform(0.3, 0.85)
    mx, top, bottom = 0.5 * fw + 0.55 * u + 6 * k, crown * fh + 1.1 * u + 6 * k, 0.7 * fh + 6 * k
    layer = Layer(int(math.ceil(fw + 2 * mx)), int(math.ceil(top + fh + bottom)))
    x0, y0 = mx, top
    head = _head_outline(rng, kind, x0, y0, fw, fh, crown)

    if kind == "robot":
        skin = hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.45, 0.9))
    elif rng.random() < 0.55:
        skin = HUMAN_SKIN[rng.integers(len(HUMAN_SKIN))]
    else:
        skin = random_color(rng, (0.15, 0.7), (0.45, 1.0))
    outline_t = 0 if rng.random() < 0.2 else max(1, int(round(min(fw, fh) * rng.uniform(0.012, 0.05))))
    outline = shade(skin, 0.35) if rng.random() < 0.4 else (int(rng.integers(10, 50)),) * 3
    hair = HAIR[rng.integers(len(HAIR))] if rng.random() < 0.8 else random_color(rng)
    hair_style = (
        "none"
        if kind == "robot"
        else str(
            rng.choice(
                ["none", "cap", "bangs", "spiky", "long", "curly", "bun"], p=[0.2, 0.18, 0.2, 0.12, 0.14, 0.08, 0.08]
            )
        )
    )
    if facing_away and hair_style == "none" and rng.random() < 0.6:
        hair_style = "cap"
    lt = max(1, int(round(min(fw, fh) * rng.uniform(0.025, 0.06))))

    if hair_style == "long":
        _long_hair_back(rng, layer, head, hair, outline, outline_t, fh, y0)
    if kind == "robot":
        _antenna(rng, layer, head, u, outline, max(lt, outline_t))
    elif rng.random() < 0.5:
        _ears(rng, layer, head, x0, y0, fw, fh, u, skin, outline, outline_t)

    layer.poly(head, skin)
    _shading(rng, layer, head, skin)
    if outline_t:
        layer.polyline(head, outline, outline_t, closed=True)
    if not facing_away:
        _features(rng, layer, kind, x0, y0, fw, fh, skin, hair, lt)
    if facing_away and hair_style != "none":
        _hair_cap(rng, layer, head, hair, outline, outline_t, y0 + fh * 1.2, 0)
    elif hair_style != "none":
        _front_hair(rng, layer, hair_style, head, x0, y0, fw, fh, u, hair, outline, outline_t)
    if rng.random() < 0.18:
        _hat(rng, layer, head, y0, u, outline, max(1, outline_t))

    face = None
    if not facing_away:
        face = layer.mask_of(head)
        face[: int(math.ceil(y0))] = 0
    anchor = (x0 + fw / 2.0, y0 + fh / 2.0)
    return finish_sprite(layer, face, anchor, k, angle_deg)


def _head_outline(rng, kind: str, x0: float, y0: float, fw: float, fh: float, crown: float) -> np.ndarray:
    """Closed outline ``[N, 2]``, starting at the chin, whose part below ``y0`` spans exactly the face box."""
    top, bottom = y0 - crown * fh, y0 + fh
    cx, cy, rx, ry = x0 + fw / 2, (top + bottom) / 2, fw / 2, (bottom - top) / 2
    t = np.linspace(0.5 * math.pi, 2.5 * math.pi, 72, endpoint=False)  # from the chin, clockwise on screen
    c, s = np.cos(t), np.sin(t)
    if kind in ("round_rect", "robot"):
        n = rng.uniform(3.0, 6.0)
        c, s = np.sign(c) * np.abs(c) ** (2 / n), np.sign(s) * np.abs(s) ** (2 / n)
    elif kind == "chin":
        c = c * (1.0 - rng.uniform(0.25, 0.55) * np.clip(s, 0, None) ** 1.5)
    elif kind == "pear":
        c = c * (1.0 + rng.uniform(0.15, 0.4) * s)
    x, y = cx + rx * c, cy + ry * s
    low = y >= y0
    left, right = x[low].min(), x[low].max()
    x = x0 + (x - left) * fw / max(right - left, 1e-6)
    return np.stack([x, y], 1)


def _shading(rng, layer: Layer, head: np.ndarray, skin: Color) -> None:
    mode = rng.choice(["flat", "cel", "gradient"], p=[0.3, 0.4, 0.3])
    if mode == "cel":
        x0, y0 = head.min(0)
        x1, y1 = head.max(0)
        dx, dy = rng.uniform(-0.25, 0.25) * (x1 - x0), rng.uniform(-0.05, 0.2) * (y1 - y0)
        lit = layer.mask_of(head + (dx, dy))
        dark = layer.mask_of(head) & ~lit
        layer.paint(dark, shade(skin, rng.uniform(0.7, 0.85), rng.uniform(-0.03, 0.03)))
    elif mode == "gradient":
        x0, y0 = np.floor(head.min(0)).astype(int)
        x1, y1 = np.ceil(head.max(0)).astype(int)
        h, w = layer.alpha.shape
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        lx = rng.uniform(0.2, 0.8)
        yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
        d = (xx / max(x1 - x0, 1) - lx) ** 2 + (yy / max(y1 - y0, 1) - 0.3) ** 2
        f = np.clip(1.08 - rng.uniform(0.3, 0.6) * d, 0.55, 1.0)[..., None]
        sel = layer.mask_of(head)[y0:y1, x0:x1] > 0
        region = layer.rgb[y0:y1, x0:x1]
        region[sel] = np.clip(region.astype(np.float32) * f, 0, 255).astype(np.uint8)[sel]
    if rng.random() < 0.25:
        x0, y0 = head.min(0)
        x1, y1 = head.max(0)
        layer.ellipse(
            x0 + (x1 - x0) * rng.uniform(0.25, 0.4),
            y0 + (y1 - y0) * 0.22,
            (x1 - x0) * 0.08,
            (y1 - y0) * 0.05,
            shade(skin, 1.6),
            angle=-0.5,
        )


def _features(rng, layer: Layer, kind: str, x0, y0, fw, fh, skin: Color, hair: Color, lt: int) -> None:
    dark: Color = (int(rng.integers(5, 60)), int(rng.integers(5, 45)), int(rng.integers(5, 45)))
    yaw = rng.uniform(-0.18, 0.18) if rng.random() < 0.35 else 0.0
    cx = x0 + fw * (0.5 + yaw)
    style = "robot" if kind == "robot" and rng.random() < 0.7 else EYES[rng.choice(len(EYES), p=EYES_P)]
    r = min(fw * 0.13, fh * 0.16) * rng.uniform(0.55, 1.35) * (1.3 if style == "anime" else 1.0)
    ey = y0 + max(fh * rng.uniform(0.22, 0.42), 1.9 * r * (1.25 if style == "anime" else 1.0))
    ey = min(ey, y0 + fh * 0.6)
    room = fw * (0.5 - abs(yaw))  # from the feature centre to the nearer cheek
    r = min(r, room / 2.0)
    gap = min(fw * rng.uniform(0.14, 0.3) + r * 0.6, room - r * 1.05)
    iris = random_color(rng, (0.5, 1.0), (0.4, 0.9))
    look = rng.uniform(-0.4, 0.4)
    # (x, size factor): turned heads show the far eye smaller
    eyes = (
        [(cx, 1.0)]
        if style == "cyclops"
        else [(cx - gap, 1.0 - max(yaw, 0) * 2.5), (cx + gap, 1.0 + min(yaw, 0) * 2.5)]
    )
    if rng.random() < 0.3:  # blush under the eyes
        for ex, sc in eyes:
            layer.ellipse(ex, ey + r * 1.5, min(r * 0.8, fw * 0.12) * sc, r * 0.4, mix(skin, (255, 120, 140), 0.45))
    if rng.random() < 0.12 and kind != "robot":  # animal muzzle
        layer.ellipse(
            cx,
            ey + (y0 + fh - ey) * 0.45,
            fw * rng.uniform(0.18, 0.3),
            (y0 + fh - ey) * 0.3,
            shade(skin, rng.choice([0.8, 1.5])),
        )
    for ex, sc in eyes:
        _eye(layer, style, ex, ey, r * (1.7 if style == "cyclops" else sc), dark, iris, skin, look, lt)
    if style not in ("robot", "cyclops") and rng.random() < 0.6:
        tilt = rng.uniform(-0.5, 0.5) * r
        bt = max(1, int(round(lt * rng.uniform(0.8, 2.2))))
        for i, (ex, sc) in enumerate(eyes):
            side = -1 if i == 0 else 1
            by = ey - r * (2.0 if style == "anime" else 1.6)
            brow = [(ex - r * 0.9 * sc, by + side * tilt), (ex, by - r * 0.2), (ex + r * 0.9 * sc, by - side * tilt)]
            layer.polyline(brow, hair if rng.random() < 0.5 else dark, bt)
    if style == "round" and rng.random() < 0.15:  # glasses
        for ex, sc in eyes:
            layer.arc(ex, ey, r * 1.35 * sc, r * 1.25, 0, 360, dark, lt)
        if len(eyes) == 2:
            layer.polyline([(eyes[0][0] + r * 1.35, ey), (eyes[1][0] - r * 1.35, ey)], dark, lt)
    chin = y0 + fh
    my = ey + (chin - ey) * rng.uniform(0.5, 0.75)
    _nose(rng, layer, cx, ey + (my - ey) * 0.5, r, skin, dark, lt)
    mw = fw * rng.uniform(0.1, 0.35)
    _mouth(rng, layer, cx, my, mw, min(chin - my, mw) * 0.9, skin, dark, lt)
    if kind != "robot" and rng.random() < 0.07:  # moustache
        layer.poly([(cx - mw * 0.7, my - lt), (cx, my - (chin - my) * 0.35), (cx + mw * 0.7, my - lt)], hair)


def _eye(layer: Layer, style: str, x, y, r, dark: Color, iris: Color, skin: Color, look, lt: int) -> None:
    white: Color = (250, 250, 250)
    if style == "dot":
        layer.ellipse(x, y, r * 0.42, r * 0.55, dark)
    elif style in ("round", "lidded", "cyclops"):
        layer.ellipse(x, y, r * 0.8, r, white, dark, lt)
        layer.ellipse(x + look * r * 0.35, y + r * 0.1, r * 0.42, r * 0.5, dark)
        layer.ellipse(x + look * r * 0.35 - r * 0.15, y - r * 0.15, r * 0.14, r * 0.14, white)
        if style == "lidded":
            layer.poly(
                [
                    (x - r * 0.95, y - r * 1.1),
                    (x + r * 0.95, y - r * 1.1),
                    (x + r * 0.95, y - r * 0.1),
                    (x - r * 0.95, y + r * 0.2),
                ],
                skin,
            )
            layer.polyline([(x - r * 0.95, y + r * 0.2), (x + r * 0.95, y - r * 0.1)], dark, lt)
    elif style == "anime":
        layer.ellipse(x, y, r * 0.8, r * 1.2, white)
        layer.ellipse(x + look * r * 0.2, y + r * 0.15, r * 0.62, r * 1.0, iris)
        layer.ellipse(x + look * r * 0.2, y + r * 0.2, r * 0.32, r * 0.52, dark)
        layer.ellipse(x - r * 0.25, y - r * 0.3, r * 0.2, r * 0.25, white)
        layer.ellipse(x + r * 0.25, y + r * 0.5, r * 0.1, r * 0.1, white)
        layer.arc(x, y + r * 0.1, r * 0.95, r * 1.3, 195, 345, dark, lt * 2)
    elif style == "closed":
        layer.arc(x, y + r * 0.4, r * 0.8, r * 0.7, 200, 340, dark, lt + 1)
    elif style == "line":
        layer.polyline([(x - r * 0.8, y), (x + r * 0.8, y)], dark, lt + 1)
    elif style == "x":
        layer.polyline([(x - r * 0.6, y - r * 0.6), (x + r * 0.6, y + r * 0.6)], dark, lt + 1)
        layer.polyline([(x - r * 0.6, y + r * 0.6), (x + r * 0.6, y - r * 0.6)], dark, lt + 1)
    elif style == "robot":
        glow = hsv(0.5 if look > 0 else 0.0 if look < -0.2 else 0.14, 0.8, 1.0)
        layer.poly(
            [(x - r, y - r * 0.6), (x + r, y - r * 0.6), (x + r, y + r * 0.6), (x - r, y + r * 0.6)], glow, dark, lt
        )


def _nose(rng, layer: Layer, x, y, r, skin: Color, dark: Color, lt: int) -> None:
    style = rng.choice(["none", "dot", "line", "tri", "button", "cat"], p=[0.3, 0.2, 0.18, 0.12, 0.12, 0.08])
    if style == "dot":
        layer.ellipse(x, y, r * 0.15, r * 0.12, shade(skin, 0.55))
    elif style == "line":
        layer.polyline(
            [(x, y - r * 0.6), (x - r * 0.25, y + r * 0.3), (x + r * 0.1, y + r * 0.35)],
            shade(skin, 0.5),
            max(1, lt - 1),
        )
    elif style == "tri":
        layer.poly(
            [(x, y - r * 0.5), (x - r * 0.35, y + r * 0.3), (x + r * 0.35, y + r * 0.3)],
            shade(skin, 0.8),
            dark,
            max(1, lt - 1),
        )
    elif style == "button":
        layer.ellipse(x, y, r * 0.45, r * 0.35, random_color(rng, (0.5, 0.9), (0.2, 0.9)), dark, max(1, lt - 1))
    elif style == "cat":
        layer.poly([(x - r * 0.35, y - r * 0.2), (x + r * 0.35, y - r * 0.2), (x, y + r * 0.25)], (240, 130, 150))


def _mouth(rng, layer: Layer, x, y, w, h, skin: Color, dark: Color, lt: int) -> None:
    style = MOUTHS[rng.choice(len(MOUTHS), p=MOUTHS_P)]
    h = max(h, 2.0)
    red: Color = (int(rng.integers(110, 190)), 30, 40)
    if style == "smile":
        layer.arc(x, y - h * 0.4, w, h * 0.6, 20, 160, dark, lt)
    elif style == "frown":
        layer.arc(x, y + h * 0.4, w * 0.8, h * 0.4, 200, 340, dark, lt)
    elif style == "line":
        layer.polyline([(x - w * 0.6, y), (x + w * 0.6, y + rng.uniform(-0.1, 0.1) * w)], dark, lt)
    elif style == "open":
        t = np.radians(np.linspace(0, 180, 20))
        poly = np.stack([x + w * np.cos(t), y - h * 0.15 + h * 0.75 * np.sin(t)], 1)
        layer.poly(poly, red, dark, lt)
        layer.ellipse(x, y + h * 0.4, w * 0.45, h * 0.18, (240, 120, 130))
    elif style == "o":
        layer.ellipse(x, y, w * 0.3, h * 0.35, red, dark, lt)
    elif style == "teeth":
        hh = h * 0.35
        layer.poly(
            [(x - w, y - hh), (x + w, y - hh), (x + w * 0.8, y + hh), (x - w * 0.8, y + hh)], (250, 250, 240), dark, lt
        )
        for i in range(1, 4):
            xi = x - w + 2 * w * i / 4
            layer.polyline([(xi, y - hh), (xi, y + hh)], dark, max(1, lt - 1))
    elif style == "cat":
        layer.arc(x - w * 0.3, y, w * 0.3, h * 0.3, 0, 180, dark, lt)
        layer.arc(x + w * 0.3, y, w * 0.3, h * 0.3, 0, 180, dark, lt)
    elif style == "beak":
        beak = (245, int(rng.integers(140, 200)), 40)
        layer.poly([(x - w * 0.7, y - h * 0.3), (x + w * 0.7, y - h * 0.3), (x, y + h * 0.6)], beak, dark, lt)
    elif style == "wavy":
        xs = np.linspace(x - w, x + w, 9)
        layer.polyline(np.stack([xs, y + np.sin(np.linspace(0, 3 * math.pi, 9)) * h * 0.15], 1), dark, lt)


def _ears(rng, layer: Layer, head: np.ndarray, x0, y0, fw, fh, u, skin: Color, outline: Color, t: int) -> None:
    kind = rng.choice(["side", "cat", "rabbit", "bear"], p=[0.5, 0.2, 0.12, 0.18])
    inner = mix(skin, (240, 150, 160), 0.5)
    top_y = head[:, 1].min()
    cx = x0 + fw / 2
    if kind == "side":
        er = min(fw, fh) * rng.uniform(0.12, 0.2)
        ey = y0 + fh * rng.uniform(0.25, 0.45)
        for x in (x0 - er * 0.3, x0 + fw + er * 0.3):
            layer.ellipse(x, ey, er * 0.8, er, skin, outline, t)
            layer.ellipse(x, ey, er * 0.4, er * 0.55, shade(skin, 0.8))
        return
    for side in (-1, 1):
        bx = cx + side * fw * rng.uniform(0.22, 0.32)
        by = top_y + (y0 - top_y) * 0.35
        if kind == "cat":
            ear = [
                (bx - side * u * 0.18, by + u * 0.05),
                (bx + side * u * 0.1, by - u * 0.4),
                (bx + side * u * 0.22, by + u * 0.1),
            ]
            layer.poly(ear, skin, outline, t)
        elif kind == "rabbit":
            layer.ellipse(bx, by - u * 0.45, u * 0.12, u * 0.5, skin, outline, t, angle=side * 0.2)
            layer.ellipse(bx, by - u * 0.45, u * 0.06, u * 0.38, inner, angle=side * 0.2)
        else:
            layer.ellipse(bx + side * u * 0.08, by, u * 0.17, u * 0.17, skin, outline, t)
            layer.ellipse(bx + side * u * 0.08, by, u * 0.09, u * 0.09, inner)


def _antenna(rng, layer: Layer, head: np.ndarray, u, outline: Color, t: int) -> None:
    top = head[np.argmin(head[:, 1])]
    tip = (top[0] + rng.uniform(-0.2, 0.2) * u, top[1] - u * rng.uniform(0.25, 0.5))
    layer.polyline([top, tip], outline, max(1, t))
    layer.ellipse(tip[0], tip[1], u * 0.06, u * 0.06, hsv(rng.random(), 0.9, 1.0), outline, max(1, t // 2))


def _hair_cap(
    rng,
    layer: Layer,
    head: np.ndarray,
    hair: Color,
    outline: Color,
    t: int,
    cut: float,
    spikes: int,
    depth: float = 0.0,
) -> np.ndarray:
    """Hair covering the head above ``cut``, slightly larger than the head, bangs as ``spikes`` points."""
    centre = head.mean(0)
    big = centre + (head - centre) * rng.uniform(1.04, 1.12)
    above = np.flatnonzero(big[:, 1] < cut)
    if above.size < 3:
        return big
    arc = big[above[0] : above[-1] + 1]
    xl, xr = arc[0, 0], arc[-1, 0]
    if spikes:
        xs = np.linspace(xr, xl, 2 * spikes + 1)
        ys = np.where(np.arange(xs.size) % 2 == 1, cut + depth, cut)
        edge = np.stack([xs, ys], 1)
    else:
        edge = np.array([[xr, cut], [(xr + xl) / 2, cut + depth], [xl, cut]])
    poly = np.concatenate([arc, edge])
    layer.poly(poly, hair, outline, t)
    return arc


def _front_hair(rng, layer: Layer, style: str, head, x0, y0, fw, fh, u, hair: Color, outline: Color, t: int) -> None:
    cut = y0 + fh * rng.uniform(-0.1, 0.12)
    if style == "spiky":
        top = head[head[:, 1] < y0]
        for p in top[:: max(1, len(top) // 7)]:
            out = p + (p - head.mean(0)) * rng.uniform(0.25, 0.55)
            side = np.array([-(p - head.mean(0))[1], (p - head.mean(0))[0]]) * 0.18
            layer.poly([p - side, out, p + side], hair, outline, t)
    if style == "bun":
        top = head[np.argmin(head[:, 1])]
        layer.ellipse(top[0], top[1] - u * 0.1, u * 0.22, u * 0.2, hair, outline, t)
    if style == "curly":
        top = head[head[:, 1] < cut]
        for p in top[:: max(1, len(top) // 12)]:
            layer.ellipse(p[0], p[1], u * 0.13, u * 0.13, hair, outline, t)
    spikes = int(rng.integers(2, 7)) if style in ("bangs", "spiky", "long") else 0
    depth = fh * rng.uniform(0.05, 0.2) if spikes else fh * rng.uniform(-0.05, 0.08)
    _hair_cap(rng, layer, head, hair, outline, t, cut, spikes, depth)
    if style == "long":
        for side in (-1, 1):
            xe = x0 if side < 0 else x0 + fw
            xi = xe - side * fw * rng.uniform(0.08, 0.18)
            xo = xe + side * fw * 0.08
            yb = y0 + fh * rng.uniform(0.5, 1.2)
            lock = [(xo, cut - fh * 0.1), (xi, cut), (xi + side * fw * 0.04, yb), (xo, yb + fh * 0.05)]
            layer.poly(lock, hair, outline, t)


def _long_hair_back(rng, layer: Layer, head: np.ndarray, hair: Color, outline: Color, t: int, fh, y0) -> None:
    """Hair behind the head: the cranium, a little larger, continued straight down past the chin."""
    centre = head.mean(0)
    big = centre + (head - centre) * 1.12
    arc = big[big[:, 1] < y0]
    length = y0 + fh * rng.uniform(0.7, 1.4)
    (xl, _), (xr, _) = arc[0], arc[-1]
    layer.poly(
        np.concatenate([arc, [[xr + fh * 0.05, length], [xl - fh * 0.05, length]]]), shade(hair, 0.8), outline, t
    )


def _hat(rng, layer: Layer, head, y0, u, outline: Color, t: int) -> None:
    kind = rng.choice(["cap", "top", "beanie", "crown", "bow"])
    color = random_color(rng, (0.4, 0.95), (0.3, 0.95))
    x0, top = head.min(0)
    x1, _ = head.max(0)
    cx, w = (x0 + x1) / 2, x1 - x0
    base = top + (y0 - top) * rng.uniform(0.3, 0.75)
    if kind == "cap":
        dome = ellipse_points(cx, base, w * 0.55, (base - top) + u * 0.1, 36)
        layer.poly(dome[dome[:, 1] <= base + 1], color, outline, t)
        side = rng.choice([-1, 1])
        layer.ellipse(cx + side * w * 0.3, base, w * 0.5, u * 0.07, shade(color, 0.8), outline, t)
    elif kind == "top":
        hw, hh = w * 0.32, u * rng.uniform(0.5, 0.9)
        layer.poly([(cx - hw, base), (cx - hw, base - hh), (cx + hw, base - hh), (cx + hw, base)], color, outline, t)
        layer.ellipse(cx, base, w * 0.55, u * 0.07, color, outline, t)
    elif kind == "beanie":
        dome = ellipse_points(cx, base + u * 0.05, w * 0.56, (base - top) + u * 0.2, 36)
        layer.poly(dome[dome[:, 1] <= base + u * 0.05], color, outline, t)
        layer.ellipse(cx, top - u * 0.17, u * 0.1, u * 0.1, (250, 250, 250), outline, t)
    elif kind == "crown":
        hw, hh = w * 0.3, u * 0.3
        xs = np.linspace(cx - hw, cx + hw, 7)
        ys = np.where(np.arange(7) % 2 == 0, top - hh, top - hh * 0.4)
        layer.poly(
            np.concatenate([[[cx - hw, top + u * 0.05]], np.stack([xs, ys], 1), [[cx + hw, top + u * 0.05]]]),
            (240, 200, 40),
            outline,
            t,
        )
    else:
        bx, by = cx + rng.uniform(-0.3, 0.3) * w, top + u * 0.05
        for side in (-1, 1):
            layer.poly(
                [(bx, by), (bx + side * u * 0.25, by - u * 0.15), (bx + side * u * 0.25, by + u * 0.15)],
                color,
                outline,
                t,
            )
        layer.ellipse(bx, by, u * 0.06, u * 0.06, color, outline, t)
