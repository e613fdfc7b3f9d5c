"""``acfd loadtest``: a perf_analyzer concurrency sweep against the served ensemble, with real
generated scenes as input, held to the yardstick of the same pipeline in this process.

Steps: find and check perf_analyzer (the tritonclient wheel's, with its library path); check the
server and model answer (one line and exit 2 if not); generate ``--images`` cartoon scenes
(``acfd.scenes.synth.generate_scene``, PNG) and write them as ``DIR/input_data.json``; run
perf_analyzer once per concurrency level (progress shown); read the ensemble's failure count from
the server's statistics before and after; time the same images through the served pipeline in this
process (``acfd.inference.pipeline.InProcessPipeline``: the export the repository was built from,
``--export``, with the engine and thread count the server's detector reports in its config, the
same decode, resize and post-processing; skipped, with a note, without ``--export``); write
``DIR/results.csv``, ``DIR/loadtest.png``, ``DIR/summary.json``, ``DIR/summary.txt`` and print the
summary, which states server over in-process throughput at every level.

Several servers (``--url`` repeated, or addresses separated by commas): perf_analyzer talks to one
server, so the sweep is driven by the client library instead (``acfd.clients.load_generator``: a
closed loop of ``concurrency`` workers over the ``DetectorClient``, which spreads requests over the
ready servers, least outstanding first), one ``--seconds`` window per level; the report has the
same throughput and latency columns (no per-model server times), each server's share of the
answers, and the images that failed after the client's retries.

Exit codes: 0 done; 1 the sweep failed part way (perf_analyzer's own error line is printed);
2 nothing measured (bad flag, perf_analyzer or its libraries missing, server or model not ready).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from acfd.clients.grpc_client import DEFAULT_MODEL, ClientError, DetectorClient
from acfd.clients.load_report import InProcessResult
from acfd.clients.pool import add_url_argument, urls_from_args

PROG = "acfd loadtest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_url_argument(parser)
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
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="the export folder the served repository was built from: the in-process yardstick runs it",
    )
    parser.add_argument(
        "--local-seconds",
        type=float,
        default=None,
        metavar="S",
        help="how long to time the in-process pipeline, None meaning --seconds (at least one pass over the images)",
    )
    parser.add_argument(
        "--local-engine", default=None, metavar="ENGINE",
        help="engine of the in-process run (default: the one the server's detector reports)",
    )  # fmt: skip
    parser.add_argument(
        "--local-threads", type=int, default=None, metavar="N",
        help="engine threads of the in-process run (default: the server detector's, 0 meaning every core)",
    )  # fmt: skip
    parser.add_argument("--no-local", action="store_true", help="skip the in-process yardstick")
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
        urls = urls_from_args(args)
    except ValueError as err:
        return _fail(str(err))
    if len(urls) > 1:
        return run_over_servers(args, urls, levels, width, height)
    args.url = urls[0]
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

    try:
        out, images = _out_and_images(args, width, height)
    except ValueError as err:
        return _fail(str(err))
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

    windows = f"windows of {args.min_requests}+ requests" if args.min_requests else f"{args.seconds:g} s windows"
    header = f"acfd loadtest: {args.model} at {args.url}, {len(images)} scenes {width}x{height}, {windows}, {version}"
    meta = {
        "url": args.url, "model": args.model, "concurrency": levels, "window_s": args.seconds,
        "images": len(images), "size": [width, height], "seed": args.seed, "perf_analyzer": version,
    }  # fmt: skip
    return _finish(args, args.url, out, images, results, levels, failed, header, meta)


def run_over_servers(args: argparse.Namespace, urls: list[str], levels: list[int], width: int, height: int) -> int:
    """The sweep over several servers, driven by the client library (one window per level)."""
    from tqdm import tqdm

    from acfd.clients.load_generator import level_result, run_load

    try:
        out, images = _out_and_images(args, width, height)
    except ValueError as err:
        return _fail(str(err))
    results, failed, shares = [], 0, {url: 0 for url in urls}
    try:
        with DetectorClient(urls, model=args.model, timeout_s=30.0) as client:
            client.check_ready()
            with tqdm(levels, desc="client load", unit="level", file=sys.stderr) as progress:
                for concurrency in progress:
                    sent = run_load(client, images, concurrency, args.seconds)
                    result = level_result(sent, concurrency, args.seconds)
                    results.append(result)
                    failed += sum(not s.ok for s in sent)
                    for s in sent:
                        if s.ok:
                            shares[s.server] += 1
                    progress.write(
                        f"concurrency {concurrency}: {result.throughput:.2f} infer/s, p50 {result.p50_ms:.1f} ms",
                        file=sys.stderr,
                    )
    except ClientError as err:
        return _fail(str(err))
    where = ", ".join(urls)
    header = (
        f"acfd loadtest: {args.model} over {len(urls)} servers ({where}), {len(images)} scenes {width}x{height}, "
        f"{args.seconds:g} s per level, client-driven"
    )
    meta = {
        "urls": urls, "model": args.model, "concurrency": levels, "window_s": args.seconds, "images": len(images),
        "size": [width, height], "seed": args.seed, "driver": "client", "answered_by": shares,
        "failed_after_retries": failed,
    }  # fmt: skip
    share_line = "answered by " + ", ".join(f"{url}: {n}" for url, n in shares.items())
    failed_line = f"images failed after the client's retries: {failed}"
    return _finish(args, urls[0], out, images, results, levels, None, header, meta, [share_line, failed_line])


def _finish(args, engine_url, out, images, results, levels, failed, header, meta, extra_lines=()) -> int:
    """The in-process yardstick, then the report files and the printed summary."""
    from acfd.clients import load_report

    local, local_note = None, ""
    if args.no_local:
        local_note = "skipped (--no-local)"
    elif args.export is None:
        local_note = "skipped (give --export DIR, the export the repository was built from)"
    else:
        engine, threads = served_engine(engine_url)
        try:
            local = measure_in_process(
                args.export, images, args.local_seconds or args.seconds, engine=args.local_engine or engine,
                threads=threads if args.local_threads is None else args.local_threads,
            )  # fmt: skip
        except Exception as err:  # an unusable export must not lose the sweep's report
            local_note = f"failed: {' '.join(str(err).split())}"
    lines = load_report.summary_lines(results, local, failed, header=header, local_note=local_note)
    csv_path = load_report.write_results_csv(out / "results.csv", results)
    png_path = load_report.plot_sweep(
        out / "loadtest.png", results, local, title=header.removeprefix("acfd loadtest: ")
    )
    load_report.write_summary_json(out / "summary.json", results, local, failed, meta)
    lines.extend(extra_lines)
    lines.append(f"wrote {csv_path}, {png_path}, {out / 'summary.json'}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if len(results) == len(levels) else 1


def _out_and_images(args: argparse.Namespace, width: int, height: int) -> tuple[Path, list[bytes]]:
    """The ``--out`` folder, made, and the generated scenes to send; ValueError when the folder cannot be made."""
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot create the folder ({err.strerror or err})") from None
    return out, generate_images(args.images, width, height, args.seed)


def generate_images(count: int, width: int, height: int, seed: int) -> list[bytes]:
    """``count`` generated cartoon scenes as PNG bytes; scene ``i`` is seeded with ``(seed, i)``."""
    from acfd.scenes.synth import scene_png

    return [scene_png(np.random.default_rng((seed, i)), width, height) for i in range(count)]


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


def served_engine(url: str, model: str = "detector") -> tuple[str | None, int]:
    """The engine and thread count the served detector's config names (``(None, 0)`` if unreadable)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        config = client.get_model_config(model, as_json=True, client_timeout=30.0).get("config", {})
    except InferenceServerException:
        return None, 0
    finally:
        client.close()
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    try:
        threads = int(params.get("threads", "0") or 0)
    except ValueError:
        threads = 0
    return params.get("engine") or None, threads


def measure_in_process(
    export: Path, images: list[bytes], seconds: float, engine: str | None = None, threads: int = 0
) -> InProcessResult:
    """The served pipeline in this process (decode, resize, engine at every test scale,
    post-processing), one image at a time, for ``seconds`` (at least one pass over the images,
    after one untimed warm-up image)."""

    from acfd.inference.engines import DEFAULT_ENGINE
    from acfd.inference.pipeline import InProcessPipeline, time_in_process

    pipeline = InProcessPipeline(export, engine=engine or DEFAULT_ENGINE, threads=threads)
    runs = time_in_process(pipeline, images, seconds, progress="in process")
    return InProcessResult(
        images=len(runs),
        seconds=sum(run_s for _, run_s, _ in runs),
        export=str(export),
        preset=pipeline.manifest.preset,
        engine=pipeline.engine.describe(),
        scales=[list(s) for s in pipeline.cfg.test_scales],
        threads=pipeline.engine.threads,
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
    if args.local_threads is not None and args.local_threads < 0:
        raise ValueError(f"--local-threads must be >= 0, got {args.local_threads}")
    if args.local_seconds is not None and args.local_seconds <= 0:
        raise ValueError(f"--local-seconds must be > 0, got {args.local_seconds}")
    if args.local_engine is not None:
        from acfd.inference.engines import ENGINES

        if args.local_engine not in ENGINES:
            raise ValueError(f"--local-engine {args.local_engine!r}: choose one of {list(ENGINES)}")


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2
