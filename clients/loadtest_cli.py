"""``acfd loadtest``: a perf_analyzer concurrency sweep against the served ensemble, with real
generated scenes as input, compared with the same images through eager PyTorch in this process.

Steps: find and check perf_analyzer (the tritonclient wheel's, with its library path); check the
server and model answer (one line and exit 2 if not); generate ``--images`` cartoon scenes
(``acfd.training.data.synth.generate_scene``, PNG) and write them as ``DIR/input_data.json``; run
perf_analyzer once per concurrency level (progress shown); read the ensemble's failure count from
the server's statistics before and after; time the same images (decode + multi-scale detect) with
the checkpoint behind the export in an eager PyTorch loop (``--weights`` or ``--export``; skipped,
with a note, without either); write ``DIR/results.csv``, ``DIR/loadtest.png``, ``DIR/summary.json``,
``DIR/summary.txt`` and print the summary, which states server over eager throughput as a ratio.

Exit codes: 0 done; 1 the sweep failed part way (perf_analyzer's own error line is printed);
2 nothing measured (bad flag, perf_analyzer or its libraries missing, server or model not ready).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from acfd.clients.grpc_client import DEFAULT_MODEL, DEFAULT_URL, ClientError, DetectorClient
from acfd.clients.load_report import EagerResult

PROG = "acfd loadtest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="gRPC address of the Triton server (host:port)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name of the served ensemble")
    parser.add_argument("--concurrency", default="1:16:2", metavar="START:END:STEP", help="concurrency levels to sweep")
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="perf_analyzer measurement window per level (it takes 3 or more windows per level)",
    )
    parser.add_argument("--out", type=Path, default=Path("loadtest"), metavar="DIR", help="where the report goes")
    parser.add_argument(
        "--images", type=int, default=8, metavar="N", help="generated scenes perf_analyzer cycles through"
    )
    parser.add_argument("--size", default="640x384", metavar="WxH", help="size of the generated scenes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    parser.add_argument(
        "--weights", type=Path, default=None, metavar="CKPT", help="checkpoint for the eager comparison"
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="export folder whose manifest names the checkpoint (instead of --weights)",
    )
    parser.add_argument(
        "--eager-seconds",
        type=float,
        default=None,
        metavar="S",
        help="how long to time eager PyTorch, None meaning --seconds (at least one pass over the images)",
    )
    parser.add_argument(
        "--eager-form",
        choices=("fused", "train"),
        default="fused",
        help="eager network form: fused (the deploy graph the server runs) or train (ACB branches, BN)",
    )
    parser.add_argument(
        "--eager-threads",
        type=int,
        default=None,
        metavar="N",
        help="PyTorch threads for the eager run (default: PyTorch's choice); 1 avoids OpenMP spinning when busy",
    )
    parser.add_argument("--no-eager", action="store_true", help="skip the eager PyTorch comparison")
    parser.add_argument(
        "--min-requests",
        type=int,
        default=None,
        metavar="N",
        help="count windows of at least N requests instead of fixed time windows (slow servers)",
    )
    parser.add_argument(
        "--max-trials", type=int, default=6, help="perf_analyzer windows per level before giving up on stability"
    )
    parser.add_argument(
        "--stability", type=float, default=20.0, metavar="PCT", help="perf_analyzer stability threshold (percent)"
    )


def run(args: argparse.Namespace) -> int:
    from acfd.clients import load_report
    from acfd.clients.perf_analyzer import (
        PerfAnalyzerError,
        SweepSettings,
        check_perf_analyzer,
        find_perf_analyzer,
        parse_concurrency,
        run_level,
        write_input_data,
    )

    try:
        levels = parse_concurrency(args.concurrency)
        width, height = _parse_size(args.size)
        _check_positive(args)
    except ValueError as err:
        return _fail(str(err))
    try:
        install = find_perf_analyzer()
        version = check_perf_analyzer(install)
    except PerfAnalyzerError as err:
        return _fail(str(err))
    try:
        with DetectorClient(args.url, model=args.model, timeout_s=30.0, retries=2) as client:
            client.check_ready()
    except ClientError as err:
        return _fail(str(err))

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _fail(f"--out {out}: cannot create the folder ({err.strerror or err})")
    images = generate_images(args.images, width, height, args.seed)
    input_data = write_input_data(out / "input_data.json", images)
    window_args = ("--measurement-mode", "count_windows", "--measurement-request-count", str(args.min_requests))
    settings = SweepSettings(
        url=args.url,
        model=args.model,
        window_s=args.seconds,
        max_trials=args.max_trials,
        stability_pct=args.stability,
        extra_args=window_args if args.min_requests else (),
    )
    failed_before = failed_requests(args.url, args.model)
    results = []
    from tqdm import tqdm

    with tqdm(levels, desc="perf_analyzer", unit="level", file=sys.stderr) as progress:
        for concurrency in progress:
            progress.set_postfix_str(f"concurrency {concurrency}")
            try:
                result = run_level(install, settings, input_data, concurrency, out / "perf_analyzer")
            except PerfAnalyzerError as err:
                progress.close()
                _fail(str(err))
                if not results:
                    return 1
                break
            results.append(result)
            progress.write(
                f"concurrency {concurrency}: {result.throughput:.2f} infer/s, p50 {result.p50_ms:.1f} ms",
                file=sys.stderr,
            )
    failed_after = failed_requests(args.url, args.model)
    failed = failed_after - failed_before if failed_before is not None and failed_after is not None else None

    eager, eager_note = None, ""
    if args.no_eager:
        eager_note = "skipped (--no-eager)"
    else:
        checkpoint, eager_note = resolve_checkpoint(args.weights, args.export)
        if checkpoint is not None:
            try:
                eager = measure_eager(
                    checkpoint,
                    images,
                    args.eager_seconds or args.seconds,
                    fused=args.eager_form == "fused",
                    threads=args.eager_threads,
                )
            except Exception as err:  # a checkpoint that cannot be loaded must not lose the sweep's report
                eager_note = f"failed: {' '.join(str(err).split())}"

    windows = f"windows of {args.min_requests}+ requests" if args.min_requests else f"{args.seconds:g} s windows"
    header = f"acfd loadtest: {args.model} at {args.url}, {len(images)} scenes {width}x{height}, {windows}, {version}"
    lines = load_report.summary_lines(results, eager, failed, header=header, eager_note=eager_note)
    csv_path = load_report.write_results_csv(out / "results.csv", results)
    png_path = load_report.plot_sweep(
        out / "loadtest.png", results, eager, title=header.removeprefix("acfd loadtest: ")
    )
    load_report.write_summary_json(
        out / "summary.json",
        results,
        eager,
        failed,
        {
            "url": args.url, "model": args.model, "concurrency": levels, "window_s": args.seconds,
            "images": len(images), "size": [width, height], "seed": args.seed, "perf_analyzer": version,
        },
    )  # fmt: skip
    lines.append(f"wrote {csv_path}, {png_path}, {out / 'summary.json'}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if len(results) == len(levels) else 1


def generate_images(count: int, width: int, height: int, seed: int) -> list[bytes]:
    """``count`` generated cartoon scenes as PNG bytes; scene ``i`` is seeded with ``(seed, i)``."""
    import cv2

    from acfd.training.data.synth import generate_scene

    encoded = []
    for i in range(count):
        image, _ = generate_scene(np.random.default_rng((seed, i)), width, height)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError("cv2 could not encode a generated scene as PNG")
        encoded.append(buf.tobytes())
    return encoded


def failed_requests(url: str, model: str) -> int | None:
    """The model's failed-inference count from the server's statistics (None if it cannot be read)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True, client_timeout=30.0)
    except InferenceServerException:
        return None
    finally:
        client.close()
    return sum(int(s.get("inference_stats", {}).get("fail", {}).get("count", 0)) for s in stats.get("model_stats", []))


def resolve_checkpoint(weights: Path | None, export: Path | None) -> tuple[Path | None, str]:
    """The checkpoint for the eager run, or None and a note saying why there is none."""
    if weights is not None:
        return (weights, "") if weights.is_file() else (None, f"skipped ({weights}: no such checkpoint file)")
    if export is None:
        return None, "skipped (give --weights CKPT or --export DIR to compare with eager PyTorch)"
    from acfd.training.export import ExportError, read_manifest

    try:
        manifest = read_manifest(export)
    except ExportError as err:
        return None, f"skipped ({err})"
    path = (manifest.get("checkpoint") or {}).get("path")
    if not path:
        return None, f"skipped ({export}/export.json names no checkpoint)"
    path = Path(path)
    if not path.is_absolute() and not path.is_file():
        path = Path(export) / path
    return (path, "") if path.is_file() else (None, f"skipped ({path}: checkpoint named by the export is missing)")


def measure_eager(
    checkpoint: Path, images: list[bytes], seconds: float, fused: bool = True, threads: int | None = None
) -> EagerResult:
    """Decode + multi-scale detect each image with eager PyTorch, one at a time, for ``seconds``
    (at least one pass over the images, after one untimed warm-up image).

    ``fused`` runs the deploy form (ACB branches and BatchNorm folded, the network the server's
    ONNX graph holds), so the ratio compares serving with PyTorch on the same network.
    """
    import torch
    from tqdm import tqdm

    from acfd.training.checkpoint import load_model
    from acfd.training.data.image_io import decode_image
    from acfd.training.evaluation.inference import detect
    from acfd.training.model import Predictor

    model, preset, _ = load_model(checkpoint)
    if fused:
        from acfd.training.export import fuse_copy

        model = fuse_copy(model)
    predictor = Predictor(model).eval()
    cfg = preset.inference
    scales = tuple(tuple(s) for s in cfg.test_scales)
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        used_threads = torch.get_num_threads()
        detect(predictor, decode_image(images[0]), scales, cfg)  # warm-up: allocator, thread pool
        count, started = 0, time.perf_counter()
        with tqdm(desc="eager PyTorch", unit="img", file=sys.stderr, leave=False) as progress:
            while True:
                for data in images:
                    detect(predictor, decode_image(data), scales, cfg)
                    count += 1
                    progress.update(1)
                if time.perf_counter() - started >= seconds:
                    break
        elapsed = time.perf_counter() - started
    finally:
        torch.set_num_threads(default_threads)
    return EagerResult(
        images=count,
        seconds=elapsed,
        checkpoint=str(checkpoint),
        preset=preset.name,
        form="fused" if fused else "train",
        scales=[list(s) for s in scales],
        threads=used_threads,
    )


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: expected WxH, e.g. 640x384") from None
    if width < 32 or height < 32:
        raise ValueError(f"--size {text!r}: width and height must be at least 32")
    return width, height


def _check_positive(args: argparse.Namespace) -> None:
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds}")
    if args.images < 1:
        raise ValueError(f"--images must be >= 1, got {args.images}")
    if args.max_trials < 3:
        raise ValueError(f"--max-trials must be >= 3 (perf_analyzer compares 3 windows), got {args.max_trials}")
    if args.min_requests is not None and args.min_requests < 1:
        raise ValueError(f"--min-requests must be >= 1, got {args.min_requests}")
    if args.eager_threads is not None and args.eager_threads < 1:
        raise ValueError(f"--eager-threads must be >= 1, got {args.eager_threads}")
    if args.eager_seconds is not None and args.eager_seconds <= 0:
        raise ValueError(f"--eager-seconds must be > 0, got {args.eager_seconds}")


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2
