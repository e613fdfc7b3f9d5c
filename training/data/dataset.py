"""Training / evaluation samples as tensors: ``DetectionDataset`` and ``collate``.

- ``DetectionDataset(records, train, size, seed)[i] -> (image, boxes, ignore)``: image float32 ``[3,
  size, size]`` (``image_io.normalize``), boxes float32 ``[N, 4]`` (x1, y1, x2, y2) in network-input
  pixels, and the record's ignore regions ``[M, 4]`` mapped the same way (``augment``'s rule for
  them). ``sample(item)`` gives the uint8 image and boxes, ``sample_with_ignore(item)`` all three.
- ``train=True`` applies ``augment.augment`` with a generator seeded by ``(seed, epoch, index)``
  only (``np.random.default_rng([seed, epoch, index])``): a sample does not depend on the worker
  that loads it, the order of loading, or what was loaded before, so a resumed run sees exactly the
  samples it would have seen. ``set_epoch`` sets the epoch of items that do not carry one.
- ``train=False`` resizes to ``size x size`` without keeping the aspect ratio (as evaluation does)
  and scales the boxes per axis.
- ``train=True`` with ``mosaic_prob > 0``: with that probability (drawn from the same generator) a
  sample is a ``mosaic.mosaic`` of its image and three others drawn by the generator, in epochs
  before ``mosaic_epochs`` (``None``: every epoch).
- Items are indices, ``(index, size)`` pairs, or ``(index, size, epoch)`` from ``MultiScaleBatches``:
  that sample is made at ``size x size`` (training only; every image of a batch has the batch's
  size) for that epoch. The epoch travels with the item, so loader workers that persist from one
  epoch to the next (``persistent_workers``) need no ``set_epoch`` of their own copy.
- ``MultiScaleBatches(sampler, batch, sizes, seed)``: batches of ``(index, size)`` with one size per
  batch drawn from ``sizes`` by ``np.random.default_rng([seed, epoch, batch_number])``: the same on
  every rank and on a resume.
- ``uint8=True``: the image comes as uint8 ``[size, size, 3]`` (4x fewer bytes to move, no float
  work in the loader process) and ``batch_on_device`` normalises the batch where the model runs, to
  the same float32 numbers ``normalize`` gives (what a GPU run uses: the loader is its bottleneck).
- ``preload()`` decodes every image once into memory (the loader processes forked after it share
  the pages); from then on a sample costs its augmentation only. About W x H x 3 bytes an image.
- ``collate(batch) -> (images [B, 3, S, S] (uint8: [B, S, S, 3]), gt_boxes [B, G, 4] zero-padded to the largest G in the
  batch (G may be 0), gt_count [B] int64)``; ``collate_with_ignore(batch)`` adds ``ignore_boxes
  [B, M, 4]`` and ``ignore_count [B]`` padded the same way (what ``DetectionLoss`` takes).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from acfd.training.data.annotations import ImageRecord
from acfd.training.data.augment import AugmentConfig, augment, config_for_size, resize_plain
from acfd.inference.image_io import PIXEL_MEAN, PIXEL_STD, normalize, read_image
from acfd.training.data.mosaic import mosaic_with_ignore


class DetectionDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        records: list[ImageRecord],
        train: bool,
        size: int = 640,
        seed: int = 0,
        augment_config: AugmentConfig | None = None,
        mosaic_prob: float = 0.0,
        mosaic_epochs: int | None = None,
        uint8: bool = False,
    ):
        if size <= 0:
            raise ValueError(f"input size must be positive, got {size}")
        self.records = list(records)
        self.train = train
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.uint8 = uint8
        self._decoded: list[np.ndarray] | None = None
        self.augment_config = augment_config or AugmentConfig(size=size)
        if not 0.0 <= mosaic_prob <= 1.0:
            raise ValueError(f"mosaic probability must be in [0, 1], got {mosaic_prob}")
        self.mosaic_prob, self.mosaic_epochs = float(mosaic_prob), mosaic_epochs
        if self.augment_config.size != size:
            raise ValueError(f"augment_config.size {self.augment_config.size} differs from size {size}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def preload(self, progress: bool = False, threads: int | None = None) -> int:
        """Decode every image into memory (in ``threads`` threads); the bytes they take."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        paths = [rec.path for rec in self.records]
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:  # OpenCV decodes without the GIL
            decoded = list(
                tqdm(
                    pool.map(read_image, paths),
                    total=len(paths),
                    desc="decoding into memory",
                    unit="image",
                    disable=not progress,
                    file=sys.stderr,
                )  # fmt: skip
            )
        self._decoded = decoded
        return sum(image.nbytes for image in decoded)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rec = self.records[index]
        image = self._decoded[index] if self._decoded is not None else read_image(rec.path)
        boxes = np.asarray(rec.boxes, np.float32).reshape(-1, 4)
        ignore = np.asarray(rec.ignore, np.float32).reshape(-1, 4)
        if image.shape[1] != rec.width or image.shape[0] != rec.height:
            fx, fy = image.shape[1] / rec.width, image.shape[0] / rec.height
            boxes = boxes * np.array([fx, fy, fx, fy], np.float32)
            ignore = ignore * np.array([fx, fy, fx, fy], np.float32)
        return image, boxes, ignore

    def mosaic_active(self, epoch: int | None = None) -> bool:
        epoch = self.epoch if epoch is None else epoch
        return self.mosaic_prob > 0 and (self.mosaic_epochs is None or epoch < self.mosaic_epochs)

    def sample(self, item: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 RGB ``[S, S, 3]`` input image and float32 ``[N, 4]`` boxes of one sample."""
        image, boxes, _ = self.sample_with_ignore(item)
        return image, boxes

    def sample_with_ignore(self, item: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sample` plus the sample's float32 ``[M, 4]`` ignore regions."""
        if isinstance(item, (tuple, list)):
            index, size, epoch = int(item[0]), int(item[1]), int(item[2]) if len(item) > 2 else self.epoch
        else:
            index, size, epoch = int(item), self.size, self.epoch
        image, boxes, ignore = self._load(index)
        if not self.train:
            out, boxes = resize_plain(image, boxes, self.size)
            return out, boxes, _scaled(ignore, image, self.size)
        rng = np.random.default_rng([self.seed, epoch, index])
        cfg = config_for_size(self.augment_config, size)
        if self.mosaic_active(epoch) and rng.random() < self.mosaic_prob:
            others = rng.integers(0, len(self.records), size=3)
            return mosaic_with_ignore([(image, boxes, ignore)] + [self._load(int(i)) for i in others], rng, cfg)
        out = augment(image, boxes, rng, cfg, ignore=ignore)
        return out.image, out.boxes, out.ignore

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, boxes, ignore = self.sample_with_ignore(item)
        return (
            torch.from_numpy(np.ascontiguousarray(image)) if self.uint8 else torch.from_numpy(normalize(image)),
            torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
            torch.from_numpy(np.ascontiguousarray(ignore, np.float32)),
        )


class MultiScaleBatches(torch.utils.data.Sampler):
    """Batches of ``(index, size)`` from ``sampler``'s order, one input size per batch (see above)."""

    def __init__(self, sampler, batch_size: int, sizes: tuple[int, ...], seed: int = 0):
        if batch_size < 1 or not sizes or min(sizes) < 32:
            raise ValueError(f"need batch_size >= 1 and sizes >= 32, got {batch_size}, {sizes}")
        self.sampler, self.batch_size, self.sizes, self.seed = sampler, batch_size, tuple(sizes), seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def size_of(self, batch_number: int) -> int:
        if len(self.sizes) == 1:
            return self.sizes[0]
        return self.sizes[int(np.random.default_rng([self.seed, self.epoch, batch_number]).integers(len(self.sizes)))]

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        order = list(self.sampler)
        for b in range(len(self)):
            size = self.size_of(b)
            yield [(i, size, self.epoch) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]


def batch_on_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A collated batch on ``device`` as the network takes it: float32 ``[B, 3, S, S]``, channels-last.
    A uint8 ``[B, S, S, 3]`` batch is normalised there, with ``normalize``'s numbers (bit-identical)."""
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32, device=device)
        std = torch.tensor(PIXEL_STD, dtype=torch.float32, device=device)
        images = ((images.float() - mean) / std).permute(0, 3, 1, 2)  # NHWC memory: channels-last already
    return images.contiguous(memory_format=torch.channels_last)


def collate(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples ``(image, boxes[, ignore])`` to ``(images, gt_boxes, gt_count)``."""
    images = torch.stack([sample[0] for sample in batch])
    gt, counts = _pad([sample[1] for sample in batch])
    return images, gt, counts


def collate_with_ignore(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """``collate`` plus ``(ignore_boxes [B, M, 4], ignore_count [B])``."""
    images, gt, counts = collate(batch)
    ignore, ignore_count = _pad([sample[2] if len(sample) > 2 else torch.zeros(0, 4) for sample in batch])
    return images, gt, counts, ignore, ignore_count


def _pad(boxes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.tensor([len(b) for b in boxes], dtype=torch.int64)
    g = int(counts.max()) if len(boxes) else 0
    out = torch.zeros((len(boxes), g, 4), dtype=torch.float32)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b
    return out, counts


def _scaled(boxes: np.ndarray, image: np.ndarray, size: int) -> np.ndarray:
    """Boxes of ``image`` scaled per axis to a ``size x size`` input (``resize_plain``'s rule)."""
    h, w = image.shape[:2]
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([size / w, size / h, size / w, size / h], np.float32)
    ).astype(np.float32)
