"""Data: generated cartoon scenes, iCartoonFace/COCO loaders, augmentation, datasets."""
