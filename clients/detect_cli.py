"""``acfd detect``: send images to the served ensemble over gRPC, print and draw what it finds.

Contract:

* Arguments are image files or folders (searched recursively for .jpg/.jpeg/.png/.bmp/.webp).
* With ``--out DIR`` each image's annotated copy is written as PNG to ``DIR`` (a folder argument's
  inner layout is kept). With ``--json`` stdout holds one JSON object per image
  (``image, width, height, faces, latency_ms, detections: [{box, score}]``) and nothing else; the
  summary then goes to stderr. Without it, one ``PATH: N faces (T ms)`` line per image.
* The summary line gives images, faces and the mean request latency.
* ``--url`` may be repeated (or hold several addresses separated by commas): requests spread over
  the ready servers, least outstanding requests first; a server that fails or goes unready is
  skipped and tried again later, and the image goes to another (``acfd.clients.pool``). Every image
  is answered once, in input order, whichever server answered it; the summary says how many each did.
* Failures a repair or another server can cure (a model's process died, a server went away, no
  answer within ``--timeout``) are retried up to ``--retries`` times within ``--deadline`` seconds;
  a request refused as bad input never is.
* No server that can be reached, or none with the model loaded: one line on stderr, exit 2 (before
  any image is sent). An unreadable or undecodable image: one line on stderr naming it, the other
  images still go through, exit 1. A request the server failed on (its fault, gRPC ``INTERNAL``)
  is one line saying so, also exit 1, and the summary counts the two kinds apart. Exit 0 when
  every image was answered.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from acfd.clients.grpc_client import (
    COMPRESSIONS,
    ClientError,
    DEFAULT_MODEL,
    DetectorClient,
    DetectOutcome,
    ModelNotReady,
    ServerFault,
    ServerUnavailable,
)

from acfd.clients.pool import add_url_argument, urls_from_args
from acfd.inference.image_io import IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageJob:
    path: Path
    out_name: Path  # relative name of the annotated copy under --out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS", help="image files and/or folders of images")
    add_url_argument(parser)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name of the served ensemble")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="write annotated PNGs here")
    parser.add_argument("--json", action="store_true", help="one JSON line per image on stdout")
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="keep detections scoring at least S (default: the served model's display threshold, "
        "chosen at its best F1 on a hold-out; 0.5 if the server does not publish one)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for each answer")
    parser.add_argument(
        "--retries", type=int, default=8, help="retries of a request that failed on the server's side (never bad input)"
    )
    parser.add_argument(
        "--deadline", type=float, default=120.0, metavar="S", help="seconds one image may take, retries included"
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, default=None, help="gRPC compression of requests")


def collect_images(inputs: list[str]) -> tuple[list[ImageJob], list[str]]:
    """Image jobs from files and folders, and one error line per argument that yields nothing."""
    jobs: list[ImageJob] = []
    errors: list[str] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            jobs.extend(ImageJob(p, Path(path.name) / p.relative_to(path).with_suffix(".png")) for p in found)
        elif path.is_file():
            jobs.append(ImageJob(path, Path(path.with_suffix(".png").name)))
        else:
            errors.append(f"{path}: no such file or folder")
    return _unique_names(jobs), errors


def _unique_names(jobs: list[ImageJob]) -> list[ImageJob]:
    seen: set[Path] = set()
    unique = []
    for job in jobs:
        name, n = job.out_name, 1
        while name in seen:
            name = job.out_name.with_name(f"{job.out_name.stem}-{n}{job.out_name.suffix}")
            n += 1
        seen.add(name)
        unique.append(ImageJob(job.path, name))
    return unique


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    for flag, value, low in (("--concurrency", args.concurrency, 1), ("--retries", args.retries, 0)):
        if value < low:
            print(f"acfd detect: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    for flag, value in (("--timeout", args.timeout), ("--deadline", args.deadline)):
        if value <= 0:
            print(f"acfd detect: {flag} must be > 0, got {value}", file=sys.stderr)
            return 2
    try:
        urls = urls_from_args(args)
    except ValueError as err:
        print(f"acfd detect: --url: {err}", file=sys.stderr)
        return 2
    jobs, errors = collect_images(args.inputs)
    for line in errors:
        print(f"acfd detect: {line}", file=sys.stderr)
    if not jobs:
        print("acfd detect: no images to send", file=sys.stderr)
        return 2
    client = DetectorClient(
        urls,
        model=args.model,
        timeout_s=args.timeout,
        retries=args.retries,
        deadline_s=args.deadline,
        compression=args.compression,
        min_score=args.min_score,
        drain_s=args.timeout,  # at exit, requests abandoned on timeout get this long to finish
    )
    with client:
        try:
            client.check_ready()
        except ClientError as err:
            print(f"acfd detect: {err}", file=sys.stderr)
            return 2
        faces, latencies, failed, server_faults = 0, [], len(errors), 0
        progress = tqdm(total=len(jobs), unit="img", desc="detect", disable=None, file=sys.stderr)
        with progress:
            for outcome in client.stream([job.path for job in jobs], concurrency=args.concurrency):
                progress.update(1)
                if isinstance(outcome.error, (ServerUnavailable, ModelNotReady)):
                    progress.close()
                    print(f"acfd detect: {outcome.error}", file=sys.stderr)
                    return 2
                line_or_error = _report(outcome, jobs[outcome.index], args)
                if outcome.error is not None or line_or_error is None:
                    failed += 1
                    server_faults += isinstance(outcome.error, ServerFault)
                    continue
                faces += len(outcome.detections)
                latencies.append(outcome.latency_s)
                progress.write(line_or_error, file=sys.stdout)
    mean_ms = 1000.0 * sum(latencies) / len(latencies) if latencies else 0.0
    summary = f"acfd detect: {len(latencies)} images, {faces} faces, mean latency {mean_ms:.1f} ms"
    if failed:
        summary += f", {failed} failed"
        if server_faults:
            summary += f" ({server_faults} by a server fault, {failed - server_faults} refused as bad input)"
    if len(urls) > 1:
        shares = client.pool.shares()
        summary += "; answered by " + ", ".join(f"{url}: {shares[url]}" for url in urls)
    if args.out is not None and latencies:
        summary += f"; annotated images in {args.out}"
    print(summary, file=sys.stderr if args.json else sys.stdout)
    return 1 if failed else 0


def _report(outcome: DetectOutcome, job: ImageJob, args: argparse.Namespace) -> str | None:
    """The stdout line for one answered image (writing its annotated copy), or None after an error line."""
    from acfd.clients.detections import save_annotated
    from acfd.inference.image_io import ImageError, image_size, read_image

    if outcome.error is not None:
        print(f"acfd detect: {outcome.error}", file=sys.stderr)
        return None
    detections = outcome.detections or []
    try:
        if args.out is not None:
            image = read_image(job.path)
            height, width = image.shape[:2]
            save_annotated(args.out / job.out_name, image, detections)
        else:
            width, height = image_size(job.path)
    except (ImageError, OSError) as err:
        print(f"acfd detect: {err}", file=sys.stderr)
        return None
    latency_ms = 1000.0 * outcome.latency_s
    if args.json:
        record = {
            "image": str(job.path),
            "width": int(width),
            "height": int(height),
            "faces": len(detections),
            "latency_ms": round(latency_ms, 2),
            "detections": [d.to_dict() for d in detections],
        }
        return json.dumps(record)
    return f"{job.path}: {len(detections)} faces ({latency_ms:.1f} ms)"
