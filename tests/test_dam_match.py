"""DAM matching (acfd.kernels.dam_match): hand-computed cases, then the Triton kernel (through the
interpreter on CPU) against the PyTorch reference on random and edge-case inputs."""

import os

import pytest
import torch

from acfd.kernels.dam_match import DamMatch, dam_match
from acfd.kernels.dam_match.reference import box_iou
from acfd.inference.anchors import make_anchors
from acfd.inference.box_coder import BoxCoder

HAS_TRITON_PATH = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
needs_triton = pytest.mark.skipif(not HAS_TRITON_PATH, reason="needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py)")
IMPLS = ["torch", pytest.param("triton", marks=needs_triton)]


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _match_triton(anchors, pred, gt, count, block_a, block_g, **kw):
    from acfd.kernels.dam_match import _check_inputs
    from acfd.kernels.dam_match.triton_kernel import dam_match_triton

    t1, t2, fallback = kw.get("t1", 0.35), kw.get("t2", 0.7), kw.get("best_anchor_fallback", False)
    return DamMatch(*dam_match_triton(*_check_inputs(anchors, pred, gt, count), t1, t2, fallback, block_a, block_g))


def _assert_same(ref: DamMatch, got: DamMatch):
    assert torch.equal(got.labels, ref.labels)
    assert torch.equal(got.gt_index, ref.gt_index)
    torch.testing.assert_close(got.iou, ref.iou, rtol=0, atol=1e-6)
    assert got.labels.dtype == torch.int64 and got.gt_index.dtype == torch.int64 and got.iou.dtype == torch.float32


# ---------------------------------------------------------------- hand-computed cases (mmdet style)

# Four 10x10 anchors; g0 covers a0 exactly, g1 is a0 shifted right by 5 (IoU 50/150 = 1/3 with a0
# and a1: below T1 = 0.35, so a1 goes to step 2).
ANCHORS = _t([[0, 0, 10, 10], [10, 0, 20, 10], [0, 20, 10, 30], [40, 40, 50, 50]])
GTS = _t([[[0, 0, 10, 10], [5, 0, 15, 10]]])
PREDS = _t(
    [
        [
            [30, 30, 40, 40],  # a0 passes step 1, its regressed box is never looked at
            [5, 0, 15, 10],  # a1's box lands exactly on g1: IoU 1 > T2 -> compensated
            [0, 1, 10, 11],  # a2's box vs g0: 90 / 110 = 0.818 > T2 -> compensated (vs g1: 45 / 155)
            [0, 0, 10, 15],  # a3's box vs g0: 100 / 150 = 0.667, not > T2 -> negative
        ]
    ]
)


@pytest.mark.parametrize("impl", IMPLS)
def test_algorithm_1_by_hand(impl):
    m = dam_match(ANCHORS, PREDS, GTS, [2], impl=impl)
    assert m.labels.tolist() == [[1, 2, 2, 0]]
    assert m.gt_index.tolist() == [[0, 1, 0, -1]]
    # label 1: anchor IoU; label 2: regressed-box IoU; negative: best anchor IoU (a3 overlaps nothing)
    torch.testing.assert_close(m.iou, _t([[1.0, 1.0, 90 / 110, 0.0]]))


@pytest.mark.parametrize("impl", IMPLS)
def test_negative_reports_best_anchor_iou_and_t2_disables_step_2(impl):
    m = dam_match(ANCHORS, PREDS, GTS, [2], t2=1.0, impl=impl)  # IoU > 1 never happens: classic matching
    assert m.labels.tolist() == [[1, 0, 0, 0]]
    assert m.gt_index.tolist() == [[0, -1, -1, -1]]
    torch.testing.assert_close(m.iou, _t([[1.0, 1 / 3, 0.0, 0.0]]))


@pytest.mark.parametrize("impl", IMPLS)
def test_thresholds_step_1_inclusive_step_2_strict(impl):
    anchors = _t([[0, 0, 10, 10], [40, 40, 50, 50]])
    gts = _t([[[0, 0, 10, 5]]])  # IoU with a0 = 50 / 100 = 0.5 exactly
    preds = _t([[[0, 0, 10, 10], [0, 0, 10, 10]]])  # a1's box also has IoU 0.5 exactly
    m = dam_match(anchors, preds, gts, [1], t1=0.5, t2=0.5, impl=impl)
    assert m.labels.tolist() == [[1, 0]]  # 0.5 >= T1 matches; 0.5 > T2 does not
    m = dam_match(anchors, preds, gts, [1], t1=0.6, t2=0.49, impl=impl)
    assert m.labels.tolist() == [[2, 2]]  # a0 fails step 1 and is compensated like a1
    assert m.gt_index.tolist() == [[0, 0]]


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_go_to_the_lowest_gt_index(impl):
    box = [0, 0, 10, 10]
    far = [100, 100, 110, 110]
    anchors = _t([box, [50, 50, 60, 60]])
    gts = _t([[far, box, far, box, box]])  # three identical ground truths at 1, 3, 4
    preds = _t([[box, box]])  # a1 fails step 1, its box ties between 1, 3, 4 as well
    m = dam_match(anchors, preds, gts, [5], impl=impl)
    assert m.labels.tolist() == [[1, 2]]
    assert m.gt_index.tolist() == [[1, 1]]


@needs_triton
@pytest.mark.parametrize("block_g", [1, 2, 4])
def test_ties_across_gt_tiles(block_g):
    box, far = [0, 0, 10, 10], [100, 100, 110, 110]
    gts = _t([[far, far, far, box, far, box, box]])
    m = _match_triton(_t([box]), _t([[box]]), gts, torch.tensor([7]), block_a=16, block_g=block_g)
    assert m.gt_index.tolist() == [[3]]


@pytest.mark.parametrize("impl", IMPLS)
def test_padded_rows_are_ignored(impl):
    anchors = _t([[0, 0, 10, 10], [20, 20, 30, 30]])
    # image 0 owns 1 box; its padding row is a perfect match for a1 and must be ignored
    gts = _t([[[0, 0, 10, 10], [20, 20, 30, 30]], [[20, 20, 30, 30], [0, 0, 10, 10]]])
    preds = anchors[None].repeat(2, 1, 1)
    m = dam_match(anchors, preds, gts, torch.tensor([1, 2]), impl=impl)
    assert m.labels.tolist() == [[1, 0], [1, 1]]
    assert m.gt_index.tolist() == [[0, -1], [1, 0]]


@pytest.mark.parametrize("impl", IMPLS)
def test_no_faces(impl):
    anchors = _t([[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 10]])
    preds = anchors[None].repeat(2, 1, 1)
    for gts, count in ((torch.zeros(2, 0, 4), [0, 0]), (_t([[[0, 0, 10, 10]], [[0, 0, 10, 10]]]), [0, 0])):
        m = dam_match(anchors, preds, gts, count, best_anchor_fallback=True, impl=impl)
        assert m.labels.tolist() == [[0, 0, 0]] * 2
        assert m.gt_index.tolist() == [[-1, -1, -1]] * 2
        assert m.iou.tolist() == [[0.0, 0.0, 0.0]] * 2
    # one image empty, the other with one face
    m = dam_match(anchors, preds, _t([[[0, 0, 10, 10]], [[0, 0, 10, 10]]]), [0, 1], impl=impl)
    assert m.labels.tolist() == [[0, 0, 0], [1, 0, 0]]
    torch.testing.assert_close(m.iou, _t([[0, 0, 0], [1, 25 / 175, 0]]))


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_anchor_set_and_empty_batch(impl):
    m = dam_match(torch.zeros(0, 4), torch.zeros(2, 0, 4), _t([[[0, 0, 1, 1]]] * 2), [1, 1], impl=impl)
    assert m.labels.shape == m.gt_index.shape == m.iou.shape == (2, 0)
    m = dam_match(
        _t([[0, 0, 1, 1]]), torch.zeros(0, 1, 4), torch.zeros(0, 3, 4), torch.zeros(0, dtype=torch.int64), impl=impl
    )
    assert m.labels.shape == (0, 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_area_and_out_of_image_boxes(impl):
    anchors = _t([[0, 0, 10, 10], [5, 5, 5, 5], [-30, -30, -10, -10], [630, 630, 700, 700]])
    gts = _t([[[5, 5, 5, 15], [3, 3, 3, 3], [-25, -25, -10, -10], [640, 640, 700, 700], [0, 0, 10, 10]]])
    preds = _t([[[0, 0, 0, 0], [0, 0, 10, 10], [-25, -25, -10, -10], [8, 8, 2, 2]]])
    m = dam_match(anchors, preds, gts, [5], impl=impl)
    assert not torch.isnan(m.iou).any()
    # a0 == g4; a1 (zero area) matches nothing but its box == g4; a2 vs g2: 225 / 400 = 0.5625;
    # a3 vs g3: 60*60 / 70*70 = 0.7347; zero-area g0 and g1 never win
    assert m.labels.tolist() == [[1, 2, 1, 1]]
    assert m.gt_index.tolist() == [[4, 4, 2, 3]]
    torch.testing.assert_close(m.iou, _t([[1.0, 1.0, 225 / 400, 3600 / 4900]]))


def test_box_iou_matches_hand_values():
    a = _t([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = _t([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 10, 10]])
    torch.testing.assert_close(box_iou(a, b), _t([[25 / 175, 1.0, 0.0], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("impl", IMPLS)
def test_best_anchor_fallback(impl):
    anchors = _t([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    gts = _t(
        [
            [
                [0, 0, 4, 4],  # g0: best anchor a0 with 16 / 100 < T1
                [0, 0, 5, 5],  # g1: also wants a0 with 25 / 100: higher, takes it
                [20, 0, 30, 10],  # g2: a1 matched in step 1
                [21, 0, 24, 3],  # g3: best anchor a1 (9 / 100) but a1 is a step-1 match: not taken
                [40, 0, 44, 4],  # g4: takes a2 (16 / 100)
                [200, 200, 210, 210],  # g5: overlaps no anchor: nothing
            ]
        ]
    )
    preds = anchors[None].clone()
    preds[0, 2] = torch.tensor([40.0, 0, 44, 4])  # a2 is compensated in step 2 for g4 ...
    off = dam_match(anchors, preds, gts, [6], impl=impl)
    assert off.labels.tolist() == [[0, 1, 2, 0]]
    on = dam_match(anchors, preds, gts, [6], best_anchor_fallback=True, impl=impl)
    assert on.labels.tolist() == [[1, 1, 1, 0]]  # ... and the fallback turns it into a label-1 match
    assert on.gt_index.tolist() == [[1, 2, 4, -1]]
    torch.testing.assert_close(on.iou, _t([[0.25, 1.0, 0.16, 0.0]]))


def test_bad_inputs_are_clear_value_errors():
    a, p, g = ANCHORS, PREDS, GTS
    cases = [
        ((a[:, :3], p, g, [2]), {}, "anchors must have shape"),
        ((a, p[0], g, [2]), {}, "pred_boxes must have shape"),
        ((a, p[:, :3], g, [2]), {}, "shapes disagree"),
        ((a.long(), p, g, [2]), {}, "floating"),
        ((a, p, g, [2, 1]), {}, "gt_count must have shape"),
        ((a, p, g, torch.tensor([2.0])), {}, "integer"),
        ((a, p, g, [2]), {"impl": "cuda"}, "impl must be one of"),
        ((a, p, g, [2]), {"t1": 0.0}, "t1"),
        ((a, p, g, [2]), {"t2": float("nan")}, "t2"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            dam_match(*args, **kwargs)


# ---------------------------------------------------------------- kernel vs reference


def _scene(seed, batch, image, max_faces, counts=None):
    """Anchors of an ``image``-sized input, faces of many sizes, and regressed boxes: jittered
    anchors, plus a set pulled onto faces from anchors that miss them (step 2 must happen)."""
    gen = torch.Generator().manual_seed(seed)
    anchors = make_anchors(image, image)
    num = anchors.shape[0]
    if counts is None:
        counts = torch.randint(0, max_faces + 1, (batch,), generator=gen)
    counts = torch.as_tensor(counts)
    side = torch.exp(torch.empty(batch, max_faces, 1).uniform_(2.0, 5.0, generator=gen))
    aspect = torch.empty(batch, max_faces, 1).uniform_(0.7, 1.4, generator=gen)
    xy = torch.rand(batch, max_faces, 2, generator=gen) * image - 8
    gts = torch.cat([xy, xy + torch.cat([side, side * aspect], -1)], -1)
    gts[:, 0] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # a zero-area face in every image
    offsets = torch.randn(batch, num, 4, generator=gen) * 0.5
    preds = BoxCoder().decode(offsets, anchors)
    pulled = torch.randint(0, num, (batch, num // 4), generator=gen)
    target = torch.randint(0, max_faces, (batch, num // 4), generator=gen) % counts.clamp(min=1)[:, None]
    jitter = torch.randn(batch, num // 4, 4, generator=gen) * 0.5
    preds.scatter_(1, pulled[..., None].expand(-1, -1, 4), gts.gather(1, target[..., None].expand(-1, -1, 4)) + jitter)
    return anchors, preds, gts, counts


@needs_triton
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fallback", [False, True])
def test_kernel_matches_reference_on_random_scenes(seed, fallback):
    anchors, preds, gts, counts = _scene(seed, batch=3, image=64, max_faces=40, counts=[0, 40, 7 + seed])
    ref = dam_match(anchors, preds, gts, counts, best_anchor_fallback=fallback, impl="torch")
    assert (ref.labels == 2).sum() > 10 and (ref.labels == 1).sum() > 10  # both steps happen
    _assert_same(ref, dam_match(anchors, preds, gts, counts, best_anchor_fallback=fallback, impl="triton"))


@needs_triton
@pytest.mark.parametrize("block_a,block_g", [(32, 8), (64, 16)])
def test_kernel_with_anchor_count_not_a_block_multiple(block_a, block_g):
    anchors, preds, gts, counts = _scene(3, batch=2, image=48, max_faces=21, counts=[21, 5])
    assert anchors.shape[0] % block_a != 0 and 21 % block_g != 0
    for fallback in (False, True):
        ref = dam_match(anchors, preds, gts, counts, best_anchor_fallback=fallback, impl="torch")
        _assert_same(ref, _match_triton(anchors, preds, gts, counts, block_a, block_g, best_anchor_fallback=fallback))


@needs_triton
def test_kernel_one_face_and_batch_without_faces():
    anchors, preds, gts, _ = _scene(4, batch=2, image=64, max_faces=1, counts=[1, 1])
    for counts in ([1, 0], [0, 0], [1, 1]):
        ref = dam_match(anchors, preds, gts, counts, best_anchor_fallback=True, impl="torch")
        _assert_same(ref, dam_match(anchors, preds, gts, counts, best_anchor_fallback=True, impl="triton"))


@needs_triton
def test_kernel_crowded_1000_faces():
    # the one moderate case: paper anchor layout at 160 x 160 (2,138 anchors), 1,000 faces in one
    # image and 37 in the other (padded to G = 1000); large tiles keep the interpreter quick
    anchors, preds, gts, counts = _scene(5, batch=2, image=160, max_faces=1000, counts=[1000, 37])
    for fallback in (False, True):
        ref = dam_match(anchors, preds, gts, counts, best_anchor_fallback=fallback, impl="torch")
        assert (ref.labels == 1).any() and (ref.labels == 2).any()
        _assert_same(ref, _match_triton(anchors, preds, gts, counts, 512, 512, best_anchor_fallback=fallback))
