"""Training / evaluation samples as tensors: ``DetectionDataset`` and ``collate``.

- ``DetectionDataset(records, train, size, seed)[i] -> (image, boxes)``: image float32 ``[3, size,
  size]`` (``image_io.normalize``), boxes float32 ``[N, 4]`` (x1, y1, x2, y2) in network-input
  pixels.
- ``train=True`` applies ``augment.augment`` with a generator seeded by ``(seed, epoch, index)``
  only (``np.random.default_rng([seed, epoch, index])``): a sample does not depend on the worker
  that loads it, the order of loading, or what was loaded before, so a resumed run sees exactly the
  samples it would have seen. Call ``set_epoch`` before each epoch (in every worker's copy: with
  persistent workers, recreate the loader or pass the epoch some other way).
- ``train=False`` resizes to ``size x size`` without keeping the aspect ratio (as evaluation does)
  and scales the boxes per axis.
- ``collate(batch) -> (images [B, 3, S, S], gt_boxes [B, G, 4] zero-padded to the largest G in the
  batch (G may be 0), gt_count [B] int64)``.
"""

from __future__ import annotations

import numpy as np
import torch

from acfd.training.data.annotations import ImageRecord
from acfd.training.data.augment import AugmentConfig, augment, resize_plain
from acfd.training.data.image_io import normalize, read_image


class DetectionDataset(torch.utils.data.Dataset):
    def __init__(self, records: list[ImageRecord], train: bool, size: int = 640, seed: int = 0,
                 augment_config: AugmentConfig | None = None):
        if size <= 0:
            raise ValueError(f"input size must be positive, got {size}")
        self.records = list(records)
        self.train = train
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.augment_config = augment_config or AugmentConfig(size=size)
        if self.augment_config.size != size:
            raise ValueError(f"augment_config.size {self.augment_config.size} differs from size {size}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 RGB ``[S, S, 3]`` input image and float32 ``[N, 4]`` boxes of one sample."""
        rec = self.records[index]
        image = read_image(rec.path)
        boxes = np.asarray(rec.boxes, np.float32).reshape(-1, 4)
        if image.shape[1] != rec.width or image.shape[0] != rec.height:
            fx, fy = image.shape[1] / rec.width, image.shape[0] / rec.height
            boxes = boxes * np.array([fx, fy, fx, fy], np.float32)
        if not self.train:
            return resize_plain(image, boxes, self.size)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        out = augment(image, boxes, rng, self.augment_config)
        return out.image, out.boxes

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, boxes = self.sample(index)
        return torch.from_numpy(normalize(image)), torch.from_numpy(np.ascontiguousarray(boxes, np.float32))


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.stack([image for image, _ in batch])
    counts = torch.tensor([len(boxes) for _, boxes in batch], dtype=torch.int64)
    g = int(counts.max()) if len(batch) else 0
    gt = torch.zeros((len(batch), g, 4), dtype=torch.float32)
    for i, (_, boxes) in enumerate(batch):
        gt[i, : len(boxes)] = boxes
    return images, gt, counts
