"""Procedural cartoon scenes with face boxes: ``generate_scene`` and ``write_dataset``.

A scene is a cluttered background (``synth_background``), 0 to 35 characters (a body and a head from
``synth_faces``) and hard negatives (heads seen from behind, balls, round bodies, skin-coloured
blobs and hands, clocks and wheels), drawn back to front so that they occlude each other, then
foreground occluders (poles, foliage, counters, speech bubbles), subtitle and logo strokes, and
frame-level degradations (blur, noise, colour grading, JPEG artefacts).

Face boxes follow the convention in docs/data.md: the tight box of the face region (brow line to
chin, cheek to cheek, hair and hats excluded), clipped to the image. A face is left unlabelled when
less than ``MIN_VISIBLE`` of its face region is visible (covered by other things or outside the
frame) or when its clipped box is thinner than ``MIN_SIDE`` pixels; the pixels still show, as in
real annotations, where heavily hidden faces are not boxed.

Distributions (compared with the real iCartoonFace subset in docs/data_stats.png): face side
``sqrt(w*h)`` log-normal around 26% of the image height for one face, less with more faces (12 px to
1.2x the height); box aspect ``w/h`` log-normal around 1 with 12% of faces drawn beyond 2 or 1/2
(~10% after rotation) (up to 3 and 1/3, paper section 3.3), rotation mostly within +-10 degrees with
a tail to +-90, ~12% truncated at a border, 6% of scenes without faces and 6% crowds of 8 to 35
faces.

Everything is a function of the ``numpy`` Generator; ``write_dataset`` seeds image ``i`` with
``(seed, i)``, so a data set is reproducible byte for byte and its first images do not depend on
how many are written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from acfd.inference.image_io import encode_png
from acfd.scenes.synth_background import draw_background, draw_text_strokes
from acfd.scenes.synth_draw import Layer, Scene, Sprite, finish_sprite, hsv, mix, random_color, shade
from acfd.scenes.synth_faces import HUMAN_SKIN, draw_head

DEFAULT_SIZE = (640, 384)  # (width, height): landscape, like cartoon frames (~900x500)
MIN_VISIBLE = 0.35
MIN_SIDE = 4
CATEGORY = "face"


def generate_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: uint8 RGB image ``[height, width, 3]`` and float32 face boxes ``[N, 4]`` (x1, y1, x2, y2)."""
    if width < 16 or height < 16:
        raise ValueError(f"scene size {width}x{height} is too small (at least 16x16)")
    scene = Scene(draw_background(rng, width, height))
    items = [("face", f) for f in _face_params(rng, width, height)]
    n_neg = int(rng.poisson(1.2)) + (2 if not items else 0)
    items += [("negative", _negative_params(rng, width, height)) for _ in range(n_neg)]
    depth = np.array([math.log(p["size"]) + rng.normal(0, 0.6) for _, p in items])
    for i in np.argsort(depth, kind="stable"):
        kind, p = items[i]
        if kind == "face":
            _draw_character(rng, scene, p)
        else:
            _draw_negative(rng, scene, p)
    for _ in range(int(rng.choice(3, p=[0.6, 0.3, 0.1]))):
        _draw_occluder(rng, scene)
    _draw_text(rng, scene)
    image = _degrade(rng, scene.image)
    visible = scene.visible_fraction()
    boxes = [
        b
        for b, v in zip(scene.face_boxes, visible)
        if b is not None and v >= MIN_VISIBLE and min(b[2] - b[0], b[3] - b[1]) >= MIN_SIDE
    ]
    return image, np.asarray(boxes, np.float32).reshape(-1, 4)


def scene_png(rng: np.random.Generator, width: int, height: int) -> bytes:
    """One generated scene encoded as PNG bytes (what clients send a server)."""
    return encode_png(generate_scene(rng, width, height)[0])


def write_dataset(
    out_dir: str | Path, images: int, seed: int, size: tuple[int, int] = DEFAULT_SIZE, progress: bool = True
) -> dict:
    """Write ``images/synth_NNNNN.png``, ``annotations.json`` (COCO) and ``annotations.csv``
    (iCartoonFace: ``name,x1,y1,x2,y2``, no header) under ``out_dir``; returns ``{"images", "faces"}``.

    Images without faces appear in the COCO file only (the CSV format cannot list them).
    """
    width, height = size
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    coco_images, coco_anns, csv_lines = [], [], []
    for i in tqdm(range(images), desc="synth", unit="img", disable=not progress):
        image, boxes = generate_scene(np.random.default_rng([seed, i]), width, height)
        name = f"synth_{i:05d}.png"
        (out / "images" / name).write_bytes(encode_png(image))
        coco_images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for x1, y1, x2, y2 in boxes.astype(int).tolist():
            coco_anns.append(
                {
                    "id": len(coco_anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
            csv_lines.append(f"{name},{x1},{y1},{x2},{y2}\n")
    coco = {
        "info": {"description": f"ACFD generated cartoon scenes, seed {seed}", "version": "1"},
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [{"id": 1, "name": CATEGORY, "supercategory": CATEGORY}],
    }
    (out / "annotations.json").write_text(json.dumps(coco, indent=1) + "\n")
    (out / "annotations.csv").write_text("".join(csv_lines))
    return {"images": images, "faces": len(coco_anns)}


# --- faces -------------------------------------------------------------------------------------


def _face_params(rng, W: int, H: int) -> list[dict]:
    u = rng.random()
    n = 0 if u < 0.06 else int(rng.integers(8, 36)) if u < 0.12 else min(int(rng.geometric(0.45)), 8)
    cap = 1.2 * min(W, H)
    faces: list[dict] = []
    if n >= 8:  # a crowd: rows of similar faces, larger towards the bottom
        rows = int(rng.integers(2, 5))
        base = H * rng.uniform(0.04, 0.09)
        for r in range(rows):
            per_row = math.ceil(n / rows)
            y = H * (0.25 + 0.7 * (r + 0.5) / rows)
            for c in range(per_row):
                s = base * (1 + 0.35 * r) * rng.uniform(0.8, 1.2)
                x = W * (c + 0.5 + rng.uniform(-0.3, 0.3)) / per_row
                faces.append(_face(rng, x, y + rng.uniform(-0.05, 0.05) * H, s, cap, crowd=True))
        return faces
    median = 0.26 * H * max(n, 1) ** -0.25
    for _ in range(n):
        s = float(np.clip(math.exp(rng.normal(math.log(median), 0.7)), 12.0, cap))
        for _try in range(10):
            f = _face(rng, 0.0, 0.0, s, cap, crowd=False)
            f["x"], f["y"] = _position(rng, f["w"], f["h"], W, H)
            if all(_overlap(f, g) < 0.3 for g in faces):
                break
        faces.append(f)
    return faces


def _face(rng, x: float, y: float, s: float, cap: float, crowd: bool) -> dict:
    if rng.random() < 0.12:  # extreme aspect ratio, beyond 2 or 1/2 (paper section 3.3)
        a = math.exp(rng.uniform(math.log(2), math.log(3)) * (1 if rng.random() < 0.4 else -1))
    else:
        a = math.exp(float(np.clip(rng.normal(0.0, 0.22), -0.6, 0.6)))
    w, h = s * math.sqrt(a), s / math.sqrt(a)
    grow = max(1.0, 9.0 / min(w, h))
    w, h = min(w * grow, cap * 1.5), min(h * grow, cap)
    u = rng.random()
    angle = rng.normal(0, 5) if u < 0.65 else rng.uniform(-30, 30) if u < 0.93 else rng.uniform(-90, 90)
    if crowd:
        angle = rng.normal(0, 6)
    return {
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "angle": float(angle),
        "size": math.sqrt(w * h),
        "body": rng.random() < 0.65,
    }


def _position(rng, w: float, h: float, W: int, H: int) -> tuple[float, float]:
    x = rng.uniform(min(w / 2, W / 2), max(W - w / 2, W / 2))
    y = rng.uniform(min(h / 2, H / 2), max(H - h / 2, H / 2))
    if rng.random() < 0.12:  # truncated at a border
        side = int(rng.integers(4))
        if side == 0:
            x = rng.uniform(-0.2, 0.3) * w
        elif side == 1:
            x = W - rng.uniform(-0.2, 0.3) * w
        elif side == 2:
            y = rng.uniform(-0.2, 0.3) * h
        else:
            y = H - rng.uniform(-0.2, 0.3) * h
    return x, y


def _overlap(f: dict, g: dict) -> float:
    """Intersection over the smaller of the two (unrotated) face boxes."""
    ix = min(f["x"] + f["w"] / 2, g["x"] + g["w"] / 2) - max(f["x"] - f["w"] / 2, g["x"] - g["w"] / 2)
    iy = min(f["y"] + f["h"] / 2, g["y"] + g["h"] / 2) - max(f["y"] - f["h"] / 2, g["y"] - g["h"] / 2)
    return max(ix, 0) * max(iy, 0) / min(f["w"] * f["h"], g["w"] * g["h"])


def _draw_character(rng, scene: Scene, f: dict) -> None:
    a = math.radians(f["angle"])
    chin = (f["x"] - math.sin(a) * f["h"] * 0.45, f["y"] + math.cos(a) * f["h"] * 0.45)
    if f["body"]:
        scene.paste(_body(rng, f["w"], f["h"]), *chin)
    scene.paste(draw_head(rng, f["w"], f["h"], f["angle"]), f["x"], f["y"])


def _body(rng, fw: float, fh: float) -> Sprite:
    """Torso (with arms) whose anchor is the middle of its top edge, tucked under a chin."""
    k = 1 if min(fw, fh) > 30 else 2
    bw, bh = fw * rng.uniform(1.0, 2.2) * k, fh * rng.uniform(1.0, 2.8) * k
    arm = bw * 0.25
    layer = Layer(int(bw + 2 * arm + 4 * k), int(bh + 4 * k))
    cx, top = layer.size[0] / 2, 2 * k
    cloth = random_color(rng, (0.3, 0.9), (0.25, 0.95))
    outline = (25, 20, 20) if rng.random() < 0.7 else shade(cloth, 0.4)
    t = max(1, int(round(min(fw, fh) * k * rng.uniform(0.015, 0.04))))
    skin = HUMAN_SKIN[rng.integers(len(HUMAN_SKIN))] if rng.random() < 0.6 else random_color(rng)
    for side in (-1, 1):  # arms hanging or raised
        ang = rng.uniform(-0.3, 1.2)
        x0, y0 = cx + side * bw * 0.42, top + bh * 0.15
        x1, y1 = x0 + side * math.sin(ang) * bh * 0.55, y0 + math.cos(ang) * bh * 0.55
        layer.polyline([(x0, y0), (x1, y1)], cloth, max(2, int(arm * 0.6)))
        layer.ellipse(x1, y1, arm * 0.35, arm * 0.35, skin, outline, t)
    if rng.random() < 0.4:  # round body
        layer.ellipse(cx, top + bh * 0.5, bw / 2, bh / 2, cloth, outline, t)
        if rng.random() < 0.5:
            layer.ellipse(cx, top + bh * 0.55, bw * 0.3, bh * 0.32, mix(cloth, (250, 240, 220), 0.6))
    else:
        layer.poly(
            [(cx - bw * 0.38, top), (cx + bw * 0.38, top), (cx + bw / 2, top + bh), (cx - bw / 2, top + bh)],
            cloth,
            outline,
            t,
        )
    if rng.random() < 0.4:  # buttons: dark dots in a column (face-like pairs with a collar)
        for j in range(int(rng.integers(2, 4))):
            layer.ellipse(cx, top + bh * (0.25 + 0.2 * j), bw * 0.03 + 1, bw * 0.03 + 1, (30, 30, 30))
    return finish_sprite(layer, None, (cx, top), k, 0.0)


# --- hard negatives, occluders, text, degradation --------------------------------------------------


def _negative_params(rng, W: int, H: int) -> dict:
    s = float(np.clip(math.exp(rng.normal(math.log(0.12 * H), 0.7)), 10.0, 0.7 * min(W, H)))
    kind = str(
        rng.choice(["back_head", "ball", "blob", "hand", "round_body", "clock"], p=[0.25, 0.2, 0.2, 0.12, 0.13, 0.1])
    )
    return {"kind": kind, "x": rng.uniform(0, W), "y": rng.uniform(0, H), "size": s}


def _draw_negative(rng, scene: Scene, p: dict) -> None:
    s, kind = p["size"], p["kind"]
    if kind == "back_head":
        w = s * math.exp(rng.normal(0, 0.2))
        scene.paste(draw_head(rng, w, s * s / w, rng.normal(0, 8), facing_away=True), p["x"], p["y"])
        return
    k = 1 if s > 30 else 3
    r = s * k / 2
    layer = Layer(int(2 * r + 8 * k), int(2 * r + 8 * k))
    c = layer.size[0] / 2
    outline = (int(rng.integers(10, 60)),) * 3
    t = 0 if rng.random() < 0.3 else max(1, int(r * rng.uniform(0.03, 0.07)))
    if kind == "ball":
        base = random_color(rng, (0.5, 1.0), (0.6, 1.0))
        layer.ellipse(c, c, r, r, base, outline, t)
        for j in range(int(rng.integers(0, 4))):
            stripe = layer.mask_of(
                [
                    (c - r, c - r + j * r * 0.6),
                    (c + r, c - r * 0.6 + j * r * 0.6),
                    (c + r, c - r * 0.4 + j * r * 0.6),
                    (c - r, c - r * 0.8 + j * r * 0.6),
                ]
            )
            layer.paint(stripe, random_color(rng, (0.5, 1.0), (0.6, 1.0)))
        layer.ellipse(c - r * 0.35, c - r * 0.4, r * 0.2, r * 0.13, shade(base, 1.8), angle=-0.6)
    elif kind in ("blob", "round_body"):
        skin = HUMAN_SKIN[rng.integers(len(HUMAN_SKIN))] if kind == "blob" else random_color(rng)
        tt = np.linspace(0, 2 * math.pi, 36, endpoint=False)
        f1, f2 = rng.uniform(0, 2 * math.pi, 2)
        rad = r * (0.8 + 0.12 * np.sin(2 * tt + f1) + 0.08 * np.sin(3 * tt + f2))
        blob = np.stack([c + rad * np.cos(tt), c + rad * np.sin(tt) * rng.uniform(0.6, 1.0)], 1)
        layer.poly(blob, skin, outline, t)
        if kind == "round_body":
            layer.ellipse(c, c + r * 0.2, r * 0.5, r * 0.45, mix(skin, (250, 240, 220), 0.6))
    elif kind == "hand":
        skin = HUMAN_SKIN[rng.integers(len(HUMAN_SKIN))]
        for j in range(4):
            ang = -math.pi / 2 + (j - 1.5) * 0.35
            layer.ellipse(
                c + math.cos(ang) * r * 0.6,
                c + math.sin(ang) * r * 0.6,
                r * 0.14,
                r * 0.4,
                skin,
                outline,
                t,
                angle=ang + math.pi / 2,
            )
        layer.ellipse(c, c + r * 0.15, r * 0.5, r * 0.45, skin, outline, t)
        layer.ellipse(c - r * 0.55, c + r * 0.1, r * 0.13, r * 0.32, skin, outline, t, angle=-0.7)
    else:  # clock or wheel: round with marks
        layer.ellipse(c, c, r, r, random_color(rng, (0.0, 0.4), (0.6, 1.0)), outline, max(t, 1))
        for j in range(12):
            a = j * math.pi / 6
            layer.polyline(
                [
                    (c + math.cos(a) * r * 0.75, c + math.sin(a) * r * 0.75),
                    (c + math.cos(a) * r * 0.9, c + math.sin(a) * r * 0.9),
                ],
                outline,
                max(1, t),
            )
        a1, a2 = rng.uniform(0, 2 * math.pi, 2)
        layer.polyline(
            [
                (c + math.cos(a1) * r * 0.5, c + math.sin(a1) * r * 0.5),
                (c, c),
                (c + math.cos(a2) * r * 0.7, c + math.sin(a2) * r * 0.7),
            ],
            outline,
            max(1, t),
        )
    scene.paste(finish_sprite(layer, None, (c, c), k, rng.uniform(-30, 30)), p["x"], p["y"])


def _draw_occluder(rng, scene: Scene) -> None:
    W, H = scene.size
    kind = rng.choice(["pole", "foliage", "counter", "bubble"])
    color = random_color(rng, (0.2, 0.8), (0.2, 0.9))
    outline = (20, 20, 20)
    if kind == "pole":
        w = rng.uniform(0.03, 0.1) * W
        layer = Layer(int(w) + 4, H)
        layer.poly([(2, 0), (w + 2, 0), (w + 2, H), (2, H)], color, outline, 2)
        layer.paint(layer.mask_of([(2, 0), (w * 0.3 + 2, 0), (w * 0.3 + 2, H), (2, H)]), shade(color, 1.4))
        scene.paste(finish_sprite(layer, None, (0, 0), 1, 0.0), rng.uniform(0, W), 0)
    elif kind == "foliage":
        r = rng.uniform(0.05, 0.15) * H
        layer = Layer(int(6 * r), int(4 * r))
        leaf = hsv(rng.uniform(0.2, 0.45), rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.8))
        for _ in range(int(rng.integers(5, 12))):
            layer.ellipse(
                rng.uniform(r, 5 * r),
                rng.uniform(r, 3 * r),
                r * rng.uniform(0.5, 1),
                r * rng.uniform(0.4, 0.8),
                shade(leaf, rng.uniform(0.7, 1.1)),
                outline,
                1,
                angle=rng.uniform(0, 3),
            )
        x = rng.choice([0.0, float(W)]) + rng.uniform(-2, 2) * r
        scene.paste(finish_sprite(layer, None, (3 * r, 2 * r), 1, 0.0), x, rng.uniform(0.5, 1.0) * H)
    elif kind == "counter":
        h = rng.uniform(0.08, 0.25) * H
        layer = Layer(W, int(h) + 4)
        layer.poly([(0, 2), (W, 2), (W, h + 4), (0, h + 4)], color, outline, 2)
        layer.poly([(0, 2), (W, 2), (W, 2 + h * 0.15), (0, 2 + h * 0.15)], shade(color, 1.3))
        scene.paste(finish_sprite(layer, None, (0, h + 4), 1, 0.0), 0, H)
    else:
        w, h = rng.uniform(0.15, 0.35) * W, rng.uniform(0.1, 0.2) * H
        layer = Layer(int(w + 8), int(h * 1.6 + 8))
        layer.poly([(w * 0.3, h * 0.9), (w * 0.2, h * 1.5), (w * 0.5, h * 0.9)], (250, 250, 250), outline, 2)
        layer.ellipse(w / 2 + 4, h / 2 + 4, w / 2, h / 2, (250, 250, 250), outline, 2)
        draw_text_strokes(
            rng, layer.rgb, w * 0.2, h * 0.35, h * 0.3, max(1, int(w * 0.6 / (h * 0.35))), (30, 30, 30), None
        )
        scene.paste(finish_sprite(layer, None, (0, 0), 1, 0.0), rng.uniform(0, W - w), rng.uniform(0, H * 0.5))


def _draw_text(rng, scene: Scene) -> None:
    W, H = scene.size
    if rng.random() < 0.35:  # subtitles
        g = H * rng.uniform(0.035, 0.06)
        n = int(rng.integers(5, max(6, int(W * 0.8 / (g * 1.15)))))
        color = (250, 250, 250) if rng.random() < 0.7 else (250, 230, 60)
        x = (W - n * g * 1.15) / 2
        mask = draw_text_strokes(
            rng,
            scene.image,
            x,
            H * rng.uniform(0.84, 0.93) - g,
            g,
            n,
            color,
            (20, 20, 20) if rng.random() < 0.7 else None,
        )
        scene.cover(mask)
    if rng.random() < 0.2:  # channel logo in a corner
        g = H * rng.uniform(0.04, 0.07)
        x = W * 0.03 if rng.random() < 0.5 else W * 0.8
        mask = draw_text_strokes(
            rng,
            scene.image,
            x,
            H * 0.04,
            g,
            int(rng.integers(2, 5)),
            random_color(rng, (0.6, 1.0), (0.8, 1.0)),
            (250, 250, 250),
        )
        scene.cover(mask)


def _degrade(rng, image: np.ndarray) -> np.ndarray:
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    if rng.random() < 0.25:  # colour grading: per-channel gain and a gamma, as a lookup table
        gain = rng.uniform(0.75, 1.2, 3)
        gamma = rng.uniform(0.8, 1.25)
        levels = (np.arange(256, dtype=np.float64) / 255.0) ** gamma
        lut = np.clip(255.0 * levels[:, None] * gain[None, :], 0, 255).astype(np.uint8)
        image = cv2.LUT(image, lut.reshape(256, 1, 3))
    if rng.random() < 0.2:
        noise = np.round(rng.normal(0, rng.uniform(2, 6), image.shape[:2] + (1,))).astype(np.int16)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 90))])
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else image
    return image
