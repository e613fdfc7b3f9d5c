"""``acfd demo``: the whole system in one command, from a checkpoint to annotated images.

Contract (``acfd demo [IMAGES...] [--weights W] [--out DIR] [--scenes N] [--seed S] [--min-score S] [--keep]``):

1. export ``W`` (default: the shipped ``acfd.weights.DEFAULT_WEIGHTS``) to ONNX in ``DIR/export``,
   with the int8 model the default engine serves (``acfd export``'s default);
2. build a CPU model repository in ``DIR/repo`` (the default engine, ``acfd repo``'s);
3. start the real Triton Inference Server on free loopback ports (its log: ``DIR/tritonserver.log``);
4. send ``N`` generated cartoon scenes (seeded, 640x384 to 960x540) and every given image (files, or
   folders searched recursively) through the gRPC client one request at a time (after one warm-up
   request), and write each answered image with its boxes and scores to ``DIR/images/*.png``;
5. stop the server (also on Ctrl-C, SIGTERM or an error), then run the same images in process
   (``acfd.inference.pipeline.InProcessPipeline``: the same export, engine, decoding and
   post-processing; one warm-up image) for timing;
6. write ``DIR/summary.json``, print a one-screen summary, and print where the output went as the
   last line. Without ``--keep`` ``DIR/export`` and ``DIR/repo`` are removed at the end.

``summary.json``: ``weights``, ``preset``, ``min_score``, ``seed``, ``test_scales``, ``server``
(``grpc_url``, ``ports``, ``startup_s``, ``log``), ``latency`` (``server_mean_ms``,
``in_process_mean_ms``, ``ratio`` = server / in-process, ``images`` timed, ``engine``,
``omp_wait_policy`` (PASSIVE unless set: see ``run``), and
``load_average`` at the start with ``cpus``: a busy machine makes both timings noisy) and ``images``,
one entry per image in the order sent: ``name``, ``source``, ``annotated`` (``images/NAME`` or null),
``width``, ``height``, ``faces``, ``detections`` (``[{box, score}]``, score >= ``min_score``,
original pixels), ``server_ms``, ``in_process_ms``, ``in_process_faces``, ``labelled_faces`` and
``labelled_found`` and ``labelled_false`` (scenes: faces drawn, how many a detection covers at IoU
0.5, and detections that cover none), ``error``.

Exit codes: 0 when the demo ran (an unreadable user image is reported in the summary and the others
still go through); 1 with one line on stderr for a missing or bad checkpoint, an output folder that
is not a demo folder, a server that cannot start (the server's own reason) or that dies; 130 on
Ctrl-C. The default ``--min-score`` is the model's own display threshold (``InferenceConfig.
display_threshold``, chosen at its best hold-out F1 and carried in the checkpoint and export
manifest), as for ``acfd detect``: the server keeps every box above the paper's 0.08 evaluation
threshold (right for AP, which rewards recall), too many to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acfd.weights import DEFAULT_WEIGHTS

DEFAULT_OUT = Path("acfd-demo")
DEFAULT_SCENES = 6
SCENE_SIZES = ((640, 384), (960, 540), (800, 450))  # (width, height), cycled: landscape cartoon frames
MARKER = ".acfd-demo"  # marks a folder this command may clean and refill
TABLE_ROWS = 20  # longer runs print the first rows; summary.json has all
REQUEST_TIMEOUT_S = 120.0


class DemoError(RuntimeError):
    """A demo that cannot go on; the message is one line."""


@dataclass
class DemoImage:
    """One image of the demo: what is sent and what came back."""

    name: str  # annotated file, relative to DIR/images
    source: str
    data: bytes | None = None  # encoded bytes sent to the server (None: unreadable)
    labels: np.ndarray | None = None  # drawn face boxes of a generated scene
    width: int | None = None
    height: int | None = None
    detections: list = field(default_factory=list)  # acfd.clients.detections.Detection
    server_s: float | None = None
    in_process_s: float | None = None
    in_process_faces: int | None = None
    annotated: Path | None = None
    error: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGES", help="your own images or folders, sent after the scenes")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="checkpoint to demonstrate")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help="output folder")
    parser.add_argument(
        "--scenes", type=int, default=DEFAULT_SCENES, metavar="N", help="generated cartoon scenes to send"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="draw and count detections scoring >= S "
        "(default: the model's display threshold, chosen at its hold-out F1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep DIR/export and DIR/repo (to `acfd serve` them later)")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # Before torch loads OpenMP: spinning workers made PyTorch 10x slower on 2 shared cores (7.9 s, not 0.7 s)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind like Ctrl-C: the server stops
    try:
        summary = demo(args, started)
    except DemoError as err:
        print(f"acfd demo: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, an unwritable --out: name the file and the problem
        print(f"acfd demo: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_summary(summary)  # then, last, where the output went
    print(
        f"acfd demo: done in {summary['wall_s']:.0f} s; annotated images and summary.json in {Path(args.out).resolve()}"
    )
    return 0


def demo(args: argparse.Namespace, started: float) -> dict:
    """Steps 1-6 of the module contract; returns the summary (also written to DIR/summary.json)."""
    load_average = os.getloadavg()[0]  # before our own work: what else keeps the machine busy
    weights = check_arguments(args)
    out = Path(args.out)
    prepare_out(out)
    scenes = generated_scenes(args.scenes, args.seed)
    items = scenes + user_images(args.images, taken={item.name for item in scenes})
    if not items:
        raise DemoError("nothing to detect: give --scenes N > 0 or image files")
    preset = export_and_build(weights, out)
    if args.min_score is None:
        args.min_score = preset.inference.display_threshold
    server_info = serve_and_detect(out, items, args.min_score)
    server_info["engine"] = time_locally(out / "export", items, args.min_score)
    if not args.keep:
        shutil.rmtree(out / "export", ignore_errors=True)
        shutil.rmtree(out / "repo", ignore_errors=True)
    summary = build_summary(args, weights, preset, server_info, items, load_average)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def check_arguments(args: argparse.Namespace) -> Path:
    if args.scenes < 0:
        raise DemoError(f"--scenes {args.scenes}: must be >= 0")
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise DemoError(f"--min-score {args.min_score}: must be between 0 and 1")
    weights = Path(args.weights)
    if not weights.is_file():
        if weights == DEFAULT_WEIGHTS:
            raise DemoError(
                f"the default model is not there ({weights}: this copy of ACFD has no trained weights); "
                "pass a checkpoint with --weights PATH (e.g. RUN/best.pt from `acfd train`)"
            )
        raise DemoError(f"--weights {weights}: no such checkpoint file")
    return weights


def prepare_out(out: Path) -> None:
    """Create ``out``, or empty the images and summary of an earlier demo there; refuse other folders."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DemoError(f"--out {out}: folder exists and was not made by `acfd demo`; choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("output folder of `acfd demo`; it may empty DIR/images when run again\n")
    except OSError as err:
        raise DemoError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "summary.json").unlink(missing_ok=True)


def generated_scenes(count: int, seed: int) -> list[DemoImage]:
    """``count`` seeded scenes (scene ``i`` from ``default_rng([seed, i])``), encoded as PNG."""
    from acfd.inference.image_io import encode_png
    from acfd.scenes.synth import generate_scene

    items = []
    for i in range(count):
        width, height = SCENE_SIZES[i % len(SCENE_SIZES)]
        image, boxes = generate_scene(np.random.default_rng([seed, i]), width, height)
        items.append(DemoImage(f"scene-{i:02d}.png", f"generated (seed {seed}, scene {i})", encode_png(image), boxes))
    return items


def user_images(inputs: list[str], taken: set[str]) -> list[DemoImage]:
    """The given files and folders; a path that cannot be read becomes an item with its error."""
    from acfd.clients.detect_cli import collect_images
    from acfd.clients.grpc_client import ImageInputError, encode_image

    jobs, errors = collect_images(inputs)
    items = [DemoImage("", line.split(": ", 1)[0], error=line) for line in errors]
    taken = set(taken)
    for job in jobs:
        name, n = job.out_name.as_posix(), 1
        while name in taken:
            name = job.out_name.with_name(f"{job.out_name.stem}-{n}.png").as_posix()
            n += 1
        taken.add(name)
        item = DemoImage(name, str(job.path))
        try:
            item.data = encode_image(job.path)
        except ImageInputError as err:
            item.error = str(err)
        items.append(item)
    return items


def export_and_build(weights: Path, out: Path):
    """Steps 1-2: export to ``out/export`` and build ``out/repo``; returns the checkpoint's preset."""
    from acfd.serving.repo import RepoError, build_repository
    from acfd.export.graph import ExportError, export_model
    from acfd.training.config import Preset
    from acfd.export.quantize import quantize_export

    step = time.monotonic()
    _say(f"[1/5] exporting {weights} to ONNX in {out / 'export'} (and int8, calibrated on generated scenes)")
    try:
        manifest = export_model(weights, out / "export", progress=True)
        manifest = quantize_export(out / "export")
    except ExportError as err:
        raise DemoError(str(err)) from None
    preset = Preset.from_dict(manifest.preset_config)
    scales = ", ".join(f"{h}x{w}" for h, w in preset.inference.test_scales)
    _say(f"[1/5] exported preset {preset.name!r} in {time.monotonic() - step:.1f} s (test scales {scales})")
    step = time.monotonic()
    try:
        build_repository(out / "export", out / "repo", target="cpu")
    except RepoError as err:
        raise DemoError(str(err)) from None
    _say(f"[2/5] model repository (target cpu) in {out / 'repo'} ({time.monotonic() - step:.1f} s)")
    return preset


def serve_and_detect(out: Path, items: list[DemoImage], min_score: float) -> dict:
    """Steps 3-4, with the server stopped whatever happens; returns what the summary says of it."""
    from acfd.serving.server import ServerConfig, ServerError, TritonServer, free_port

    ports: set[int] = set()
    while len(ports) < 3:  # three distinct free loopback ports
        ports.add(free_port())
    grpc_port, http_port, metrics_port = sorted(ports)
    log = (out / "tritonserver.log").resolve()
    config = ServerConfig(
        out / "repo", grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_file=log
    )
    server = TritonServer(config)
    _say(f"[3/5] starting Triton Inference Server (gRPC {server.grpc_url}, log {log})")
    try:
        try:
            server.start()
        except ServerError as err:
            raise DemoError(f"the server did not start: {err}") from None
        _say(f"[3/5] server ready in {server.startup_s:.1f} s")
        detect_on_server(server, items, out / "images", min_score)
    finally:
        if server.process is not None:
            handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:  # a second Ctrl-C must not cut the shutdown short
                server.stop()
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
            _say("[4/5] server stopped")
    return {
        "grpc_url": server.grpc_url,
        "ports": {"grpc": grpc_port, "http": http_port, "metrics": metrics_port},
        "startup_s": round(server.startup_s or 0.0, 2),
        "log": str(log),
    }


def detect_on_server(server, items: list[DemoImage], images_dir: Path, min_score: float) -> None:
    """Send every readable image, one request at a time; write the annotated copies."""
    from tqdm import tqdm

    from acfd.clients.detections import save_annotated
    from acfd.clients.grpc_client import ClientError, DetectorClient, InferenceFailed
    from acfd.inference.image_io import ImageError, decode_image

    todo = [item for item in items if item.data is not None]
    _say(f"[4/5] detecting faces in {len(todo)} images over gRPC (one warm-up request first)")
    with DetectorClient(server.grpc_url, timeout_s=REQUEST_TIMEOUT_S, min_score=min_score, drain_s=5.0) as client:
        try:
            client.check_ready()
            if todo:
                client.detect(todo[0].data)  # warm-up: first-run costs are not the steady latency
            for item in tqdm(todo, desc="detect", unit="img", disable=None, file=sys.stderr):
                try:
                    item.detections, item.server_s = client.detect_timed(item.data, source=item.source)
                    image = decode_image(item.data, name=item.source)
                    item.height, item.width = image.shape[:2]
                    item.annotated = save_annotated(images_dir / item.name, image, item.detections)
                except (InferenceFailed, ImageError) as err:  # this image only
                    item.error = str(err)
        except ClientError as err:  # the server is gone or not ready: nothing else can go through
            if server.process is not None and server.process.poll() is not None:
                raise DemoError(
                    f"the server stopped during the demo: {server.failure_reason(server.process.returncode)}"
                ) from None
            raise DemoError(str(err)) from None


def time_locally(export_dir: Path, items: list[DemoImage], min_score: float) -> str:
    """Step 5: the answered images through the served pipeline in this process (the export, the
    server's engine, decode and post-processing: ``InProcessPipeline``); returns the engine's name."""
    from acfd.inference.pipeline import InProcessPipeline, time_in_process

    pipeline = InProcessPipeline(export_dir)  # the default engine, as the repository was built with
    todo = [item for item in items if item.server_s is not None and item.error is None]
    _say(f"[5/5] timing the same {len(todo)} images in process ({pipeline.engine.describe()})")
    if not todo:
        return pipeline.engine.describe()
    for index, run_s, (_, scores) in time_in_process(pipeline, [item.data for item in todo], progress="in process"):
        todo[index].in_process_s = run_s
        todo[index].in_process_faces = int((scores >= min_score).sum())
    return pipeline.engine.describe()


def build_summary(args, weights: Path, preset, server_info: dict, items: list[DemoImage], load_average: float) -> dict:
    from acfd.training.evaluation.ap import match_image

    records = []
    for item in items:
        found = false = None
        if item.labels is not None and item.error is None:
            boxes = np.asarray([d.box for d in item.detections], np.float32).reshape(-1, 4)
            found = int(match_image(boxes, [d.score for d in item.detections], item.labels, 0.5)[1].sum())
            false = len(item.detections) - found
        records.append(
            {
                "name": item.name or None,
                "source": item.source,
                "annotated": f"images/{item.name}" if item.annotated else None,
                "width": item.width,
                "height": item.height,
                "faces": None if item.error else len(item.detections),
                "detections": [d.to_dict() for d in item.detections] if not item.error else [],
                "server_ms": _ms(item.server_s),
                "in_process_ms": _ms(item.in_process_s),
                "in_process_faces": item.in_process_faces,
                "labelled_faces": None if item.labels is None else int(len(item.labels)),
                "labelled_found": found,
                "labelled_false": false,
                "error": item.error,
            }
        )
    timed = [item for item in items if item.server_s is not None and item.in_process_s is not None]
    server_mean = float(np.mean([i.server_s for i in timed])) if timed else None
    local_mean = float(np.mean([i.in_process_s for i in timed])) if timed else None
    return {
        "weights": str(weights.resolve()),
        "preset": preset.name,
        "min_score": args.min_score,
        "seed": args.seed,
        "test_scales": [list(s) for s in preset.inference.test_scales],
        "server": server_info,
        "latency": {
            "server_mean_ms": _ms(server_mean),
            "in_process_mean_ms": _ms(local_mean),
            "ratio": round(server_mean / local_mean, 3) if timed and local_mean > 0 else None,
            "images": len(timed),
            "engine": server_info.get("engine"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average": round(load_average, 2),
            "cpus": len(os.sched_getaffinity(0)),
        },
        "images": records,
    }


def print_summary(summary: dict) -> None:
    """The one-screen table: per image faces and latencies, then the means and their ratio."""
    rows = summary["images"]
    width = min(max([len(r["name"] or r["source"]) for r in rows] + [5]), 40)
    print(f"\n{'image':<{width}}  {'size':>9}  {'faces':>5}  {'labelled':>8}  {'server ms':>9}  {'local ms':>10}")
    for r in rows[:TABLE_ROWS]:
        name = (r["name"] or r["source"])[-width:]
        if r["error"]:
            print(f"{name:<{width}}  FAILED: {r['error']}")
            continue
        size = f"{r['width']}x{r['height']}"
        labelled = f"{r['labelled_found']}/{r['labelled_faces']}" if r["labelled_faces"] is not None else "-"
        local = f"{r['in_process_ms']:.1f}" if r["in_process_ms"] is not None else "-"
        print(f"{name:<{width}}  {size:>9}  {r['faces']:>5}  {labelled:>8}  {r['server_ms']:>9.1f}  {local:>10}")
    if len(rows) > TABLE_ROWS:
        print(f"... and {len(rows) - TABLE_ROWS} more images (see summary.json)")
    scenes = [r for r in rows if r["labelled_found"] is not None]
    if scenes:
        covered, drawn = sum(r["labelled_found"] for r in scenes), sum(r["labelled_faces"] for r in scenes)
        false = sum(r["labelled_false"] for r in scenes)
        print(f"generated scenes: {covered} of {drawn} drawn faces covered, {false} false boxes")
    lat = summary["latency"]
    print(
        f"faces: detections scoring >= {summary['min_score']:g}; "
        "labelled: a scene's drawn faces that one covers (IoU >= 0.5) / all"
    )
    if lat["images"]:
        print(
            f"mean latency over {lat['images']} images: Triton server {lat['server_mean_ms']:.1f} ms, "
            f"in process {lat['in_process_mean_ms']:.1f} ms (server / in-process = {lat['ratio']:.2f}x; "
            f"both {lat['engine']})"
        )
        if lat["load_average"] > 0.5 * lat["cpus"]:
            print(
                f"note: the machine is busy (load average {lat['load_average']:g} on {lat['cpus']} CPUs): "
                "both timings are noisy"
            )
    server = summary["server"]
    print(f"server: gRPC {server['grpc_url']}, ready in {server['startup_s']:.1f} s, now stopped; log {server['log']}")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000.0 * seconds, 2)


def _say(line: str) -> None:
    print(f"acfd demo: {line}", flush=True)
