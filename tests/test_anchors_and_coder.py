import dataclasses
import math

import pytest
import torch

from acfd.inference.anchors import anchor_count, level_sizes, make_anchors
from acfd.inference.box_coder import BoxCoder
from acfd.training.config import load_preset

STRIDES = (4, 8, 16, 32, 64, 128)


def test_paper_anchor_count_at_640():
    anchors = make_anchors(640, 640, STRIDES)
    assert anchors.shape == (34125, 4)
    sides = (anchors[:, 2] - anchors[:, 0]).unique().tolist()
    assert sides == [16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
    # first anchor is centred on the first stride-4 cell
    assert anchors[0].tolist() == [-6.0, -6.0, 10.0, 10.0]


@pytest.mark.parametrize("hw", [(480, 645), (640, 860), (800, 1075)])
def test_anchor_count_at_test_scales(hw):
    h, w = hw
    expected = sum(math.ceil(h / s) * math.ceil(w / s) for s in STRIDES)
    assert anchor_count(h, w, STRIDES) == expected
    assert make_anchors(h, w, STRIDES).shape == (expected, 4)
    assert level_sizes(h, w, STRIDES)[-1] == (math.ceil(h / 128), math.ceil(w / 128))


def test_box_coder_round_trip():
    torch.manual_seed(0)
    anchors = make_anchors(128, 128, STRIDES)
    xy = torch.rand(anchors.shape[0], 2) * 100
    wh = torch.rand(anchors.shape[0], 2) * 60 + 2
    boxes = torch.cat([xy, xy + wh], dim=1)
    coder = BoxCoder()
    assert torch.allclose(coder.decode(coder.encode(boxes, anchors), anchors), boxes, atol=1e-3)


def test_box_coder_zero_offsets_give_anchor():
    anchors = make_anchors(64, 64, STRIDES)
    assert torch.allclose(BoxCoder().decode(torch.zeros_like(anchors), anchors), anchors)


def test_presets_tiny_overrides_acfd51():
    paper, tiny = load_preset("acfd51"), load_preset("tiny")
    assert paper.model.stage_channels == (128, 160, 192, 224, 128, 128)
    assert paper.model.concat_channels == (256, 512, 768, 1024, 128, 128)
    assert paper.model.stage_repeats == (1, 1, 2, 2, 1, 1)
    assert tiny.model.strides == paper.model.strides
    # tiny differs from the paper only in the psi2 normaliser (stabler short CPU runs, see training/loss.py)
    assert dataclasses.replace(tiny.train, psi2_norm=paper.train.psi2_norm) == paper.train
    assert (paper.train.psi2_norm, tiny.train.psi2_norm) == ("n2", "max_n1_n2")


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_preset("nope")
