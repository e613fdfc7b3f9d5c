"""Mosaic: four augmented images in the four quadrants of one training input.

``mosaic(parts, rng, cfg) -> (image, boxes)``: ``parts`` are four ``(uint8 RGB image, float [N, 4]
boxes)`` pairs. The ``size x size`` output is split at a random centre (each coordinate uniform in
``[0.3, 0.7] * size``) into four rectangles. For each rectangle of ``w x h`` its image goes through
the paper's augmentation (:func:`acfd.training.data.augment.augment`) at side ``max(w, h)``, with the
anchor-scale tiling still aiming at the network's own anchor sides (``augment.config_for_size``), and a
random ``w x h`` window of that is pasted. So a mosaic holds four backgrounds and more faces per
input, faces keep the anchor-scale distribution of the tiling branch, and the expand/crop branch
gives them at up to half their size (more small faces, the detector's weakest range).

Boxes are moved by the same offsets as the pixels and clipped to their rectangle; a face cut so
that less than ``MIN_VISIBLE`` of its area stays is dropped (it is no longer a face to learn).
``mosaic_with_ignore`` takes ``(image, boxes, ignore)`` parts and also returns the ignore regions,
clipped to their rectangles and kept while any part of them stays (the random draws are the same).
"""

from __future__ import annotations

import numpy as np

from acfd.training.data.augment import MEAN_RGB, AugmentConfig, augment, config_for_size

MIN_VISIBLE = 0.4


def mosaic(
    parts: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    canvas, boxes, _ = mosaic_with_ignore([(image, boxes, None) for image, boxes in parts], rng, cfg)
    return canvas, boxes


def mosaic_with_ignore(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(parts) != 4:
        raise ValueError(f"mosaic takes 4 images, got {len(parts)}")
    size = cfg.size
    cx = int(round(rng.uniform(0.3, 0.7) * size))
    cy = int(round(rng.uniform(0.3, 0.7) * size))
    regions = ((0, 0, cx, cy), (cx, 0, size, cy), (0, cy, cx, size), (cx, cy, size, size))
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = MEAN_RGB
    out_boxes, out_ignore = [], []
    for (image, boxes, ignore), (x0, y0, x1, y1) in zip(parts, regions):
        w, h = x1 - x0, y1 - y0
        side = max(w, h)
        sub = augment(image, boxes, rng, config_for_size(cfg, side), ignore=ignore)
        ox, oy = int(rng.integers(0, side - w + 1)), int(rng.integers(0, side - h + 1))
        canvas[y0:y1, x0:x1] = sub.image[oy : oy + h, ox : ox + w]
        b = sub.boxes.astype(np.float64) - [ox, oy, ox, oy]
        clipped = np.stack([b[:, 0].clip(0, w), b[:, 1].clip(0, h), b[:, 2].clip(0, w), b[:, 3].clip(0, h)], 1)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        seen = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]) & (seen >= MIN_VISIBLE * area)
        out_boxes.append(clipped[keep] + [x0, y0, x0, y0])
        g = sub.ignore.astype(np.float64) - [ox, oy, ox, oy]
        g = np.stack([g[:, 0].clip(0, w), g[:, 1].clip(0, h), g[:, 2].clip(0, w), g[:, 3].clip(0, h)], 1)
        out_ignore.append(g[(g[:, 2] > g[:, 0]) & (g[:, 3] > g[:, 1])] + [x0, y0, x0, y0])
    boxes = np.concatenate(out_boxes).astype(np.float32).reshape(-1, 4)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    ignore = np.concatenate(out_ignore).astype(np.float32).reshape(-1, 4)
    return canvas, boxes[ok], ignore[(ignore[:, 2] > ignore[:, 0]) & (ignore[:, 3] > ignore[:, 1])]
