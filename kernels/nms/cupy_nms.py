"""Greedy non-maximum suppression on the GPU: CuPy with two custom CUDA kernels (``cupy.RawModule``).

Same contract as :mod:`acfd.kernels.nms.numpy_nms` (same kept indices, in the same order); only the
way the work is laid out differs:

1. ``nms_iou_bitmask``: boxes are sorted by score (stable) and cut into blocks of 64. CUDA block
   ``(col_block, row_block)`` loads its 64 column boxes into shared memory; thread ``t`` takes row
   box ``i = 64 * row_block + t`` and sets bit ``j`` of ``mask[i, col_block]`` (one uint64) when
   column box ``64 * col_block + j`` comes after ``i`` and ``IoU(i, j) > threshold``. Blocks
   below the diagonal have nothing to compute and return at once.
2. ``nms_serial_reduce``: one CUDA block walks the sorted boxes in order with a "removed" bitmap in
   shared memory; a box not yet removed is kept and ORs its mask row into the bitmap (the threads
   share the row's words). It stops once ``max_keep`` boxes are kept (every thread counts the
   same kept boxes, so all leave the loop together).

The IoU is computed with the NumPy path's float32 operations in the same order; the module is
compiled with ``--fmad=false`` so no multiply-add is fused and both paths see identical IoUs.

Memory: the mask holds ``N * ceil(N / 64)`` uint64 words (about 1.1 MB for N = 3000).
This module imports without CuPy; calling :func:`nms_cupy` needs CuPy and a usable GPU.
"""

from __future__ import annotations

import functools

import numpy as np

BLOCK = 64  # boxes per bitmask word
# The removed bitmap lives in shared memory (48 KiB by default): 6144 words = 393,216 boxes.
MAX_BOXES = 6144 * BLOCK

CUDA_SOURCE = r"""
#define NMS_BLOCK 64

__device__ __forceinline__ float nms_box_iou(const float* a, const float* b) {
    const float w = fmaxf(fminf(a[2], b[2]) - fmaxf(a[0], b[0]), 0.0f);
    const float h = fmaxf(fminf(a[3], b[3]) - fmaxf(a[1], b[1]), 0.0f);
    const float inter = w * h;
    const float area_a = fmaxf(a[2] - a[0], 0.0f) * fmaxf(a[3] - a[1], 0.0f);
    const float area_b = fmaxf(b[2] - b[0], 0.0f) * fmaxf(b[3] - b[1], 0.0f);
    const float uni = (area_a + area_b) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

extern "C" __global__ void nms_iou_bitmask(const float* boxes, const int n, const float threshold,
                                           unsigned long long* mask) {
    const int row_block = blockIdx.y;
    const int col_block = blockIdx.x;
    if (row_block > col_block) {
        return;
    }
    const int col_blocks = (n + NMS_BLOCK - 1) / NMS_BLOCK;
    const int row_count = min(n - row_block * NMS_BLOCK, NMS_BLOCK);
    const int col_count = min(n - col_block * NMS_BLOCK, NMS_BLOCK);

    __shared__ float cols[NMS_BLOCK * 4];
    if (threadIdx.x < col_count) {
        const float* src = boxes + (size_t)(col_block * NMS_BLOCK + threadIdx.x) * 4;
        cols[threadIdx.x * 4 + 0] = src[0];
        cols[threadIdx.x * 4 + 1] = src[1];
        cols[threadIdx.x * 4 + 2] = src[2];
        cols[threadIdx.x * 4 + 3] = src[3];
    }
    __syncthreads();

    if (threadIdx.x < row_count) {
        const int row = row_block * NMS_BLOCK + threadIdx.x;
        float box[4];
        box[0] = boxes[(size_t)row * 4 + 0];
        box[1] = boxes[(size_t)row * 4 + 1];
        box[2] = boxes[(size_t)row * 4 + 2];
        box[3] = boxes[(size_t)row * 4 + 3];
        unsigned long long bits = 0ULL;
        const int start = (row_block == col_block) ? (int)threadIdx.x + 1 : 0;
        for (int j = start; j < col_count; ++j) {
            if (nms_box_iou(box, cols + j * 4) > threshold) {
                bits |= 1ULL << j;
            }
        }
        mask[(size_t)row * col_blocks + col_block] = bits;
    }
}

extern "C" __global__ void nms_serial_reduce(const unsigned long long* mask, const int n,
                                             const int col_blocks, const int max_keep,
                                             unsigned char* keep) {
    extern __shared__ unsigned long long removed[];
    for (int b = threadIdx.x; b < col_blocks; b += blockDim.x) {
        removed[b] = 0ULL;
    }
    __syncthreads();
    int kept = 0;
    for (int i = 0; i < n && kept < max_keep; ++i) {
        const int word = i / NMS_BLOCK;
        const bool alive = ((removed[word] >> (i % NMS_BLOCK)) & 1ULL) == 0ULL;
        __syncthreads();  // every thread has read the word before any thread writes to it
        if (alive) {
            const unsigned long long* row = mask + (size_t)i * col_blocks;
            for (int b = word + threadIdx.x; b < col_blocks; b += blockDim.x) {
                removed[b] |= row[b];
            }
        }
        if (threadIdx.x == 0) {
            keep[i] = alive ? 1 : 0;
        }
        kept += alive ? 1 : 0;
        __syncthreads();
    }
}
"""

COMPILE_OPTIONS = ("--fmad=false", "--std=c++11")


@functools.lru_cache(maxsize=None)
def _kernels(device_id: int):
    """Compile (once per device) and return ``(bitmask_kernel, reduce_kernel)``."""
    import cupy

    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=CUDA_SOURCE, options=COMPILE_OPTIONS)
        return module.get_function("nms_iou_bitmask"), module.get_function("nms_serial_reduce")


def nms_cupy(boxes, scores, iou_threshold: float, max_keep: int | None = None):
    """Kept indices (``cupy`` int64, descending score; at most ``max_keep``) after greedy NMS on the current GPU."""
    import cupy

    boxes = cupy.ascontiguousarray(cupy.asarray(boxes, dtype=cupy.float32).reshape(-1, 4))
    scores = cupy.asarray(scores, dtype=cupy.float32).reshape(-1)
    n = int(boxes.shape[0])
    if n != int(scores.shape[0]):
        raise ValueError(f"nms: {n} boxes but {int(scores.shape[0])} scores")
    limit = n if max_keep is None else min(max(int(max_keep), 0), n)
    if n == 0 or limit == 0:
        return cupy.zeros((0,), dtype=cupy.int64)
    if n > MAX_BOXES:
        raise ValueError(f"nms: {n} boxes exceed the CuPy kernel's limit of {MAX_BOXES}")
    # cupy.argsort is stable; "+ 0.0" makes -0.0 and +0.0 tie as in the NumPy path.
    order = cupy.argsort(-scores + cupy.float32(0.0))
    sorted_boxes = cupy.ascontiguousarray(boxes[order])
    col_blocks = (n + BLOCK - 1) // BLOCK
    mask = cupy.zeros((n * col_blocks,), dtype=cupy.uint64)
    keep = cupy.zeros((n,), dtype=cupy.uint8)
    bitmask_kernel, reduce_kernel = _kernels(cupy.cuda.Device().id)
    bitmask_kernel(
        (col_blocks, col_blocks),
        (BLOCK,),
        (sorted_boxes, np.int32(n), np.float32(iou_threshold), mask),
    )
    threads = min(1024, max(32, -(-col_blocks // 32) * 32))
    reduce_kernel(
        (1,), (threads,), (mask, np.int32(n), np.int32(col_blocks), np.int32(limit), keep), shared_mem=col_blocks * 8
    )
    return order[cupy.flatnonzero(keep)].astype(cupy.int64)
