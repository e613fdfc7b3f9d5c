"""Everything ``acfd predict`` writes into ``--out``, from one writer, in source and frame order.

``Writer(folder, options, state)`` appends to ``detections.jsonl`` (one JSON object per image or
sampled frame: ``source, frame, time_s, shot, width, height, faces, detections: [{box, score}]``,
with ``track`` in each detection under ``--track``; ``frame``, ``time_s``, ``shot`` are null for
images) and ``progress.jsonl`` (``acfd.jobs.journal``), and writes annotated images (PNG), annotated
videos (``NAME.annotated.mp4``) and crops. Detections arrive as arrays; the writer rounds them as the
records hold them and feeds those values to the tracker.

Pixels: a frame's pixels come with it in one process; where they do not (Ray workers send
detections only, and a resumed video's committed frames are drawn again) the writer reads the video
itself, from the first frame it needs, when it has something to draw or crop (``--no-annotate``
without ``--save-crops`` reads nothing).

On resume, ``begin_video`` replays the committed records of the video that was in progress through
a fresh tracker (checking that it gives the recorded track ids) and redraws what they drew, so the
outputs continue as if the job had never stopped. ``finish`` writes ``tracks.json`` (tracks by source,
``acfd.tracking.tracks.summarize_tracks``, with the crop of each track's best sighting under
``--save-crops``) and ``summary.json`` from the records on disk.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acfd.jobs.journal import JobError, JobFolder, ResumeState
from acfd.jobs.sources import Source, read_video
from acfd.tracking.tracks import TrackBook, recorded, summarize_tracks


@dataclass(frozen=True)
class OutputOptions:
    annotate: bool = True
    save_crops: bool = False
    track: bool = False
    tracker: str = "bytetrack"
    every: int = 1
    start: int = 0
    end: int | None = None
    echo_json: bool = False


def crop_box(rgb: np.ndarray, box) -> np.ndarray | None:
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = box
    x1, y1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
    x2, y2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
    return rgb[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else None


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write the image")


class Writer:
    def __init__(self, folder: JobFolder, options: OutputOptions, state: ResumeState):
        self.folder, self.options, self.state = folder, options, state
        self.out = folder.out
        self.lines = folder.detections.open("a", buffering=1)  # line-buffered: a line is committed once written
        self.progress = folder.progress.open("a", buffering=1)
        self.new_lines = 0
        self._video = None
        self.source: Source | None = None

    @property
    def needs_pixels(self) -> bool:
        return self.options.annotate or self.options.save_crops

    # --- images -------------------------------------------------------------------------------

    def image(self, source: Source, boxes: np.ndarray, scores: np.ndarray, size: tuple[int, int], rgb=None) -> None:
        """One image's detections (``size``: width, height); its pixels are read again if needed and not given."""
        from acfd.clients.detections import Detection, save_annotated

        box_list, score_list = recorded(boxes, scores)
        if self.needs_pixels and rgb is None:
            from acfd.inference.image_io import read_image

            rgb = read_image(source.path)
        if self.options.annotate:
            found = [Detection(tuple(b), s) for b, s in zip(box_list, score_list)]
            save_annotated(self.out / f"{source.out_name}.png", rgb, found)
        if self.options.save_crops:
            self._frame_crops(source.out_name, rgb, box_list)
        self._line(source, None, None, None, size[0], size[1], box_list, score_list, None)
        self._finished(source, 1, None)

    def image_committed(self, source: Source) -> None:
        """An image whose line was committed before the job stopped: only its progress line is missing."""
        self._finished(source, 1, None)

    def failed(self, source: Source, message: str) -> None:
        """``source`` could not be (fully) read: its progress line says why; what it committed stays."""
        lines = 0
        if self.source == source:
            lines = self._resumed_lines + self._source_lines
            self._close_video()
            self.source = None
        self._finished(source, lines, message)

    # --- videos -------------------------------------------------------------------------------

    def begin_video(self, source: Source, fps: float) -> int:
        """Start (or continue) a video; returns the first frame still to detect."""
        o = self.options
        self.source, self.fps = source, fps
        self.book = TrackBook(o.tracker, (fps if fps > 0 else 30.0) / o.every) if o.track else None
        self.shot = None
        self.best: dict[int, tuple[float, np.ndarray | None]] = {}
        self._pixels = None
        self._video_path = self.out / f"{source.out_name}.annotated.mp4"
        self._source_lines = self._resumed_lines = 0
        committed = self.state.records.get(str(source.path), []) if self.state.in_progress == str(source.path) else []
        self._resumed_lines = len(committed)  # already in detections.jsonl, whatever happens next
        for record in committed:
            boxes = [d["box"] for d in record["detections"]]
            scores = [d["score"] for d in record["detections"]]
            ids = self._track(record["shot"], boxes, scores)
            if o.track and ids != [d.get("track") for d in record["detections"]]:
                raise JobError(f"{source.path}: the recorded tracks of frame {record['frame']} do not replay "
                               f"(another tracker version?); remove {self.out} and start again")  # fmt: skip
            if self.needs_pixels:
                self._draw(record["frame"], self._rgb(record["frame"]), boxes, scores, ids)
        return committed[-1]["frame"] + o.every if committed else o.start

    def frame(self, index: int, time_s: float, cut: bool, size: tuple[int, int], boxes, scores, rgb=None) -> None:
        box_list, score_list = recorded(boxes, scores)
        shot = 0 if self.shot is None else self.shot + int(cut)
        ids = self._track(shot, box_list, score_list)
        if self.needs_pixels:
            self._draw(index, rgb if rgb is not None else self._rgb(index), box_list, score_list, ids)
        known = time_s == time_s  # NaN: the video has no frame rate
        self._line(self.source, index, round(time_s, 4) if known else None, shot, size[0], size[1], box_list,
                   score_list, ids)  # fmt: skip
        self._source_lines += 1

    def end_video(self) -> None:
        """The current video is done: its best crops, the annotated video closed, its progress line."""
        self._close_video()
        if self.options.track and self.options.save_crops:
            for track, (_, crop) in sorted(self.best.items()):
                if crop is not None:
                    write_png(self.out / "crops" / f"{self.source.out_name}_t{track}.png", crop)
        self._finished(self.source, self._resumed_lines + self._source_lines, None)
        self.source = None

    # --- the end ------------------------------------------------------------------------------

    def finish(self, sources: list[Source], argument_errors: int, model: str, min_score: float) -> dict:
        self.close()
        records = [json.loads(line) for line in self.folder.detections.read_text().splitlines()]
        progress = [json.loads(line) for line in self.folder.progress.read_text().splitlines()]
        names = {str(s.path): s.out_name for s in sources}
        summary = {
            "images": sum(r["frame"] is None for r in records),
            "video_frames": sum(r["frame"] is not None for r in records),
            "faces": sum(r["faces"] for r in records),
            "failed": argument_errors + sum(p["error"] is not None for p in progress),
            "min_score": min_score,
            "model": model,
            "out": str(self.out),
        }
        if self.options.track:
            tracks = summarize_tracks(records)
            for t in tracks:
                crop = f"crops/{names[t['source']]}_t{t['id']}.png"
                t["crop"] = crop if self.options.save_crops and (self.out / crop).is_file() else None
            summary["tracks"] = len(tracks)
            self.folder.write_json(self.folder.tracks, {"tracker": self.options.tracker, "tracks": tracks})
        self.folder.write_json(self.folder.summary, summary)
        return summary

    def close(self) -> None:
        self._close_video()
        self.lines.close()
        self.progress.close()

    # --- helpers ------------------------------------------------------------------------------

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def _track(self, shot: int, boxes, scores) -> list[int | None] | None:
        cut = self.shot is not None and shot != self.shot
        self.shot = shot
        if self.book is None:
            return None
        return self.book.update(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), cut)

    def _line(self, source, frame, time_s, shot, width, height, boxes, scores, ids) -> None:
        detections = [{"box": b, "score": s} for b, s in zip(boxes, scores)]
        if ids is not None:
            for det, track in zip(detections, ids):
                det["track"] = track
        line = {"source": str(source.path), "frame": frame, "time_s": time_s, "shot": shot, "width": width,
                "height": height, "faces": len(detections), "detections": detections}  # fmt: skip
        text = json.dumps(line)
        self.lines.write(text + "\n")
        self.new_lines += 1
        if self.options.echo_json:
            print(text, flush=True)

    def _finished(self, source: Source, lines: int, error: str | None) -> None:
        self.progress.write(json.dumps({"source": str(source.path), "lines": lines, "error": error}) + "\n")

    def _rgb(self, index: int) -> np.ndarray:
        """The pixels of frame ``index`` of the current video, read in order by the writer itself."""
        o = self.options
        if self._pixels is None:
            self._pixels = read_video(self.source.path, index, o.end, o.every, origin=o.start, cut_threshold=1.0)
        for frame in self._pixels:
            if frame.index == index:
                return frame.rgb
            if frame.index > index:
                break
        raise OSError(f"{self.source.path}: frame {index} cannot be read again")

    def _draw(self, index: int, rgb: np.ndarray, boxes, scores, ids) -> None:
        o = self.options
        if o.save_crops:
            if ids is None:
                self._frame_crops(f"{self.source.out_name}_f{index:06d}", rgb, boxes)
            else:
                for box, score, track in zip(boxes, scores, ids):
                    if track is not None and score > self.best.get(track, (-1.0, None))[0]:
                        crop = crop_box(rgb, box)
                        self.best[track] = (score, None if crop is None else crop.copy())
        if o.annotate:
            self._video_frame(self._annotated(rgb, boxes, scores, ids))

    @staticmethod
    def _annotated(rgb, boxes, scores, ids) -> np.ndarray:
        if ids is None:
            from acfd.clients.detections import Detection, draw_detections

            return draw_detections(rgb, [Detection(tuple(b), s) for b, s in zip(boxes, scores)])
        from acfd.tracking.draw import draw_tracks

        return draw_tracks(rgb, boxes, scores, ids)

    def _frame_crops(self, stem: str, rgb: np.ndarray, boxes) -> None:
        for k, box in enumerate(boxes):
            crop = crop_box(rgb, box)
            if crop is not None:
                write_png(self.out / "crops" / f"{stem}_{k}.png", crop)

    def _video_frame(self, annotated: np.ndarray) -> None:
        import cv2

        if self._video is None:
            height, width = annotated.shape[:2]
            self._video_path.parent.mkdir(parents=True, exist_ok=True)
            fps = self.fps if self.fps > 0 else 25.0
            self._video = cv2.VideoWriter(str(self._video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self._video.isOpened():
                raise OSError(f"{self._video_path}: OpenCV cannot write an mp4 video here")
        self._video.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))


def report(message: str) -> None:
    print(f"acfd predict: {' '.join(str(message).split())}", file=sys.stderr)
