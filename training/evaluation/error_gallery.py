"""What a detector takes for a face: the highest-scoring *background* errors of the breakdown
(:func:`acfd.training.evaluation.errors.background_detections`) cut out of their images into one PNG.

The dAP table says how much AP background false positives cost; this picture says what they are
(subtitle glyphs, hands, ...), which is what decides the fix. Each tile is the detection's box with
30% of its size as margin on every side, scaled to ``TILE`` pixels, the box drawn in red and the score
written in its corner. Several sources get one block of tiles each, under the caller's caption (``acfd
eval --errors``: the source, how many reach the display threshold, how many there are in all).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from acfd.inference.image_io import ImageError, read_image

TILE = 128
MARGIN = 0.3
HEADER = 26
BOX_RGB = (230, 30, 30)


def crop_tile(image: np.ndarray, box: np.ndarray, score: float, tile: int = TILE) -> np.ndarray:
    """The ``tile x tile`` RGB picture of one detection: box plus margin, box drawn, score written."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = MARGIN * max(x1 - x0, 1.0), MARGIN * max(y1 - y0, 1.0)
    left, top = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    right, bottom = int(min(width, np.ceil(x1 + mx))), int(min(height, np.ceil(y1 + my)))
    if right <= left or bottom <= top:  # a box outside its image: an empty grey tile, still scored
        out = np.full((tile, tile, 3), 96, np.uint8)
    else:
        crop = image[top:bottom, left:right]
        fx, fy = tile / crop.shape[1], tile / crop.shape[0]
        out = np.ascontiguousarray(cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA))
        corner = lambda x, y: (int(round((x - left) * fx)), int(round((y - top) * fy)))  # noqa: E731
        cv2.rectangle(out, corner(x0, y0), corner(x1, y1), BOX_RGB, 2)
    cv2.rectangle(out, (0, 0), (44, 16), (0, 0, 0), -1)
    cv2.putText(out, f"{score:.2f}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def draw_background_gallery(
    blocks: Sequence[tuple[str, Sequence[tuple[float, int, np.ndarray]], Sequence[str | Path]]],
    path: str | Path,
    per_block: int = 32,
    columns: int = 8,
) -> Path:
    """Write the gallery to ``path``. ``blocks``: per source ``(caption, background detections as
    background_detections returns them, image paths by image index)``; the first ``per_block`` of each
    are drawn. Images that cannot be read any more are drawn as grey tiles."""
    cache: dict[int, np.ndarray | None] = {}
    width = columns * TILE
    parts = []
    for caption, found, image_paths in blocks:
        shown = list(found[:per_block])
        label = f"{caption}; the top {len(shown)}"
        header = np.full((HEADER, width, 3), 255, np.uint8)
        cv2.putText(header, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        parts.append(header)
        cache.clear()
        tiles = []
        for score, index, box in shown:
            if index not in cache:
                try:
                    cache[index] = read_image(image_paths[index])
                except ImageError:
                    cache[index] = None
            image = cache[index]
            tiles.append(np.full((TILE, TILE, 3), 96, np.uint8) if image is None else crop_tile(image, box, score))
        while len(tiles) % columns or not tiles:
            tiles.append(np.full((TILE, TILE, 3), 255, np.uint8))
        parts += [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    path = Path(path)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.vstack(parts), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cv2 could not write {path}")
    return path
