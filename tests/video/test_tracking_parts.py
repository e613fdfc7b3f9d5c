"""The parts of tracking, without a detector: trackers, track ids and summaries, scene cuts, video
reading from any grid frame, the generated clips and the MOT metrics.

Hand-made boxes and records with the expected answer written out (as mmdetection's assigner tests),
and the generated clips' own ground truth as perfect detections.
"""

from __future__ import annotations

import numpy as np
import pytest

from acfd.tracking.trackers import TRACKERS, box_iou, make_tracker
from acfd.tracking.tracks import TrackBook, recorded, summarize_tracks


def moving_boxes(frames: int) -> list[np.ndarray]:
    """Two faces: one walking right 4 px a frame, one standing still far from it."""
    return [np.array([[10 + 4 * t, 20, 50 + 4 * t, 60], [200, 100, 240, 150]], np.float32) for t in range(frames)]


@pytest.mark.parametrize("name", TRACKERS)
def test_each_tracker_keeps_ids_and_a_cut_ends_them(name):
    book = TrackBook(name, frame_rate=24)
    scores = np.array([0.9, 0.8], np.float32)
    seen = [book.update(boxes, scores) for boxes in moving_boxes(8)]
    settled = [ids for ids in seen if None not in ids]  # norfair names a track from its second hit on
    assert len(settled) >= 7 and all(ids == [1, 2] for ids in settled)
    assert book.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) == []
    after = [book.update(boxes, scores, cut=t == 0) for t, boxes in enumerate(moving_boxes(3))][-1]
    assert after == [3, 4]  # the same boxes after a cut are new tracks


def test_iou_baseline_follows_boxes_not_input_order():
    tracker = make_tracker("iou")
    first = tracker.update(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.ones(2, np.float32))
    assert first.tolist() == [1, 2]
    swapped = tracker.update(np.array([[51, 51, 61, 61], [1, 0, 11, 10], [200, 0, 210, 9]], np.float32), np.ones(3))
    assert swapped.tolist() == [2, 1, 3]  # IoU 0.68 and 0.82 with the old boxes; the third is new
    gone = tracker.update(np.array([[120, 120, 130, 130]], np.float32), np.ones(1))
    assert gone.tolist() == [4]  # no overlap: a new track, the old ones end at once


def test_box_iou_by_hand():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])


def test_trackbook_numbers_tracks_in_order_and_a_cut_ends_them():
    book = TrackBook("iou")
    a, b = [0, 0, 10, 10], [50, 50, 60, 60]
    assert book.update(np.array([a, b]), np.array([0.9, 0.8])) == [1, 2]
    assert book.update(np.array([b, a]), np.array([0.9, 0.8])) == [2, 1]
    assert book.update(np.array([a, b]), np.array([0.9, 0.8]), cut=True) == [3, 4]
    assert book.shot == 1


def test_recorded_rounds_as_the_json_lines_do():
    from acfd.clients.detections import Detection

    rng = np.random.default_rng(0)
    boxes, scores = rng.uniform(0, 500, (20, 4)).astype(np.float32), rng.uniform(0, 1, 20).astype(np.float32)
    got_boxes, got_scores = recorded(boxes, scores)
    want = [Detection(tuple(b), s).to_dict() for b, s in zip(boxes.tolist(), scores.tolist())]
    assert got_boxes == [w["box"] for w in want] and got_scores == [w["score"] for w in want]
    assert recorded(np.array([[1.23456, 2, 3, 4]]), np.array([0.123456])) == ([[1.23, 2.0, 3.0, 4.0]], [0.1235])


def test_summaries_by_hand():
    def rec(source, frame, dets):
        found = [{"box": [frame, 0, frame + 10, 10], "score": s, "track": t} for t, s in dets]
        return {"source": source, "frame": frame, "time_s": frame / 10, "shot": 0, "detections": found}

    records = [rec("v.mp4", 0, [(1, 0.5), (2, 0.9)]), rec("v.mp4", 2, [(1, 0.7), (None, 0.6)]),
               rec("v.mp4", 4, [(1, 0.7)]), rec("w.mp4", 0, [(1, 0.4)])]  # fmt: skip
    tracks = summarize_tracks(records)
    assert [(t["source"], t["id"]) for t in tracks] == [("v.mp4", 1), ("v.mp4", 2), ("w.mp4", 1)]
    one = tracks[0]
    assert (one["first_frame"], one["last_frame"], one["first_time_s"], one["last_time_s"]) == (0, 4, 0.0, 0.4)
    assert one["frames"] == 3 and one["mean_score"] == pytest.approx(0.6333, abs=1e-4)
    assert (one["best_frame"], one["best_score"], one["best_box"]) == (2, 0.7, [2, 0, 12, 10])  # earliest of the ties
    assert tracks[1]["frames"] == 1 and tracks[1]["best_frame"] == 0


def test_cuts_are_found_where_the_clip_cuts(videos):
    from acfd.tracking.cuts import CutDetector

    for clip in videos.clips:
        cuts = CutDetector()
        found = [t for t, frame in enumerate(clip.frames) if cuts.feed(frame)]
        assert found == clip.cuts
        off = CutDetector(1.0)
        assert not any(off.feed(frame) for frame in clip.frames)
    with pytest.raises(ValueError, match="must be above 0"):
        CutDetector(0.0)


@pytest.mark.parametrize("every,origin", [(1, 0), (3, 1)])
def test_reading_from_any_grid_frame_gives_what_a_whole_read_gives(videos, every, origin):
    from acfd.jobs.sources import read_video

    path = videos.paths[0]
    whole = list(read_video(path, origin, None, every, origin=origin))
    assert [f.index for f in whole] == list(range(origin, 24, every))
    assert [f.index for f in whole if f.cut] == [min(i for i in range(origin, 24, every) if i >= 12)]
    for first in (origin + every, origin + 3 * every):
        part = list(read_video(path, first, None, every, origin=origin))
        tail = [f for f in whole if f.index >= first]
        assert [(f.index, f.cut) for f in part] == [(f.index, f.cut) for f in tail]
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(part, tail))
    with pytest.raises(ValueError, match="sampling grid"):
        next(read_video(path, origin + 1, None, 2, origin=origin))
    assert list(read_video(path, 100, None, 1, required=False)) == []
    with pytest.raises(OSError, match="no frames could be read"):
        list(read_video(path, 100, None, 1))


def test_generated_clips_hold_the_hard_cases():
    from acfd.scenes.clips import generate_clip

    clip = generate_clip(np.random.default_rng((25, 0)), 320, 180, 48, 2)
    again = generate_clip(np.random.default_rng((25, 0)), 320, 180, 48, 2)
    assert all(np.array_equal(a, b) for a, b in zip(clip.frames, again.frames)) and clip.truth == again.truth
    assert clip.cuts == [24] and len(clip.frames) == 48
    shot_ids = [{i for f in range(a, b) for i, _ in clip.truth[f]} for a, b in ((0, 24), (24, 48))]
    assert shot_ids[0] and shot_ids[1] and not shot_ids[0] & shot_ids[1]  # a cut brings new identities
    p, q = ({f: b for f in range(24) for j, b in clip.truth[f] if j == i} for i in sorted(shot_ids[0])[:2])
    overlap = [f for f in p if f in q and box_iou(np.array([p[f]]), np.array([q[f]]))[0, 0] > 0]
    hidden = [f for f in range(24) if f not in p or f not in q]
    assert overlap or hidden  # the pair crosses: their boxes overlap, or one hides the other
    with pytest.raises(ValueError, match="cannot hold"):
        generate_clip(np.random.default_rng(0), 64, 64, 3, 2)


def test_mot_metrics_by_hand():
    from acfd.tracking.mot_metrics import score_clips

    a, b = (0, 0, 10, 10), (50, 0, 60, 10)
    truth = [[(1, a), (2, b)]] * 4
    perfect = score_clips([(truth, [[(7, a), (8, b)]] * 4)])
    assert (perfect["idf1"], perfect["mota"], perfect["id_switches"]) == (1.0, 1.0, 0)
    swapped = [[(7, a), (8, b)]] * 2 + [[(8, a), (7, b)]] * 2
    got = score_clips([(truth, swapped)])
    # two switches at frame 2; each true face keeps its best hypothesis id for 2 of 4 frames
    assert got["id_switches"] == 2 and got["mota"] == pytest.approx(1 - 2 / 8) and got["idf1"] == pytest.approx(0.5)
    missed = score_clips([(truth, [[(7, a)]] * 4)])
    assert missed["misses"] == 4 and missed["recall"] == pytest.approx(0.5)


def test_trackers_on_perfect_detections_of_generated_clips(videos):
    """The clips' true boxes as detections: every tracker covers them (MOTA), ByteTrack keeps identity
    at least as well as the IoU baseline (IDF1) through the crossings and the occluding poles."""
    from acfd.scenes.clips import generate_clip
    from acfd.tracking.cuts import CutDetector
    from acfd.tracking.mot_metrics import score_clips

    clips = [generate_clip(np.random.default_rng((27, k)), 320, 180, 48, 2) for k in range(3)]
    scores = {}
    for name in TRACKERS:
        pairs = []
        for clip in clips:
            book, cuts, found = TrackBook(name, 24.0), CutDetector(), []
            for frame, faces in zip(clip.frames, clip.truth):
                boxes = np.array([b for _, b in faces], np.float32).reshape(-1, 4)
                ids = book.update(boxes, np.full(len(boxes), 0.9, np.float32), cuts.feed(frame))
                found.append([(i, b) for i, (_, b) in zip(ids, faces) if i is not None])
            pairs.append((clip.truth, found))
        scores[name] = score_clips(pairs)
    for name, s in scores.items():
        assert s["mota"] > 0.8, (name, s)
    assert scores["bytetrack"]["idf1"] >= scores["iou"]["idf1"], scores
