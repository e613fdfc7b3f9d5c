"""Kernel microbenchmarks at the paper's training shape: input builders, cases, timing, memory.

Shared by ``acfd bench kernels`` (``bench_cli.py``), ``benchmarks/test_bench_kernels.py``
(pytest-benchmark) and ``benchmarks/gpu_check.py`` (which also runs the cases at tiny shapes on
CPU, Triton through the interpreter, for its ``--dry-run``).

Shapes (paper section 4.1): batch 16, 640 x 640 inputs, one anchor per location = 34,125 anchors.

- ``dam_match/realistic``: 1 to 300 faces per image, counts spread geometrically over the batch
  (most images hold few faces, one holds 300), face sides log-uniform from 10 px up to what the
  image's crowding allows (at most 320 px), aspect ratio 0.8-1.4, clipped to the image; ``G = 300``.
- ``dam_match/crowded``: the same batch with one image of 1,000 faces, so every image is padded
  to ``G = 1000`` (the reference pays for the padding, the kernel does not).
- ``mbc_loss/fp32`` and ``mbc_loss/bf16``: logits ``[16, 34125]`` with DAM-like labels (about 2 %
  step-1 and 0.5 % step-2 anchors), forward + backward.

Implementations: ``torch`` (reference) and ``triton`` (compiled kernel) for matching; ``eager``
(reference), ``compile`` (``torch.compile`` of the reference) and ``triton`` for the loss. Triton
cases need CUDA: the interpreter is for correctness, not speed.

Timing: median (and min) of ``repeat`` runs after ``warmup`` runs (plus one compiling run for
``compile`` and ``triton``), synchronised on CUDA (CUDA events). Peak memory above the inputs is
read on the last warm-up run (``peak_memory_bytes``). GB/s (CUDA only) counts the minimal bytes an
implementation must move (see ``*_bytes``), against the H200's 4.8 TB/s for ``x_floor``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from acfd.inference.anchors import make_anchors
from acfd.inference.box_coder import BoxCoder

PAPER_BATCH = 16
PAPER_IMAGE = 640
MAX_FACES = 300
CROWDED_FACES = 1000
H200_BANDWIDTH_GBPS = 4800.0


@dataclass(frozen=True)
class BenchCase:
    op: str  # "dam_match" | "mbc_loss"
    variant: str  # "realistic" | "crowded" | "fp32" | "bf16"
    impl: str  # "torch" | "triton" (matching); "eager" | "compile" | "triton" (loss)

    @property
    def name(self) -> str:
        return f"{self.op}/{self.variant}/{self.impl}"


CASES: tuple[BenchCase, ...] = (
    *(BenchCase("dam_match", v, i) for v in ("realistic", "crowded") for i in ("torch", "triton")),
    *(BenchCase("mbc_loss", v, i) for v in ("fp32", "bf16") for i in ("eager", "compile", "triton")),
)


# ---------------------------------------------------------------- inputs


def face_counts(
    batch: int = PAPER_BATCH, max_faces: int = MAX_FACES, crowded: bool = False, crowded_faces: int = CROWDED_FACES
) -> list[int]:
    """Faces per image: 1 .. max_faces spread geometrically; the last image has 1,000 if crowded."""
    counts = [round(math.exp(math.log(max_faces) * i / max(batch - 1, 1))) for i in range(batch)]
    if crowded:
        counts[-1] = crowded_faces
    return counts


def make_faces(count: int, image: int, gen: torch.Generator) -> torch.Tensor:
    """``[count, 4]`` face boxes inside an ``image x image`` picture, sizes shrinking with crowding."""
    largest = max(min(320.0, 1.5 * image / math.sqrt(count)), 12.0)
    side = torch.exp(torch.empty(count).uniform_(math.log(10.0), math.log(largest), generator=gen))
    height = side * torch.empty(count).uniform_(0.8, 1.4, generator=gen)
    x1 = torch.rand(count, generator=gen) * (image - side).clamp(min=1)
    y1 = torch.rand(count, generator=gen) * (image - height).clamp(min=1)
    return torch.stack([x1, y1, x1 + side, y1 + height], 1).clamp(0, image)


@dataclass
class DamInputs:
    anchors: torch.Tensor  # [A, 4]
    pred_boxes: torch.Tensor  # [B, A, 4]
    gt_boxes: torch.Tensor  # [B, G, 4]
    gt_count: torch.Tensor  # [B] int64

    def to(self, device) -> DamInputs:
        return DamInputs(*(t.to(device) for t in (self.anchors, self.pred_boxes, self.gt_boxes, self.gt_count)))


def dam_inputs(
    batch: int = PAPER_BATCH,
    image: int = PAPER_IMAGE,
    crowded: bool = False,
    seed: int = 0,
    faces: tuple[int, int] = (MAX_FACES, CROWDED_FACES),
) -> DamInputs:
    """Paper-shaped matching inputs on CPU. Regressed boxes are anchors moved by random offsets,
    plus one anchor in 100 regressed onto a face (so step 2 has work, as in training). ``faces``:
    the most faces in an image of the realistic batch, and in the crowded image."""
    gen = torch.Generator().manual_seed(seed)
    anchors = make_anchors(image, image)
    counts = face_counts(batch, faces[0], crowded=crowded, crowded_faces=faces[1])
    num_gt = max(counts)
    gt_boxes = torch.zeros(batch, num_gt, 4)
    for b, n in enumerate(counts):
        gt_boxes[b, :n] = make_faces(n, image, gen)
    num = anchors.shape[0]
    pred = BoxCoder().decode(torch.randn(batch, num, 4, generator=gen) * 0.5, anchors)
    pulled = torch.randint(0, num, (batch, num // 100), generator=gen)
    target = torch.randint(0, 1 << 30, (batch, num // 100), generator=gen) % torch.tensor(counts)[:, None]
    faces = gt_boxes.gather(1, target[..., None].expand(-1, -1, 4))
    pred.scatter_(1, pulled[..., None].expand(-1, -1, 4), faces + torch.randn(faces.shape, generator=gen))
    return DamInputs(anchors, pred, gt_boxes, torch.tensor(counts))


def loss_inputs(
    batch: int = PAPER_BATCH, num_anchors: int | None = None, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[B, A]`` (about what a trained head gives: mostly confident negatives) and labels."""
    gen = torch.Generator().manual_seed(seed)
    num_anchors = num_anchors or make_anchors(PAPER_IMAGE, PAPER_IMAGE).shape[0]
    logits = (torch.randn(batch, num_anchors, generator=gen) * 2 - 4).to(dtype)
    probs = torch.tensor([0.975, 0.02, 0.005])
    labels = torch.multinomial(probs, batch * num_anchors, replacement=True, generator=gen).view(batch, num_anchors)
    return logits, labels


@functools.lru_cache(maxsize=4)
def _cached_inputs(
    variant: str,
    device: str,
    batch: int = PAPER_BATCH,
    image: int = PAPER_IMAGE,
    faces: tuple[int, int] = (MAX_FACES, CROWDED_FACES),
):
    if variant in ("realistic", "crowded"):
        return dam_inputs(batch, image, crowded=variant == "crowded", faces=faces).to(device)
    num_anchors = make_anchors(image, image).shape[0]
    logits, labels = loss_inputs(batch, num_anchors, dtype=torch.bfloat16 if variant == "bf16" else torch.float32)
    return logits.to(device), labels.to(device)


# ---------------------------------------------------------------- bytes moved (for GB/s)


def dam_bytes(inp: DamInputs) -> int:
    """Read anchors, regressed boxes, ground truths and counts once; write label, index, IoU."""
    batch, num_anchors = inp.pred_boxes.shape[:2]
    reads = 16 * num_anchors + 16 * batch * num_anchors + 16 * inp.gt_boxes.shape[0] * inp.gt_boxes.shape[1] + 8 * batch
    return reads + batch * num_anchors * (8 + 8 + 4)


def loss_bytes(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Forward + backward floor: read logits and labels once, write the gradient once."""
    return logits.numel() * (2 * logits.element_size() + labels.element_size())


# ---------------------------------------------------------------- cases


def skip_reason(case: BenchCase, device: str, interpreter: bool = False) -> str | None:
    """Why ``case`` cannot run on ``device`` (``interpreter``: Triton cases may run on CPU through
    the interpreter, when ``TRITON_INTERPRET=1`` was set before triton was imported)."""
    if case.impl == "triton" and device != "cuda" and not (interpreter and os.environ.get("TRITON_INTERPRET") == "1"):
        return "needs CUDA: Triton kernels are benchmarked compiled (the interpreter is for tests)"
    if case.op == "dam_match" and case.impl == "torch" and device == "cpu":
        need = _reference_dam_peak_bytes(case.variant)
        available = _available_memory_bytes()
        if available is not None and need > 0.7 * available:
            return f"the reference needs about {need / 1e9:.1f} GB, only {available / 1e9:.1f} GB available"
    return None


def prepare(
    case: BenchCase,
    device: str,
    batch: int = PAPER_BATCH,
    image: int = PAPER_IMAGE,
    compile_backend: str = "inductor",
    faces: tuple[int, int] = (MAX_FACES, CROWDED_FACES),
) -> tuple[Callable[[], object], int]:
    """``(fn, minimal_bytes)``: a no-argument callable running the case once on ``device``
    (``compile_backend``: what ``torch.compile`` uses for the ``compile`` cases)."""
    if case.op == "dam_match":
        from acfd.kernels.dam_match import dam_match

        inp = _cached_inputs(case.variant, device, batch, image, faces)
        impl = "torch" if case.impl == "torch" else "triton"

        def run_match():
            return dam_match(inp.anchors, inp.pred_boxes, inp.gt_boxes, inp.gt_count, impl=impl)

        return run_match, dam_bytes(inp)

    from acfd.kernels.mbc_loss import mbc_focal_loss
    from acfd.kernels.mbc_loss.reference import mbc_focal_loss_reference

    logits, labels = _cached_inputs(case.variant, device, batch, image)
    x = logits.clone().requires_grad_(True)
    if case.impl == "triton":
        loss_fn = functools.partial(mbc_focal_loss, impl="triton")
    elif case.impl == "compile":
        loss_fn = torch.compile(mbc_focal_loss_reference, dynamic=False, backend=compile_backend)
    else:
        loss_fn = mbc_focal_loss_reference

    def run_loss():
        x.grad = None
        loss = loss_fn(x, labels)
        loss.backward()
        return loss

    return run_loss, loss_bytes(logits, labels)


def run_case(
    case: BenchCase,
    device: str,
    repeat: int = 5,
    warmup: int = 1,
    batch: int = PAPER_BATCH,
    image: int = PAPER_IMAGE,
    compile_backend: str = "inductor",
    peak_gbps: float | None = H200_BANDWIDTH_GBPS,
    faces: tuple[int, int] = (MAX_FACES, CROWDED_FACES),
    interpreter: bool = False,
) -> dict:
    """Figures of one case: ``name``, ``ms`` (median), ``ms_min``, ``peak_mb``, and ``gbps`` /
    ``x_floor`` (time over the bandwidth floor at ``peak_gbps``) on CUDA; or ``skipped`` with the
    reason. ``batch`` / ``image`` / ``faces`` change the shape (the paper's by default)."""
    row: dict = {"name": case.name, "device": device}
    reason = skip_reason(case, device, interpreter)
    if reason:
        return {**row, "skipped": reason}
    fn, nbytes = prepare(case, device, batch, image, compile_backend, faces)
    if case.impl in ("compile", "triton"):  # the first run compiles; memory is probed on the next
        started = time.perf_counter()
        fn()
        _sync(device)
        row["first_run_s"] = round(time.perf_counter() - started, 2)
    for _ in range(warmup - 1):
        fn()
    peak = peak_memory_bytes(fn, device)  # the last warm-up run
    times = [time_once(fn, device) for _ in range(repeat)]
    row.update(ms=round(statistics.median(times), 4), ms_min=round(min(times), 4), peak_mb=round(peak / 2**20, 1))
    if device == "cuda" and peak_gbps:
        row["gbps"] = round(nbytes / (row["ms"] * 1e-3) / 1e9, 1)
        row["x_floor"] = round(row["ms"] / (nbytes / (peak_gbps * 1e9) * 1e3), 2)
    return row


def run_all(device: str, repeat: int = 5, only: str = "", progress: Callable | None = None) -> list[dict]:
    """Every case whose name contains ``only``, with speed-ups over the reference added."""
    chosen = [c for c in CASES if only in c.name]
    rows = []
    for case in progress(chosen) if progress else chosen:
        rows.append(run_case(case, device, repeat))
    return add_speedups(rows)


def add_speedups(rows: list[dict]) -> list[dict]:
    """``speedup_vs_<impl>``: a slower baseline's time over this case's time (same op and variant):
    triton over torch for matching; compile over eager, triton over eager and compile for the loss."""
    order = {"dam_match": ("torch", "triton"), "mbc_loss": ("eager", "compile", "triton")}
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        op, variant, impl = r["name"].split("/")
        for base in order[op][: order[op].index(impl)]:
            ref = by_name.get(f"{op}/{variant}/{base}")
            if ref and "ms" in ref and "ms" in r:
                r[f"speedup_vs_{base}"] = round(ref["ms"] / r["ms"], 2)
    return rows


# ---------------------------------------------------------------- timing and memory


def time_once(fn: Callable[[], object], device: str) -> float:
    """Milliseconds of one call (CUDA events on CUDA, wall clock on CPU)."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_bytes(fn: Callable[[], object], device: str) -> int:
    """Peak memory allocated by tensors during one call, above the level before it.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the profiler's allocation records (each op's
    own allocations and the frees between ops), summed in start order; temporaries an op frees
    before it returns are not seen, which makes it a slight underestimate.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    level = peak = 0
    for _, change in changes:
        level += change
        peak = max(peak, level)
    return peak


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ start/stop lines); Python errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reference_dam_peak_bytes(variant: str) -> int:
    """About three ``[B, A, G]`` fp32 buffers live at once in ``reference.box_iou``."""
    num_anchors = make_anchors(PAPER_IMAGE, PAPER_IMAGE).shape[0]
    return 3 * 4 * PAPER_BATCH * num_anchors * max(face_counts(crowded=variant == "crowded"))
