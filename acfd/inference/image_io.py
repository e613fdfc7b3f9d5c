"""Reading images and turning them into network input: the one place that fixes pixel order and
normalisation, shared by training, evaluation, export manifests and the serving preprocess model.

Images are handled as ``uint8`` RGB arrays ``[H, W, 3]``. Network input is float32 ``[3, H, W]``,
``(rgb - PIXEL_MEAN) / PIXEL_STD`` per channel.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, on the 0..255 scale
PIXEL_STD = (58.395, 57.12, 57.375)
CHANNEL_ORDER = "RGB"
# The files `acfd detect`, `acfd predict` and int8 calibration pick up from a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Decompression-bomb guard: a decoded image may not hold more pixels than this by default.
MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """An image that cannot be used, with a message that says why."""


def decode_image(data: bytes | np.ndarray, max_pixels: int = MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Decode encoded bytes (JPEG, PNG, BMP, WebP, ...) into uint8 RGB ``[H, W, 3]``.

    Grayscale is expanded to three channels, alpha is dropped, 16-bit is scaled to 8-bit.
    Raises ``ImageError`` for empty, undecodable or too large input.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.dtype != np.uint8:
        raise ImageError(f"{name}: encoded bytes must be uint8, got {buf.dtype}")
    buf = buf.reshape(-1)
    if buf.size == 0:
        raise ImageError(f"{name}: empty input (0 bytes)")
    width, height = peek_size(buf)
    if width and height and width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} image exceeds the {max_pixels}-pixel limit")
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"{name}: cannot decode {buf.size} bytes as an image (corrupt or unsupported format)")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(f"{name}: {image.shape[1]}x{image.shape[0]} image exceeds the {max_pixels}-pixel limit")
    return to_rgb8(image, name)


def encode_png(image_rgb: np.ndarray) -> bytes:
    """uint8 RGB ``[H, W, 3]`` as lossless PNG bytes (what a file of the image would hold)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(f"cannot encode a {list(image_rgb.shape)} image as PNG")
    return buf.tobytes()


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file into uint8 RGB ``[H, W, 3]``; ``ImageError`` names the file on failure."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror or err})") from err
    return decode_image(data, max_pixels=max_pixels, name=str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header when possible (no full decode)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = np.frombuffer(f.read(256 * 1024), dtype=np.uint8)
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror or err})") from err
    if head.size == 0:
        raise ImageError(f"{path}: empty file")
    width, height = peek_size(head)
    if width and height:
        return width, height
    image = read_image(path)
    return image.shape[1], image.shape[0]


def to_rgb8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """OpenCV-decoded array (gray, BGR, BGRA; 8 or 16 bit) to uint8 RGB ``[H, W, 3]``."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageError(f"{name}: unsupported image layout {image.shape}")


def resize_interpolation(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """The one resize rule of training, evaluation and the serving preprocess: area averaging when
    neither side grows and one shrinks (no aliasing on reductions), bilinear otherwise."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    return cv2.INTER_AREA if dh <= sh and dw <= sw and (dh < sh or dw < sw) else cv2.INTER_LINEAR


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` resized to ``height x width`` (aspect ratio not kept) by :func:`resize_interpolation`."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=resize_interpolation(image.shape[:2], (height, width)))


def normalize(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` to float32 ``[3, H, W]`` network input."""
    mean = np.asarray(PIXEL_MEAN, dtype=np.float32)
    std = np.asarray(PIXEL_STD, dtype=np.float32)
    return ((image_rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1).copy()


def peek_size(buf: np.ndarray) -> tuple[int, int]:
    """Width and height from a PNG/JPEG/BMP header without decoding (0, 0 if unknown)."""
    head = buf[:64].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"BM" and len(head) >= 26:
        return abs(int.from_bytes(head[18:22], "little", signed=True)), abs(
            int.from_bytes(head[22:26], "little", signed=True)
        )
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(buf.tobytes())
    return 0, 0


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return 0, 0
