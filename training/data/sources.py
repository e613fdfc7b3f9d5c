"""Several data sets in one run: ``Source``, the sources YAML, and ``SourceSampler``.

A run trains on one or more *sources*, each with its own annotations (any format
``load_detection_set`` reads), image folder, validation hold-out and sampling weight. They come
either from repeated flags (``acfd train --data A --data B --val VA --val VB``: the i-th ``--val``
is the i-th source's hold-out) or from a small YAML file, in the manner of ultralytics' data.yaml::

    sources:
      - name: icartoonface          # optional; default: the file's stem (made unique)
        train: split/train.csv      # paths relative to this YAML file
        val: split/val.csv          # optional hold-out of this source
        images: /data/icf/images    # optional image folder (else beside the annotations)
        format: csv                 # optional (else detected)
        weight: 1.0                 # optional sampling weight, default 1

``weight`` says how many times each image of the source is drawn per epoch on average: an epoch is
``sum over sources of round(weight * images)`` samples. Weight 2 shows each image twice per epoch,
0.5 shows a different half each epoch; 0 leaves the source out of training (its hold-out is still
validated).

``SourceSampler`` draws an epoch as a pure function of ``(seed, epoch)``, like the single-source
sampler, so a resumed run sees exactly the samples an uninterrupted one would: per source a seeded
permutation of its images (repeated for weights over 1, cut for the fractional part), all sources
shuffled together, padded to split evenly over ``world_size`` ranks and dealt out ``rank::world_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

FORMATS = ("coco", "csv", "yolo", "voc")
_KEYS = {"name", "train", "val", "images", "format", "weight"}


class SourceError(ValueError):
    """A sources file or flag combination that cannot be used; the message names the file and entry."""


@dataclass(frozen=True)
class Source:
    name: str
    train: str | None  # annotations to train on (None: validation only)
    val: str | None = None  # hold-out annotations
    images: str | None = None  # image folder of both
    format: str | None = None
    weight: float = 1.0


def is_sources_file(path: str | Path) -> bool:
    """Whether ``path`` is a sources YAML (a mapping with a top-level ``sources`` list)."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "sources" in data


def read_sources(path: str | Path) -> list[Source]:
    """The sources of a YAML file; relative paths resolve against the file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not a readable YAML file ({str(err).splitlines()[0]})") from None
    entries = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SourceError(f"{path}: expected a non-empty list under 'sources:'")
    base = path.parent
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: sources[{i}]"
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected a mapping with train/val/images, got {entry!r}")
        unknown = set(entry) - _KEYS
        if unknown:
            raise SourceError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
        if not entry.get("train") and not entry.get("val"):
            raise SourceError(f"{where}: needs 'train' or 'val'")
        for key in ("name", "train", "val", "images", "format"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise SourceError(f"{where}.{key}: expected a string, got {entry[key]!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise SourceError(f"{where}.weight: expected a number >= 0, got {weight!r}")
        fmt = entry.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise SourceError(f"{where}.format: {fmt!r} is not one of {', '.join(FORMATS)}")
        train, val = entry.get("train"), entry.get("val")
        out.append(
            Source(
                name=entry.get("name") or Path(train or val).stem,
                train=_resolve(base, train),
                val=_resolve(base, val),
                images=_resolve(base, entry.get("images")),
                format=fmt,
                weight=float(weight),
            )
        )
    return _unique_names(out, str(path))


def sources_from_flags(
    data: tuple[str, ...], val: tuple[str, ...] = (), images: str | None = None, format: str | None = None
) -> list[Source]:
    """Sources from ``--data`` (repeated, or one sources YAML) and ``--val`` (none, one, or one per ``--data``)."""
    data, val = tuple(data), tuple(val or ())
    if len(data) == 1 and is_sources_file(data[0]):
        if val:
            raise SourceError(f"--data {data[0]} is a sources file: give each source's 'val' in it, not --val")
        return read_sources(data[0])
    if any(is_sources_file(d) for d in data):
        raise SourceError("a sources file must be the only --data")
    if len(val) > 1 and len(val) != len(data):
        raise SourceError(f"{len(val)} --val for {len(data)} --data: give one --val per --data (in the same order)")
    if len(val) == 1 and len(data) > 1:
        raise SourceError(f"one --val for {len(data)} --data: give one --val per --data (in the same order)")
    vals = val if val else (None,) * len(data)
    made = [Source(_stem(d), d, v, images, format) for d, v in zip(data, vals)]
    return _unique_names(made, "--data")


def epoch_length(sizes: list[int], weights: list[float]) -> int:
    """Samples per epoch: ``sum of round(weight * images)`` over sources."""
    return sum(int(round(w * n)) for n, w in zip(sizes, weights))


class SourceSampler(torch.utils.data.Sampler):
    """Indices into the sources' records laid end to end, drawn by weight (see the module docstring)."""

    def __init__(self, sizes: list[int], weights: list[float], seed: int = 0, rank: int = 0, world_size: int = 1):
        if len(sizes) != len(weights) or not sizes:
            raise ValueError(f"need one weight per source, got {len(sizes)} sources and {len(weights)} weights")
        if any(n < 0 for n in sizes) or any(w < 0 for w in weights):
            raise ValueError(f"sizes and weights must be >= 0, got {sizes}, {weights}")
        self.sizes, self.weights = [int(n) for n in sizes], [float(w) for w in weights]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.total = epoch_length(self.sizes, self.weights)
        self.per_rank = math.ceil(self.total / self.world_size) if self.total else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_indices(self) -> np.ndarray:
        """All ranks' indices of this epoch, before dealing out."""
        parts = []
        for s, (n, w) in enumerate(zip(self.sizes, self.weights)):
            k = int(round(w * n))
            if n == 0 or k == 0:
                continue
            rng = np.random.default_rng([self.seed, self.epoch, s])
            draws = [rng.permutation(n) for _ in range(math.ceil(k / n))]
            parts.append(self.offsets[s] + np.concatenate(draws)[:k])
        if not parts:
            return np.zeros(0, np.int64)
        order = np.concatenate(parts)
        order = order[np.random.default_rng([self.seed, self.epoch]).permutation(len(order))]
        pad = self.per_rank * self.world_size - len(order)
        return np.concatenate([order, order[:pad]]) if pad else order

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        return iter(self.epoch_indices()[self.rank :: self.world_size].tolist())


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _stem(path: str) -> str:
    p = Path(path)
    return p.stem if p.suffix else p.name


def _unique_names(sources: list[Source], where: str) -> list[Source]:
    seen: dict[str, int] = {}
    out = []
    for s in sources:
        name = s.name
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[s.name]}"
        seen.setdefault(name, 1)
        out.append(Source(name, s.train, s.val, s.images, s.format, s.weight))
    if len({s.name for s in out}) != len(out):
        raise SourceError(f"{where}: source names must differ, got {[s.name for s in sources]}")
    return out


@dataclass
class LoadedSources:
    """Each source's loaded training and hold-out sets (``None`` where it has none)."""

    sources: list[Source]
    train: list  # DetectionSet | None per source
    val: list  # DetectionSet | None per source

    @property
    def trained(self) -> list[int]:
        """Indices of the sources that train (annotations given, weight > 0)."""
        return [i for i, s in enumerate(self.sources) if self.train[i] is not None and s.weight > 0]

    def train_records(self) -> list:
        """The training records of the trained sources laid end to end (the sampler's index space)."""
        return [r for i in self.trained for r in self.train[i].records]

    def sizes_and_weights(self) -> tuple[list[int], list[float]]:
        return [len(self.train[i].records) for i in self.trained], [self.sources[i].weight for i in self.trained]

    def val_sets(self) -> list[tuple[str, object]]:
        return [(s.name, v) for s, v in zip(self.sources, self.val) if v is not None]

    def weighted(self) -> bool:
        """Whether sampling differs from one shuffled pass over one source."""
        return len(self.trained) > 1 or any(self.sources[i].weight != 1.0 for i in self.trained)


def load_sources(sources: list[Source], category: str | None = None, warn=None) -> LoadedSources:
    """Load every source's sets; ``SourceError`` naming the source and file when one cannot be used.

    ``warn(line)`` receives one line per source whose files had problems (entries skipped)."""
    from acfd.training.data.annotations import load_detection_set

    train, val = [], []
    for s in sources:
        for path, split, out in ((s.train, "train", train), (s.val, "val", val)):
            if path is None:
                out.append(None)
                continue
            try:
                loaded = load_detection_set(path, images_dir=s.images, split=split, format=s.format, category=category)
            except (OSError, ValueError) as err:
                raise SourceError(f"source {s.name!r}: {split} {path}: {err}") from err
            if loaded.problems and warn is not None:
                warn(
                    f"source {s.name!r}: {path}: {len(loaded.problems)} problem(s) skipped, first: {loaded.problems[0]}"
                )
            if not loaded.records:
                raise SourceError(f"source {s.name!r}: {split} {path}: no usable images with annotations")
            out.append(loaded)
    result = LoadedSources(list(sources), train, val)
    if not result.trained:
        raise SourceError("no source to train on (every source lacks 'train' or has weight 0)")
    return result
